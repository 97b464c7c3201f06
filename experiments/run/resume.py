"""Resuming a stopped run where it stopped, ending with the metrics it would have had unstopped.

A run saves its whole training state into ``checkpoints/last.ckpt`` of its folder (``ResumeState``):
after every epoch, and within an epoch every ``checkpoint.every_minutes`` (or ``every_steps``), and
when it gets SIGINT or SIGTERM. That is Lightning's checkpoint (weights, every optimiser's state,
the loops' epoch and batch counts, every callback's state: the plateau rule's best value, counter
and rate, the epoch history) plus this callback's part: the position in the epoch, the RNG states
of torch, numpy and Python, and a fingerprint of the config. Each epoch's batch order depends on the
seed and the epoch alone (``datamodules.sampling.ShuffledBatches``), so the position is all the
sampler needs; the best epoch's weights are ``checkpoints/best.ckpt``, which an interrupted epoch
rewrites as the uninterrupted run would. Every one of these files is replaced atomically
(``experiments.run.atomic``).

Running the same command with the same run folder again continues from that state
(``resume_checkpoint``); a folder whose ``metrics.json`` exists holds a finished run, which is not
run again (``finished_run``). ``resume=false`` deletes what an earlier run left and starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from experiments.run.errors import ConfigError

log = logging.getLogger(__name__)

RESUME_STATE = Path("checkpoints") / "last.ckpt"
METRICS_FILE = "metrics.json"
FINGERPRINT_KEY = "config_fingerprint"  # in metrics.json: which config the finished run ran
# What an earlier run in the folder left, deleted by resume=false (logs are kept: a new version)
RUN_OUTPUTS = ("checkpoints", METRICS_FILE, "history.csv", "predictions", "failure.txt")
# Settings that change what a run prints or where it writes, not what it computes
NOT_FINGERPRINTED = ("resume", "checkpoint", "threads", "save_predictions", "logger")


class RunInterrupted(Exception):
    """A signal stopped training after its state was saved."""

    def __init__(self, signum: int, where: str, state: Path):
        self.signum, self.where, self.state = signum, where, state
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}; its state is saved in {state}")


def finished_run(out_dir: Path, cfg: DictConfig) -> Optional[dict]:
    """The metrics of the finished run of ``cfg`` in ``out_dir``, or None where none finished there.
    A finished run of another config there (an Optuna sweep run again into the same folder draws
    other settings for the same job number) is an error, not a result to return for this one."""
    path = out_dir / METRICS_FILE
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    saved = metrics.get(FINGERPRINT_KEY)
    if saved is not None and saved != config_fingerprint(cfg):
        raise ConfigError(
            f"{out_dir} holds a finished run of another config: resume=false replaces it, or choose another run folder"
        )
    return metrics


def resume_checkpoint(cfg: DictConfig, out_dir: Path) -> Optional[Path]:
    """The saved state a run in ``out_dir`` continues from (None: it starts afresh); with
    ``resume=false`` the earlier run's files are deleted first."""
    if not cfg.get("resume", True):
        for name in RUN_OUTPUTS:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return None
    state = out_dir / RESUME_STATE
    for leftover in state.parent.glob(".*.tmp"):  # written by a process killed before its rename
        leftover.unlink(missing_ok=True)
    return state if state.is_file() else None


