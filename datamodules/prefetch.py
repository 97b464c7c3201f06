"""Items produced ahead on a background thread, so that making the next one overlaps the work on the
current one: ``read_ahead`` serves the source's chunks while a cache is built, and ``Prefetched``
a loader's batches while a model trains.

A thread and not a worker process: reading a chunk (file I/O, pyarrow's parser) and gathering a
batch from the memory-mapped cache mostly run without the GIL (numpy and torch release it while
they copy), so a thread overlaps them with the consumer at no cost of pickling items between
processes or forking the model's process.

Batches are not prefetched by default (``data.prefetch: 0``): measured beside batches inline and a
worker process, quiet and beside two busy processes, it gained nothing for DeepFM (34.8k against
35.6k samples/s quiet, 12.8k against 13.1k loaded) and FM was within noise either way: a batch
costs under 1% of a step (results/benchmarks/contention/benchmark.md). It is there for inputs whose
batches do cost (a cache on a slow disk, say), which that benchmark does not measure.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()
_OFFER_WAIT_S = 0.05  # how soon a producer blocked on a full queue notices that the consumer left


def read_ahead(items: Iterable[T], depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """``items``, in order, produced by a thread named ``name`` up to ``depth`` items ahead.

    ``iter(items)`` runs in that thread. An exception there is raised here after the items before
    it; when the caller stops early (``break``, an exception, ``close()``, garbage collection of the
    iterator), the thread stops, closes the iterator (a generator's ``finally`` runs) and is joined.
    Memory: at most ``depth + 2`` items exist at a time.
    """
    if depth < 1:
        raise ValueError(f"read-ahead depth must be >= 1, got {depth}")
    return _produced_ahead(items, depth, name)


def _produced_ahead(items: Iterable[T], depth: int, name: str) -> Iterator[T]:
    ready: queue.Queue = queue.Queue(maxsize=depth)
    consumer_gone = threading.Event()

    def offer(entry: tuple) -> bool:
        """``entry`` into the queue unless the consumer left; whether it went in."""
        while not consumer_gone.is_set():
            try:
                ready.put(entry, timeout=_OFFER_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = None
        try:
            iterator = iter(items)
            for item in iterator:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as error:  # handed to the consumer, raised in its thread
            offer((_END, error))
        finally:
            if hasattr(iterator, "close"):
                iterator.close()

    producer = threading.Thread(target=produce, name=name, daemon=True)
    producer.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        consumer_gone.set()
        producer.join()


class Prefetched:
    """``loader``'s batches, in its order, with up to ``depth`` of them gathered ahead.

    Each ``iter()`` is a ``read_ahead`` over ``loader`` (its error handling and early stop included).
    ``len()`` and every other attribute (``sampler``, ``batch_sampler``, ``dataset``...) are the
    loader's, so Lightning inspects the wrapper as the loader: it calls ``set_epoch`` on the sampler
    and counts the steps.
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
        return read_ahead(self.loader, self.depth, name="ctr-bench-prefetch")
