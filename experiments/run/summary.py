"""What a run prints when it ends: what it found and where it put it."""

from __future__ import annotations

import os
from pathlib import Path


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)


def run_summary(metrics: dict, out_dir: Path, seconds: float) -> str:
    """A few lines: model and data, best epoch, val and test AUC / LogLoss, the wall time, the folder."""
    best = metrics.get("best_epoch")  # counted from 0 in metrics.json; from 1 here, as the epoch lines do
    epochs = (
        f"best epoch {best + 1} of {metrics.get('epochs')}" if best is not None else f"{metrics.get('epochs')} epochs"
    )
    lines = [f"{metrics['model']} on {metrics['dataset']} (seed {metrics['seed']}): {epochs}, {seconds:.0f} s"]
    for split in ("val", "test"):
        if f"{split}/auc" in metrics:
            lines.append(f"  {split:<4} AUC {metrics[f'{split}/auc']:.4f}  LogLoss {metrics[f'{split}/logloss']:.5f}")
    if "oracle/test/auc" in metrics:
        ceilings = ", ".join(
            f"{key.split('/')[1].replace('_', '-')} {value:.4f}"
            for key, value in metrics.items()
            if key.startswith("ceiling/") and key.endswith("/test/auc")
        )
        lines.append(
            f"  test AUC of the true probabilities {metrics['oracle/test/auc']:.4f}"
            + (f"; ceilings: {ceilings}" if ceilings else "")
        )
    if metrics.get("still_improving"):
        lines.append(
            f"  still improving: the best epoch was the last of {metrics.get('epochs')}; more epochs may score "
            f"higher (raise trainer.max_epochs; early stopping ends a run once it stops improving)"
        )
    if metrics.get("truncated"):
        lines.append(f"  truncated run ({metrics['truncated']}): a debug run, not comparable with full ones")
    lines.append(f"  run folder: {_shown(out_dir)} (metrics.json, history.csv, checkpoints/)")
    return "\n".join(lines)
