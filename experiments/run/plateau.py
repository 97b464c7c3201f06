"""What happens after each validation of a run: one rule for the best epoch, the learning-rate
decay and early stopping, so that the three can never disagree.

An epoch *improves* when its objective beats the best so far by at least ``min_delta``
(maximised: ``value >= best + min_delta``; minimised: ``value <= best - min_delta``); a NaN never
does. Then:

- an improving epoch becomes the best one: its weights are saved (``checkpoint_path``) and the
  count of epochs without improvement starts again at 0;
- every other epoch multiplies the learning rate of every parameter group by ``lr_factor``, not
  below ``min_lr`` (``lr_factor`` 1: no decay), and counts one more epoch without improvement;
- training stops once ``patience`` epochs in a row did not improve.

The run then tests the best epoch's weights. This is FuxiCTR's rule (``BaseModel``'s
``checkpoint_and_earlystop`` and ``lr_decay``, hence BARS's protocol) with its constants as the
suite's defaults (``conf/config.yaml``: ``min_delta`` 1e-6, ``lr_factor`` 0.1, ``min_lr`` 1e-6,
``patience`` 2), so that an epoch that still improves never cuts the rate and a decay always has
the epochs it needs to take effect before training stops.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class PlateauSchedule(pl.Callback):
    """The rule above, applied at the end of every validation of a fit (not the sanity check)."""

    def __init__(
        self,
        monitor: str,
        mode: str,
        checkpoint_path: str | Path,
        *,
        patience: int = 2,
        min_delta: float = 1e-6,
        lr_factor: float = 0.1,
        min_lr: float = 1e-6,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 1 or min_delta < 0 or not 0 < lr_factor <= 1 or min_lr < 0:
            raise ValueError(
                f"plateau: needs patience >= 1, min_delta >= 0, 0 < lr_factor <= 1 and "
                f"min_lr >= 0; got patience={patience}, min_delta={min_delta}, "
                f"lr_factor={lr_factor}, min_lr={min_lr}"
            )
        self.monitor, self.mode = monitor, mode
        self.checkpoint_path = Path(checkpoint_path)
        self.patience, self.min_delta, self.lr_factor, self.min_lr = patience, min_delta, lr_factor, min_lr
        self.best: float = -math.inf if mode == "max" else math.inf
        self.best_epoch: Optional[int] = None
        self.epochs_without_improvement = 0

    def improves(self, value: float) -> bool:
        if self.mode == "max":
            return value >= self.best + self.min_delta
        return value <= self.best - self.min_delta

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed after its last epoch stopped it: Lightning does not keep should_stop
        if self.epochs_without_improvement >= self.patience:
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self.improves(value):
            self.best, self.best_epoch, self.epochs_without_improvement = value, trainer.current_epoch, 0
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        else:
            self.epochs_without_improvement += 1
            if self.lr_factor != 1:
                self._decay(trainer)
        if self.epochs_without_improvement >= self.patience:
            trainer.should_stop = True

    def _decay(self, trainer: pl.Trainer) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = max(group["lr"] * self.lr_factor, self.min_lr)
        log.info(
            "epoch %d did not improve %s: learning rate now %.3g",
            trainer.current_epoch + 1,
            self.monitor,
            trainer.optimizers[0].param_groups[0]["lr"],
        )

    @property
    def best_checkpoint(self) -> Optional[Path]:
        """The best epoch's checkpoint, once an epoch improved (else None: test the last weights)."""
        return self.checkpoint_path if self.best_epoch is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.best_epoch = state_dict["best_epoch"]
        self.epochs_without_improvement = state_dict["epochs_without_improvement"]
