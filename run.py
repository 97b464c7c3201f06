"""ctr-bench entry point: compose a config, train one model on one dataset, test it, write metrics.

    python run.py                                   # DeepFM on the embedded synthetic data
    python run.py -m model=deepfm,fm,ipnn           # a multirun: one folder per model
    python run.py -m hparams_search=deepfm          # an Optuna sweep into a persistent study

A run folder holds `.hydra/` (the resolved config), `metrics.json`, `history.csv` (one row per
epoch), the logger's files, the best checkpoint and the test predictions. The returned value is
the best epoch's `objective`, so Hydra's sweepers can optimise it. What a run does around `fit`
lives in `experiments/run/` (`train.py` first). The same command with the same run folder resumes
a stopped run and skips a finished one (`experiments/run/resume.py`; `resume=false` starts
afresh). A mistake in the data or the config ends the run with a line or two saying what and
where (`HYDRA_FULL_ERROR=1` for the traceback); a run of a
multirun that fails so is written off in its folder (`failure.txt`) and the others go on.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.run.config import TRUSTED_TARGETS
from experiments.run.ddp import ddp_world_of_this_run
from experiments.run.errors import FAILURE_FILE, ConfigError, show_tracebacks, user_error_message
from experiments.run.lock import FolderBusy, run_folder_lock
from experiments.run.resume import RunInterrupted, finished_run, resume_command
from experiments.run.summary import run_summary
from experiments.run.train import train

log = logging.getLogger(__name__)


@hydra.main(config_path="conf", config_name="config", execution_whitelist=TRUSTED_TARGETS)
def main(cfg: DictConfig) -> float:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with run_folder_lock(out_dir):
            return run_in_folder(cfg, out_dir)
    except FolderBusy as busy:
        print(f"error: {busy}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return math.nan  # the other jobs go on; the process holding this one finishes it
        sys.exit(2)


def run_in_folder(cfg: DictConfig, out_dir: Path) -> float:
    """The run of ``cfg`` in ``out_dir``, which this process alone holds: skipped where it finished
    there, continued where it stopped, trained otherwise."""
    try:
        finished = finished_run(out_dir, cfg) if cfg.get("resume", True) else None
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if finished is not None:
        print(f"{out_dir} holds a finished run, not run again (resume=false runs it afresh):", flush=True)
        print(run_summary(finished, out_dir, finished["train_time_s"]), flush=True)
        return finished[cfg.objective]
    started = time.perf_counter()
    try:
        with ddp_world_of_this_run():
            metrics = train(cfg, out_dir)
    except RunInterrupted as stop:
        print(f"{stop}\nresume with: {resume_command(out_dir)}", file=sys.stderr, flush=True)
        sys.exit(128 + stop.signum)
    except Exception as error:
        message = user_error_message(error)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / FAILURE_FILE).write_text((message or f"{type(error).__name__}: {error}") + "\n")
        if message is None or show_tracebacks():
            raise
        print(f"error: {message}\n(HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return math.nan  # the other runs go on; the report lists this one as failed
        sys.exit(2)
    print(run_summary(metrics, out_dir, time.perf_counter() - started), flush=True)
    return metrics[cfg.objective]


if __name__ == "__main__":
    main()
