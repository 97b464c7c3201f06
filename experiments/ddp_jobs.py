"""DDP inside Hydra multiruns: the ranks Lightning starts for a job run that job alone.

``run.py``'s ``main`` trains inside ``ddp_ranks_join_this_job()``.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

# What Lightning's DDP launcher puts into this process's environment for the ranks it starts.
DDP_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def ddp_ranks_join_this_job() -> Iterator[None]:
    """Within a multirun job: DDP ranks that Lightning starts run this job alone, into its folder,
    and the next job of this process starts a world of its own. Outside a multirun it does nothing.

    Lightning starts the other ranks with this process's command line (``sys.argv``) plus
    ``hydra.run.dir="<HydraConfig run.dir>"``. The multirun's command line would make each of them
    a whole multirun or sweep of its own (a sweep rank even asks the study for trials of its own),
    and ``run.dir`` is the unused ``outputs/<date>/<time>``. So, for the job, the command line
    becomes this job as a single run (its own overrides, sweep values resolved; the trial's
    environment from ``hydra.job.env_set`` is inherited) and ``run.dir`` the job's folder; Lightning
    adds ``hydra.output_subdir=null``, so only this process writes ``.hydra/``. Nothing changes for
    a job that trains without DDP: in a job, only Lightning's launcher reads either.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        yield
        return
    argv, launch_env = sys.argv, {name: os.environ.get(name) for name in DDP_LAUNCH_ENV}
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
    """Forget the DDP world a job of a multirun ran in. Otherwise the next job in this process
    would reuse its process group and, seeing ``LOCAL_RANK`` set, take its ranks as started by
    someone else and wait for them instead of starting its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for name, value in launch_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
