"""The runs' saved test predictions, read once per report: the significance tests and the
reliability diagrams both need every seed's ``(p, y)``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from experiments.report import stats

PREDICTIONS = ("predictions/test_p.npy", "predictions/test_y.npy")  # what each run saves (experiments.run)


def _load_predictions(run_dir: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    files = [Path(run_dir) / name for name in PREDICTIONS]
    if not all(f.is_file() for f in files):
        return None
    return np.load(files[0]).astype(np.float64), np.load(files[1])


SavedPredictions = dict[str, list[tuple[np.ndarray, np.ndarray]]]


def saved_predictions(runs: pd.DataFrame) -> SavedPredictions:
    """Per model (label) whose every run saved its test predictions: each seed's ``(p, y)``.
    Read once per report, for the significance tests and the reliability diagrams."""
    out = {}
    for label, group in runs.groupby("label", sort=False):
        loaded = [_load_predictions(run_dir) for run_dir in group["run_dir"]]
        if loaded and all(item is not None for item in loaded):
            out[str(label)] = loaded
    return out


def shared_labels(*seed_lists: list[tuple[np.ndarray, np.ndarray]]) -> Optional[np.ndarray]:
    """The test labels every run of ``seed_lists`` scored, or None where they scored different rows
    (then no paired test applies)."""
    labels = seed_lists[0][0][1]
    same = all(np.array_equal(y, labels) for seeds in seed_lists for _, y in seeds)
    return labels if same else None


def reliability_curves(predictions: SavedPredictions) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per model with saved predictions: its seeds' test predictions pooled, in equal-mass bins
    (``stats.calibration_bins``)."""
    return {
        label: stats.calibration_bins(
            np.concatenate([y for _, y in seeds]).astype(np.float64), np.concatenate([p for p, _ in seeds])
        )
        for label, seeds in predictions.items()
    }
