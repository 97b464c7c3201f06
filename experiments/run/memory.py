"""A run's own peak resident memory, also when several runs share one process (a multirun's jobs
run one after another in the launching process, so the process's lifetime peak would carry an
earlier, larger run's memory into every later run's metrics).

On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's high-water mark of the
resident set (``VmHWM`` in ``/proc/self/status``) to the current size; elsewhere the process's
lifetime peak (``ru_maxrss``) is what there is, and ``PeakMemory.scope`` says so.
"""

from __future__ import annotations

from pathlib import Path

from measures.environment import peak_rss_mib

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class PeakMemory:
    """``start()`` at a run's beginning, ``mib()`` at its end: the peak in between."""

    def __init__(self):
        self.scope = "process"

    def start(self) -> None:
        try:
            _CLEAR_REFS.write_text("5")
            self.scope = "run"
        except OSError:
            self.scope = "process"

    def mib(self) -> float:
        if self.scope == "run":
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        return peak_rss_mib()
