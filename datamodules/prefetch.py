"""Batches gathered ahead on a background thread, so that reading the next batch overlaps the
training step instead of waiting for it.

A thread and not a worker process: a batch is one vectorised gather from the memory-mapped cache
(numpy and torch release the GIL while they copy), so a thread overlaps it with the step at no
cost of pickling batches between processes or forking the model's process.

Off by default (``data.prefetch: 0``): measured beside batches inline and a worker process,
quiet and beside two busy processes, it gained nothing for DeepFM (34.8k against 35.6k samples/s
quiet, 12.8k against 13.1k loaded) and FM was within noise either way: a batch costs under 1% of
a step (results/benchmarks/contention/benchmark.md). It is there for inputs whose batches do cost
(a cache on a slow disk, say), which that benchmark does not measure.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetched:
    """``loader``'s batches, in its order, with up to ``depth`` of them gathered ahead.

    Each ``iter()`` starts one producer thread over ``iter(loader)``; an error in it is raised in
    the consumer at the batch where it happened, and a consumer that stops early (``break``, an
    exception, garbage collection of the iterator) stops and joins the thread. ``len()`` and every
    other attribute (``sampler``, ``batch_sampler``, ``dataset``...) are the loader's, so Lightning
    inspects the wrapper as the loader: it calls ``set_epoch`` on the sampler and counts the steps.
    """

    def __init__(self, loader: Iterable, depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.loader, self.depth = loader, depth

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(item) -> bool:
            """``item`` into the queue unless the consumer stopped; whether it went in."""
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in self.loader:
                    if not put(batch):
                        return
            except BaseException as error:  # handed to the consumer, which raises it
                put(_Failure(error))
                return
            put(_END)

        producer = threading.Thread(target=produce, name="ctr-bench-prefetch", daemon=True)
        producer.start()
        try:
            while True:
                item = ready.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stop.set()
            producer.join()
