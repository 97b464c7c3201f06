"""Per-epoch history of a run, written as ``history.csv`` (the learning curves of the report)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from experiments.run.atomic import replacing

COLUMNS = ("epoch", "train/loss", "val/auc", "val/logloss", "lr")


class EpochHistory(pl.Callback):
    """Appends one row per finished training epoch (validation has run by then), and measures
    training throughput on what was really trained: samples seen (by all DDP ranks together) over
    time spent training, with the validation passes inside each epoch left out of the clock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self.train_samples = 0
        self.train_seconds = 0.0
        self._clock_started: float | None = None
        self._epoch_lr: float | None = None

    def _start_clock(self):
        self._clock_started = time.perf_counter()

    def _stop_clock(self):
        if self._clock_started is not None:
            self.train_seconds += time.perf_counter() - self._clock_started
            self._clock_started = None

    def on_train_epoch_start(self, trainer, pl_module):
        # the rate this epoch trains at: the run's schedule may change it after its validation
        self._epoch_lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self._start_clock()

    def on_validation_start(self, trainer, pl_module):
        self._stop_clock()

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._start_clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # under DDP every rank trains on an equal part of each global batch: count the whole world's
        self.train_samples += batch.y.shape[0] * trainer.world_size

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else float("nan")

    def on_train_epoch_end(self, trainer, pl_module):
        self._stop_clock()
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "lr": self._epoch_lr}
        row.update({k: float(metrics[k]) for k in COLUMNS[1:4] if k in metrics})
        self.rows.append(row)
        with replacing(self.path) as temporary, temporary.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    # a resumed run's history.csv and throughput go on from the stopped run's
    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("rows", "train_samples", "train_seconds", "_epoch_lr")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict.items():
            setattr(self, key, value)

    def on_train_start(self, trainer, pl_module):
        self._start_clock()  # a run resumed within an epoch starts no epoch
