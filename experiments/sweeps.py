"""Optuna sweep plumbing shared by run.py and the Hydra config.

- ``objective_direction``: the one place that knows which metrics are maximised; the config
  derives the sweeper's ``direction`` and the checkpoint/early-stopping ``mode`` from it.
- ``layers``: rebuilds an MLP's ``hidden_units`` from a swept width and depth.
- ``resumable_tpe``: the sweeps' sampler, reseeded on resume so that it draws new trials.
- ``PrepareStorage``: a Hydra callback that creates the folder of a SQLite study file before the
  sweeper opens it (SQLite does not create folders, and the sweeper opens the study before any
  job folder exists).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

MAXIMISED = ("val/auc",)
MINIMISED = ("val/logloss",)


def objective_direction(objective: str) -> str:
    """``'maximize'`` or ``'minimize'`` for a metric the models log; a clear error otherwise."""
    if objective in MAXIMISED:
        return "maximize"
    if objective in MINIMISED:
        return "minimize"
    raise ValueError(f"objective {objective!r} is not a validation metric the models log; "
                     f"choose one of {', '.join(MAXIMISED + MINIMISED)}")


def objective_mode(objective: str) -> str:
    """Lightning's spelling of the direction (for ModelCheckpoint / EarlyStopping)."""
    return objective_direction(objective)[:3]


def layers(width: int, depth: int) -> list[int]:
    """``hidden_units`` of an MLP swept as width x depth: ``layers(400, 3) == [400, 400, 400]``."""
    return [int(width)] * int(depth)


def register_resolvers() -> None:
    for name, resolver in (("objective_direction", objective_direction), ("layers", layers)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_resolver(name, resolver)


def sqlite_path(storage: str | None) -> Path | None:
    """The database file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL, else None."""
    prefix = "sqlite:///"
    if not storage or not str(storage).startswith(prefix):
        return None
    return Path(str(storage)[len(prefix):])


def existing_trials(storage: str | None, study_name: str | None) -> int:
    """How many trials the study already holds (0 when it, or its SQLite file, does not exist)."""
    if not storage or not study_name:
        return 0
    path = sqlite_path(storage)
    if path is not None and not path.exists():
        return 0  # opening would create an empty database file, possibly in a missing folder
    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study in this storage yet
        return 0


def resumable_tpe(seed: int, storage: str | None = None, study_name: str | None = None,
                  **options: Any) -> optuna.samplers.TPESampler:
    """TPE seeded with ``seed`` plus the number of trials already in the study.

    A fresh sweep is reproducible; a resumed one (the same command again) continues with new
    random draws instead of replaying the first invocation's trials, which a fixed seed would.
    """
    return optuna.samplers.TPESampler(seed=seed + existing_trials(storage, study_name), **options)


class PrepareStorage(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        path = sqlite_path(OmegaConf.select(config, "hydra.sweeper.storage"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


register_resolvers()