def config_fingerprint(cfg: DictConfig) -> str:
    settings = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_FINGERPRINTED:
        settings.pop(key, None)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def resume_command(out_dir: Path) -> str:
    """The command line that resumes this run (or this multirun)."""
    args = [a for a in sys.argv[1:] if not a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        args.append(f"hydra.sweep.dir={HydraConfig.get().sweep.dir}")
    else:
        args.append(f"hydra.run.dir={out_dir}")
    return " ".join(["python run.py", *args])


def rng_states() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {**numpy_state, "state": {k: torch.as_tensor(v) for k, v in numpy_state["state"].items()}},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state({**numpy_state, "state": {k: v.numpy() for k, v in numpy_state["state"].items()}})
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeState(pl.callbacks.Checkpoint):
    """Saves the run's training state to ``path`` (see the module's docstring) and restores what
    Lightning's checkpoint leaves out. A ``Checkpoint`` so that Lightning calls it after the other
    callbacks at an epoch's end: the state it saves then holds their updates."""

    def __init__(
        self, path: Path, fingerprint: str, every_minutes: Optional[float] = 10, every_steps: Optional[int] = None
    ):
        if (every_minutes is not None and every_minutes <= 0) or (every_steps is not None and every_steps < 1):
            raise ValueError(f"needs every_minutes > 0, every_steps >= 1 or null; got {every_minutes}, {every_steps}")
        self.path, self.fingerprint = Path(path), fingerprint
        self.every_seconds = None if every_minutes is None else 60 * every_minutes
        self.every_steps = every_steps
        self._position: dict[str, int] = {}
        self._restored: Optional[dict] = None
        self._signals = SignalFlag()

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "rng": rng_states(), **self._position}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != "fit":
            return  # testing the best epoch's checkpoint, which holds this state too
        state = checkpoint["callbacks"][self.state_key]
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(
                f"{self.path.parent.parent} holds a run of another config: resume=false replaces it, "
                "or choose another run folder"
            )
        self._restored = state
        if not state["epoch_end"]:
            trainer.datamodule.resume_training_at(state["epoch"], state["batches"])
        log.info("resuming %s at epoch %d, batch %d", self.path.parent.parent, state["epoch"] + 1, state["batches"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_at = time.monotonic()
        self._signals.install()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._restored is None:
            return
        set_rng_states(self._restored["rng"])
        if self._restored["epoch_end"] and getattr(trainer.train_dataloader, "num_workers", 0) == 0:
            # the uninterrupted run made a new loader iterator after the save, which draws a seed
            # from torch's generator; the resumed run made its before the states were set
            iter(DataLoader([]))
        self._restored = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's end, after its validation, saves
        due = (self.every_steps and trainer.global_step % self.every_steps == 0) or (
            self.every_seconds is not None and time.monotonic() - self._saved_at >= self.every_seconds
        )
        if due or self._signals.received:
            self._save(trainer, epoch_end=False, batches=batch_idx + 1)
        self._stop_if_signalled(trainer, f"in epoch {trainer.current_epoch + 1} after batch {batch_idx + 1}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, epoch_end=True, batches=trainer.num_training_batches)
        self._stop_if_signalled(trainer, f"after epoch {trainer.current_epoch + 1}")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._signals.uninstall()

    def finished(self) -> None:
        """The run wrote its metrics: its state is no longer needed."""
        self.path.unlink(missing_ok=True)

    def _save(self, trainer: pl.Trainer, epoch_end: bool, batches: int) -> None:
        self._position = {"epoch": trainer.current_epoch, "batches": batches, "epoch_end": epoch_end}
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_at = time.monotonic()

    def _stop_if_signalled(self, trainer: pl.Trainer, where: str) -> None:
        if self._signals.received and not self._signals.hand_over():
            raise RunInterrupted(self._signals.received, where, self.path)


class SignalFlag:
    """SIGINT and SIGTERM noted instead of acted on, so that training stops at the next batch's
    end with its state saved; a second signal stops at once (the last saved state stays).

    A job manager's handlers, those set before the run began, stay in charge: where one handles
    SIGTERM (submitit ignores the SIGTERM of a preemption), it keeps it, also from Lightning's
    handler; where one handles SIGUSR1 or SIGUSR2 (submitit's checkpoint-and-requeue signal), that
    signal is noted, and once the state is saved it is handed to the manager's handler, which
    requeues the job; the requeued job resumes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    HANDOVER = (signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self):
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}
        handlers = {signum: signal.getsignal(signum) for signum in (*self.SIGNALS, *self.HANDOVER)}
        self._managers = {s: h for s, h in handlers.items() if callable(h) and h is not signal.default_int_handler}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may handle signals; there the defaults stay
        self.received = None
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._managers.get(signum, self._note))
        for signum in self.HANDOVER:
            if signum in self._managers:
                self._previous[signum] = signal.signal(signum, self._note)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def hand_over(self) -> bool:
        """After the state is saved: a job manager's signal to its handler (True), or not one (False)."""
        signum = self.received
        if signum not in self.HANDOVER:
            return False
        self.received = None
        self._managers[signum](signum, None)  # submitit requeues the job and exits here
        return True

    def _note(self, signum: int, frame) -> None:
        if self.received is not None and self.received not in self.HANDOVER:
            self.uninstall()
            raise KeyboardInterrupt
        self.received = signum
