"""Training on a shared machine: samples/s quiet and beside busy processes, per thread policy.

The benchmark starts its own neighbours (``hogs``: one pure-Python busy loop per CPU, the load of
other jobs, notebooks or DDP ranks on the same cores) and measures each model's bare training loop
quiet and beside them, alternating, under two policies:

- ``auto``: the run's default, ``threads: auto`` (``experiments.run.threads``): one thread per CPU
  the other processes leave free, re-decided every 2 s;
- ``fixed``: ``--threads`` threads whatever the load (torch's default when that is one per core);

and, under ``auto``, three ways of making the batches (``INPUTS``):

- ``inline``: gathered on the training thread, between steps (the default, ``data.prefetch=0``);
- ``thread``: two batches ahead on a background thread (``data.prefetch=2``, ``Prefetched``);
- ``process``: in a DataLoader worker process (``data.num_workers=1``).

Each measurement is a fresh process that trains for ``warmup_s`` seconds (long enough for the
governor's first decisions), then counts the samples of ``measure_s`` seconds. The slowdown is quiet
over loaded samples/s; a fair share of two CPUs between three busy processes would be 1.5x per thread, and a
run that used two threads quiet pays for losing one of them too.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from experiments.benchmark.throughput import bare_training_step, in_subprocess
from experiments.benchmark.workload import Workload, build_model, endless, parse_spec, prepared
from experiments.run.threads import ThreadGovernor, usable_cpus

POLICIES = ("auto", "fixed")
INPUTS = ("inline", "thread", "process")
# (thread policy, input) pairs measured: the policies with batches inline, the inputs under auto
SETTINGS = (("auto", "inline"), ("fixed", "inline"), ("auto", "thread"), ("auto", "process"))
PREFETCH_DEPTH = 2


def measure_contended(
    spec: str, workload: Workload, policy: str, warmup_s: float, measure_s: float, batches: str = "inline"
) -> dict:
    """Training samples/s of ``spec`` under ``policy``, its batches made as ``batches`` says
    (``INPUTS``), on whatever load the machine has now (runs in its own process)."""
    with prepared(
        workload, num_workers=1 if batches == "process" else 0, prefetch=PREFETCH_DEPTH if batches == "thread" else 0
    ) as (schema, loader):
        model, _ = build_model(spec, schema, workload.seed)
        step = bare_training_step(model, model.build_optimizer())
        governor = ThreadGovernor(max_threads=workload.threads).start() if policy == "auto" else None
        model.train()
        batches = endless(loader)

        def train_for(seconds: float) -> int:
            steps, until = 0, time.perf_counter() + seconds
            while time.perf_counter() < until:
                if governor:
                    governor.tick()
                step(next(batches))
                steps += 1
            return steps

        train_for(warmup_s)
        started = time.perf_counter()
        steps = train_for(measure_s)
        seconds = time.perf_counter() - started
    return {
        "samples_per_s": steps * workload.batch_size / seconds,
        **(governor.summary() if governor else {"threads_min": workload.threads, "threads_max": workload.threads}),
    }


@contextmanager
def hogs(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes for the duration of the block."""
    processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them start spinning before the measurement starts
        yield
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def thread_range(runs: list[dict]) -> str:
    """The thread counts some measurements used, as ``"1-2"`` or ``"2"``."""
    counts = sorted({t for r in runs for t in (r["threads_min"], r["threads_max"])})
    return "-".join(map(str, counts))


def default_hogs() -> int:
    return len(usable_cpus())


def measure_contention(
    spec: str, workload: Workload, busy: int, warmup_s: float = 4.0, measure_s: float = 8.0
) -> list[dict]:
    """Per setting (``SETTINGS``), median samples/s quiet and beside ``busy`` hogs over
    ``workload.repeats`` rounds, quiet and loaded alternating."""
    runs: dict[tuple[str, str, bool], list[dict]] = {}
    for _ in range(workload.repeats):
        for policy, batches in SETTINGS:
            for loaded in (False, True):
                with hogs(busy if loaded else 0):
                    runs.setdefault((policy, batches, loaded), []).append(
                        in_subprocess(
                            "contended",
                            spec,
                            workload,
                            "--policy",
                            policy,
                            "--batches",
                            batches,
                            "--contention-seconds",
                            f"{warmup_s},{measure_s}",
                        )
                    )
    model, optim, precision = parse_spec(spec)
    out = []
    for policy, batches in SETTINGS:
        quiet_runs, loaded_runs = runs[(policy, batches, False)], runs[(policy, batches, True)]
        quiet = statistics.median(r["samples_per_s"] for r in quiet_runs)
        loaded = statistics.median(r["samples_per_s"] for r in loaded_runs)
        out.append(
            {
                "model": model,
                "optim": optim,
                "precision": precision,
                "policy": policy,
                "batches": batches,
                "hogs": busy,
                "quiet_samples_per_s": quiet,
                "loaded_samples_per_s": loaded,
                "slowdown": quiet / loaded,
                "quiet_threads": thread_range(quiet_runs),
                "loaded_threads": thread_range(loaded_runs),
            }
        )
    return out
