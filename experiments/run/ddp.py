"""A DDP world per run: every rank leaves it at the end, and inside Hydra multiruns the ranks
Lightning starts for a job run that job alone.

``run.py``'s ``main`` trains inside ``ddp_world_of_this_run()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

log = logging.getLogger(__name__)

# What Lightning's DDP launcher puts into this process's environment for the ranks it starts.
DDP_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def ddp_world_of_this_run() -> Iterator[None]:
    """``run.py`` trains inside this: each run (each job of a multirun) has a DDP world of its own,
    which every rank leaves when the run ends. Without DDP it changes nothing that is read.

    Every rank destroys its process group at the end: a process that exits with a gloo process
    group alive can abort in its C++ destructors ("terminate called without an active exception",
    exit code -6). Lightning's launcher then kills rank 0, in a multirun in the middle of a later
    job, whose other ranks would wait for it forever.

    Within a multirun job, DDP ranks that Lightning starts run this job alone, into its folder.
    Lightning starts them with this process's command line (``sys.argv``) plus
    ``hydra.run.dir="<HydraConfig run.dir>"``. The multirun's command line would make each of them
    a whole multirun or sweep of its own (a sweep rank even asks the study for trials of its own),
    and ``run.dir`` is the unused ``outputs/<date>/<time>``. So, for the job, the command line
    becomes this job as a single run (its own overrides, sweep values resolved; the trial's
    environment from ``hydra.job.env_set`` is inherited) and ``run.dir`` the job's folder; Lightning
    adds ``hydra.output_subdir=null``, so only this process writes ``.hydra/``. In a job, only
    Lightning's launcher reads either.
    """
    hydra_cfg = HydraConfig.get()
    argv, launch_env = sys.argv, {name: os.environ.get(name) for name in DDP_LAUNCH_ENV}
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = [argv[0], *hydra_cfg.overrides.task]
        # Lightning appends its hydra.run.dir after sys.argv, and the last value wins, so the folder
        # goes where Lightning reads it: this job's own copy of the Hydra config (saved in .hydra/ already).
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        leave_ddp_world(launch_env)


def leave_ddp_world(launch_env: dict[str, str | None]) -> None:
    """Destroy the process group of the DDP world a run ran in and forget that world. Otherwise the
    next job of a multirun in this process would reuse the process group and, seeing ``LOCAL_RANK``
    set, take its ranks as started by someone else and wait for them instead of starting its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for name, value in launch_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def wait_for_started_ranks(trainer, timeout_s: float = 120) -> None:
    """On the process that started the other DDP ranks (Lightning's subprocess launcher): wait until
    they have exited. A multirun's next job then starts its DDP world only once this job's world is
    gone, and a rank that failed after the last collective fails the job instead of going unseen.
    A rank still running after ``timeout_s`` is killed, with a warning."""
    for process in getattr(trainer.strategy.launcher, "procs", ()):  # no launcher without DDP
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("DDP rank process %d still running %.0f s after its run ended; killed", process.pid, timeout_s)
            process.kill()
            process.wait()
            continue
        if code != 0:
            raise RuntimeError(f"DDP rank process {process.pid} exited with code {code}")
