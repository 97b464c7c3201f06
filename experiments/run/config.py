"""The app's configuration: where it lives, what it may instantiate, how tools compose it.

Importing this module registers the resolvers the configs use (``objective_direction``,
``layers``), so every process that resolves a config (``run.py``, its DDP ranks, sweep workers,
tools and tests) has them. It imports no torch: tools that only compose configs stay quick to start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from experiments.run.objective import objective_direction

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
RUN_SCRIPT = REPO / "run.py"

# Targets a config may instantiate; add your own package here to run models defined outside.
TRUSTED_TARGETS = ["models.*", "datamodules.*", "experiments.*", "pytorch_lightning.*"]


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python run.py <overrides>`` runs (not resolved), for tools and tests that call
    ``train`` or the app's parts in their own process."""
    with initialize_config_dir(config_dir=str(CONF)):
        return compose(config_name="config", overrides=list(overrides))


def layers(width: int, depth: int) -> list[int]:
    """``hidden_units`` of an MLP swept as width x depth: ``layers(400, 3) == [400, 400, 400]``."""
    return [int(width)] * int(depth)


def register_resolvers() -> None:
    for name, resolver in (("objective_direction", objective_direction), ("layers", layers)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_resolver(name, resolver)


register_resolvers()
