"""What a number was measured on: the machine (CPU, cores, memory, GPUs, load), the libraries, the
code (``git_commit``: the checkout's commit, recorded in every provenance record and report header,
so that a result from older code can be told from one made by today's) and the process (peak
resident memory, CPU time).

Standard library only, and no library is imported to read its version, so runs, reports, benchmarks
and the cache builder all record the same facts the same way, also where torch is not installed.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional, Sequence

CHECKOUT = Path(__file__).resolve().parents[1]  # the repository this code runs from
_CPUINFO = Path("/proc/cpuinfo")
_MEMINFO = Path("/proc/meminfo")
_NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
# Results are rewritten while the commit is read (a report refreshing results/ dirties it), so a
# change there does not make the code that wrote them "uncommitted".
_NOT_CODE = ":(top,exclude)results"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_counts() -> dict[str, Optional[int]]:
    """``logical``: hardware threads; ``physical``: cores (None where ``/proc/cpuinfo`` does not say);
    ``usable``: the threads this process may run on (its CPU affinity)."""
    cores, current = set(), {}
    try:
        for line in _CPUINFO.read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("physical id", "core id"):
                current[key] = value
            if len(current) == 2:
                cores.add((current["physical id"], current["core id"]))
                current = {}
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {"logical": os.cpu_count(), "physical": len(cores) or None, "usable": usable}


def memory_gib() -> Optional[float]:
    """The machine's memory (``MemTotal``), None where ``/proc/meminfo`` is missing."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) * 1024 / 2**30, 1)
    except OSError:
        pass
    return None


def gpu_names() -> list[str]:
    """The GPUs torch sees when this process has already loaded it (it is never loaded for this),
    else the NVIDIA driver's list; empty when neither knows of one."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    names = []
    for information in sorted(_NVIDIA_GPUS.glob("*/information")):
        for line in information.read_text().splitlines():
            if line.startswith("Model:"):
                names.append(line.split(":", 1)[1].strip())
    return names


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions by distribution name (``pytorch-lightning``), ``not installed`` for the others."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git(folder: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # no git, or a hung filesystem: nothing known
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(path: Path | str = CHECKOUT, only: Sequence[str] = (":/", _NOT_CODE)) -> dict:
    """``{"commit": short hash of HEAD, "dirty": tracked files differ from it}`` for the checkout
    holding ``path`` (a folder or a file); ``{"commit": None, "dirty": False}`` outside one (an
    installed package, no git). ``dirty`` looks at the pathspecs ``only``: by default the whole tree
    but ``results/``. Untracked files are not counted: scratch files would mark every run dirty."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    commit = _git(folder, "rev-parse", "--short", "HEAD")
    if not commit:
        return {"commit": None, "dirty": False}
    return {"commit": commit, "dirty": bool(_git(folder, "status", "--porcelain", "--untracked-files=no", "--", *only))}


def describe(git: Optional[dict]) -> str:
    """A record's ``git_commit`` as the reports print it."""
    if not git or not git.get("commit"):
        return "not recorded (no git checkout)" if git else "not recorded"
    return git["commit"] + (" with uncommitted changes" if git.get("dirty") else "")


def peak_rss_mib() -> float:
    """This process's peak resident memory over its whole life (``ru_maxrss``, in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time this process has used, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> float:
    """The machine's 1-minute load average."""
    return round(os.getloadavg()[0], 2)


@dataclass
class LoadNotes:
    """Load averages (1, 5, 15 min) noted at named moments of a measurement: a busy machine skews
    its numbers, so every report says how busy this one was."""

    load_averages: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list, kw_only=True)

    def note_load(self, moment: str) -> None:
        self.load_averages.append((moment, os.getloadavg()))

    def loads_noted(self) -> str:
        """``start 1.00 0.50 0.20; end ...``: the notes as a report prints them."""
        return "; ".join(f"{moment} {a:.2f} {b:.2f} {c:.2f}" for moment, (a, b, c) in self.load_averages)
