"""The whole-split metrics of ``measures.metrics`` for tensors as well: a tensor is copied to host first."""

from __future__ import annotations

import torch

from measures import metrics
from measures.metrics import CALIBRATION_BINS


def on_host(values):
    """A tensor (on any device, with or without gradients) as a numpy array; anything else as it is."""
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


def auc(y, p) -> float:
    return metrics.auc(on_host(y), on_host(p))


def logloss(y, p, eps: float = 1e-15) -> float:
    return metrics.logloss(on_host(y), on_host(p), eps)


def expected_calibration_error(y, p, bins: int = CALIBRATION_BINS) -> float:
    return metrics.expected_calibration_error(on_host(y), on_host(p), bins)
