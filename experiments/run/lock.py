"""One process trains a run folder at a time.

Resuming makes a run folder something a later command continues. Two processes in one folder
would both continue from the same saved state and overwrite each other's checkpoints: this
happens when a multirun is run again while workers of the first one still train (the parallel
launcher's workers outlive a ``kill -9`` of the command that started them), or when the same
command is started twice. So a run holds an exclusive ``flock`` on ``<run folder>/.run.lock``
while it trains; the kernel drops it when the process ends, however it ends, so a killed run never
leaves the folder locked. The lock file holds the holder's process id, for the error message.

Only the process that writes the run's files takes it: the other ranks of a DDP world run in the
folder of rank 0 under its lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None

LOCK_FILE = ".run.lock"
# Set by Lightning's DDP launcher in the ranks it starts, and by SLURM in each task of a job
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


class FolderBusy(Exception):
    """Another live process holds the run folder's lock."""


def is_secondary_rank() -> bool:
    """Whether this process is a rank other than 0 of a DDP world (it shares rank 0's folder)."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


@contextlib.contextmanager
def run_folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the block; ``FolderBusy`` where another process holds it."""
    if fcntl is None or is_secondary_rank():
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    # "a+": opening must not truncate the holder's pid before the lock is known to be ours
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise FolderBusy(
                f"{out_dir} is being trained by another process (pid {holder}): "
                f"run this again when it has ended, or stop it first"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
