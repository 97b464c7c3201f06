"""Run folders made by hand, as ``run.py`` leaves them, for the report's tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

_clock = iter(range(1_700_000_000, 1_800_000_000, 60))  # runs finish one minute apart, in creation order


def make_run(
    folder: Path,
    model: str,
    dataset: str,
    seed: int,
    auc: float | None = None,
    logloss: float | None = None,
    *,
    val_auc: float | None = None,
    overrides: tuple[str, ...] = (),
    oracle: tuple[float, float] | None = None,
    model_config: dict | None = None,
    history: list[float] | None = None,
    finished: bool = True,
    experiment: str | None = None,
    still_improving: bool | None = None,
) -> Path:
    """A run folder as run.py leaves it; ``finished=False`` leaves out metrics.json like a crash;
    ``experiment``: the ``experiment=`` it was run with; ``still_improving``: that key of
    metrics.json (left out when None, as runs before it were written)."""
    write_hydra_files(folder, model, dataset, seed, overrides, model_config, experiment)
    if history is not None:
        rows = [f"{epoch},{0.6 - 0.01 * epoch},{value},{0.5 - value / 10}" for epoch, value in enumerate(history, 1)]
        (folder / "history.csv").write_text("epoch,train/loss,val/auc,val/logloss\n" + "\n".join(rows) + "\n")
    if finished:
        metrics = {
            "model": model,
            "dataset": dataset,
            "seed": seed,
            "val/auc": auc if val_auc is None else val_auc,
            "val/logloss": logloss,
            "test/auc": auc,
            "test/logloss": logloss,
            "best_epoch": 2,
            "epochs": 3,
            "train_time_s": 10.0 + seed,
            "train_samples_per_s": 1000.0,
            "num_params": 1234,
        }
        if still_improving is not None:
            metrics["still_improving"] = still_improving
        if oracle is not None:
            metrics["oracle/test/auc"], metrics["oracle/test/logloss"] = oracle
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
        stamp = next(_clock)
        os.utime(folder / "metrics.json", (stamp, stamp))
    return folder


def write_hydra_files(
    folder: Path,
    model: str,
    dataset: str,
    seed: int,
    overrides: tuple[str, ...],
    model_config: dict | None,
    experiment: str | None = None,
) -> None:
    """``.hydra/`` of a run: its resolved config, what was typed, and Hydra's own record."""
    hydra_dir = folder / ".hydra"
    hydra_dir.mkdir(parents=True)
    config = {
        "seed": seed,
        "model": {"_target_": f"models.{model}", **(model_config or {})},
        "data": {"name": dataset},
        "optim": {"lr": 0.001},
        "trainer": {"max_epochs": 3},
    }
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", *overrides, f"seed={seed}"]))
    hydra = {
        "runtime": {"choices": {"model": model, "data": dataset, **({"experiment": experiment} if experiment else {})}},
        "overrides": {"hydra": ["hydra.mode=RUN"], "task": [f"model={model}", *overrides, f"seed={seed}"]},
        "job": {"name": "run"},
    }
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
