"""What the benchmarks record of the machine and of their own processes: CPU, memory, load, versions, commit."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from experiments.report.revision import describe, git_commit
from experiments.run.config import REPO


@dataclass
class LoadNotes:
    """Load averages (1, 5, 15 min) noted at named moments of a measurement: a busy machine skews
    its numbers, so every report says how busy this one was."""

    load_averages: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list, kw_only=True)

    def note_load(self, moment: str) -> None:
        self.load_averages.append((moment, os.getloadavg()))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="minutes")


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def code_of(env: dict) -> str:
    """The commit an ``environment()`` was taken at, as the reports print it; changes to `datamodules`
    are named apart because the data path's numbers depend on them."""
    if env.get("commit") and env.get("uncommitted_datamodules"):
        return f"commit {env['commit']} with uncommitted changes to `datamodules`"
    return f"commit {describe(env)}"


def environment() -> dict:
    import pandas
    import pyarrow

    cpu = cpu_name()
    memory = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), None) if Path("/proc/meminfo").exists() else None
    changed = subprocess.run(["git", "status", "--porcelain", "--", "datamodules"], capture_output=True, text=True,
                             cwd=REPO)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1) if memory else None,
            "python": platform.python_version(), "numpy": np.__version__, "pandas": pandas.__version__,
            "pyarrow": pyarrow.__version__, "pyarrow_threads": pyarrow.cpu_count(),
            **git_commit(REPO), "uncommitted_datamodules": bool(changed.stdout.strip()), "date_utc": utc_now()}
