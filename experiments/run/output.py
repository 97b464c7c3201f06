"""What a run prints while it trains: a progress bar in a terminal, one line per epoch elsewhere
(CI, SLURM, ``nohup``, a pipe), and none of the libraries' notices that are not about the run."""

from __future__ import annotations

import logging
import sys
import time
import warnings

import pytorch_lightning as pl

# Lightning's advertisements, and its notes on restoring the best epoch (the run's summary says
# which epoch it tested) or a resumed run's state.
QUIET_PREFIXES = (
    "💡 Tip:",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
    "Restored all states from the checkpoint",  # a resumed run says so itself
)


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(QUIET_PREFIXES)


def quiet_library_notices() -> None:
    """Once per process: drop Lightning's tips and restore notes, torch's deprecation warning
    about the pytree API that Lightning itself calls, and Lightning's warning that an epoch has
    fewer steps than its logging interval (a run's metrics are per epoch; small data is normal)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in target.filters):
            target.addFilter(_DropNotices())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # a resumed run's sampler leaves out the batches trained before (experiments/run/resume.py)
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    warnings.filterwarnings(
        "ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval"
    )


def interactive() -> bool:
    return sys.stdout.isatty()


class EpochLines(pl.Callback):
    """A line per epoch instead of a progress bar: ``epoch 3/10  train/loss 0.4512  val/auc
    0.7812  val/logloss 0.46123  lr 0.001  12.3 s``."""

    def __init__(self, stream=None):
        self.stream = stream

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None

    # a run resumed within an epoch starts no epoch; the rate it trains at is the epoch's
    on_train_start = on_train_epoch_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        parts += [
            f"{key} {float(metrics[key]):.{5 if 'logloss' in key else 4}f}"
            for key in ("train/loss", "val/auc", "val/logloss")
            if key in metrics
        ]
        if self._lr is not None:
            parts.append(f"lr {self._lr:.3g}")
        parts.append(f"{time.perf_counter() - self._started:.1f} s")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)
