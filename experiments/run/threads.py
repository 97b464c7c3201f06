"""How many torch threads a run uses: ``threads: auto`` follows the CPUs other processes leave free.

Why: torch's default (one OpenMP thread per core, threads spinning between parallel regions)
collapses on a shared machine. With two CPU-bound processes beside it on two cores, a training step
waits for a thread the scheduler has parked behind a neighbour, and DeepFM ran 5-6x slower instead
of the ~2x a fair share costs. One thread per *free* CPU keeps a run at its fair share.

How: every ``interval_s`` of wall time (checked at each batch, so the cost is a clock read), the
governor reads the busy time of this process's CPUs (``/proc/stat``) and of this process
(``/proc/self/stat``, all its threads). Other processes' busy CPUs are the difference; the run then
uses ``round(cpus - others)`` threads, at least 1, at most ``max_threads`` (more than now only with
a margin, so that it does not flip at every check). Two governed runs side by side settle at one
thread each. Where ``/proc`` is missing (not Linux), the governor does nothing.

Changing the thread count does not change results: the models' kernels give the same bits at any
thread count (``tests/test_threads.py`` checks every model), so a run stays reproducible from its
config and seed whatever the load was. For the matrix products this takes MKL's strict reproducible
mode, which importing ``models`` turns on (see there).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional, Union

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

# Busy columns of a /proc/stat cpu line: user nice system idle iowait irq softirq steal (guest is in user).
BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)
SELF_TIME_FIELDS = (13, 14)  # utime, stime in /proc/self/stat (0-based, after splitting)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def busy_ticks(cpus: list[int], proc: Path = Path("/proc")) -> Optional[tuple[int, int]]:
    """``(busy ticks of cpus, ticks of this process)`` since boot, or None without ``/proc``."""
    try:
        lines = (proc / "stat").read_text().splitlines()
        own = (proc / "self" / "stat").read_text()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    busy = 0
    for line in lines:
        name, *values = line.split()
        if name in wanted:
            busy += sum(int(values[i]) for i in BUSY_COLUMNS if i < len(values))
    fields = own[own.rindex(")") + 2 :].split()  # the command name may hold spaces
    own_ticks = sum(int(fields[i - 2]) for i in SELF_TIME_FIELDS)
    return busy, own_ticks


class ThreadGovernor:
    """Sets ``torch.set_num_threads`` to the CPUs other processes leave free (see the module)."""

    def __init__(
        self,
        max_threads: Optional[int] = None,
        interval_s: float = 2.0,
        read: Callable[[], Optional[tuple[int, int]]] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        cpus = usable_cpus()
        self.max_threads = max(1, min(max_threads or len(cpus), len(cpus)))
        self.interval_s = interval_s
        self._read = read or (lambda: busy_ticks(cpus))
        self._clock = clock
        self._ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()
        self.used: list[int] = []
        self._next_check = self._clock() + min(0.2, interval_s)  # the first decision comes soon

    def _sample(self) -> Optional[tuple[float, int, int]]:
        ticks = self._read()
        return None if ticks is None else (self._clock(), *ticks)

    def tick(self) -> None:
        """Call often (every batch): re-decides once ``interval_s`` has passed."""
        if self._last is None or self._clock() < self._next_check:
            return
        now = self._sample()
        if now is None:
            return
        seconds = now[0] - self._last[0]
        if seconds <= 0:
            return
        others = max(0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / self._ticks_per_s / seconds
        self._last, self._next_check = now, now[0] + self.interval_s
        threads = self.threads_for(others, self.used[-1] if self.used else None)
        if self.used and threads != self.used[-1]:
            log.info(
                "torch threads %d -> %d: other processes keep %.1f of %d CPUs busy",
                self.used[-1],
                threads,
                others,
                self.max_threads,
            )
        self.set(threads)

    def threads_for(self, others_busy_cpus: float, current: Optional[int] = None) -> int:
        """One thread per free CPU, rounded; more than ``current`` only when a quarter of a CPU more
        is free: while this run holds a neighbour's CPU, the neighbour's share reads low, and
        plain rounding would flip between two counts at every check."""
        free = self.max_threads - others_busy_cpus
        threads = int(free + 0.5)
        if current is not None and threads > current:
            threads = max(current, int(free + 0.25))
        return max(1, min(self.max_threads, threads))

    def start(self) -> "ThreadGovernor":
        """Sets every thread it may use, until the first check says otherwise."""
        self.set(self.max_threads)
        return self

    def set(self, threads: int) -> None:
        if not self.used or self.used[-1] != threads:
            torch.set_num_threads(threads)
            self.used.append(threads)

    def summary(self) -> dict:
        """For ``metrics.json``: the fewest and most threads the run used, and how often it changed."""
        if not self.used:
            return {}
        return {"threads_min": min(self.used), "threads_max": max(self.used), "thread_changes": len(self.used) - 1}


class GovernThreads(pl.Callback):
    """Runs a ``ThreadGovernor`` at every training, validation and test batch."""

    def __init__(self, governor: ThreadGovernor):
        self.governor = governor

    def on_train_batch_start(self, *args, **kwargs):
        self.governor.tick()

    def on_validation_batch_start(self, *args, **kwargs):
        self.governor.tick()

    def on_test_batch_start(self, *args, **kwargs):
        self.governor.tick()


def thread_policy(threads: Union[int, str, None]) -> Optional[ThreadGovernor]:
    """Applies the config's ``threads``: a number fixes it, ``null`` leaves torch's default, ``auto``
    (the default) returns the governor that the run's callbacks drive."""
    if threads in (None, "null"):
        return None
    if threads == "auto":
        return ThreadGovernor().start()
    if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        torch.set_num_threads(threads)
        return None
    raise ValueError(f"threads must be a positive integer, auto or null, got {threads!r}")
