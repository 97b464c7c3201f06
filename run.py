"""ctr-bench entry point: compose a config, train one model on one dataset, test it, write metrics.

    python run.py                                   # DeepFM on the embedded synthetic data
    python run.py -m model=deepfm,fm,pnn            # a multirun: one folder per model
    python run.py -m hparams_search=deepfm          # an Optuna sweep into a persistent study

A run folder holds `.hydra/` (the resolved config), `metrics.json`, `history.csv` (one row per
epoch), the logger's files and the best checkpoint. The returned value is the best epoch's
`objective`, so Hydra's sweepers can optimise it.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from experiments.ddp_jobs import ddp_world_of_this_run, wait_for_started_ranks
from experiments.history import EpochHistory
from experiments.pruning import sweep_trial_pruning
from experiments.sweeps import objective_mode
from models.metrics import auc, logloss

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parent / "conf"

# Targets a config may instantiate; add your own package here to run models defined outside.
TRUSTED_TARGETS = ["models.*", "datamodules.*", "experiments.*", "pytorch_lightning.*"]


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python run.py <overrides>`` runs (not resolved), for tools and tests that call
    ``train`` or the app's parts in their own process."""
    with initialize_config_dir(config_dir=str(CONF)):
        return compose(config_name="config", overrides=list(overrides))


def train(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Fit, restore the best epoch, test; write ``metrics.json`` into ``out_dir`` and return it."""
    out_dir = Path(out_dir)
    mode = objective_mode(cfg.objective)  # fails fast on an objective the models do not log
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data, seed=cfg.seed, _execution_whitelist_=TRUSTED_TARGETS)
    datamodule.prepare_data()
    datamodule.setup("fit")
    # plain containers: checkpoints store hyperparameters and must load without OmegaConf types
    model = instantiate(cfg.model, schema=datamodule.schema, monitor=cfg.objective, **cfg.optim,
                        _convert_="all", _execution_whitelist_=TRUSTED_TARGETS)

    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best",
                                 monitor=cfg.objective, mode=mode, save_top_k=1)
    history = EpochHistory(out_dir / "history.csv")
    callbacks = [checkpoint, history,
                 EarlyStopping(monitor=cfg.objective, mode=mode, patience=cfg.early_stopping_patience),
                 *sweep_trial_pruning(cfg.objective)]  # a sweep trial the pruner may stop
    loggers = [instantiate(logger, save_dir=str(out_dir), _execution_whitelist_=TRUSTED_TARGETS)
               for logger in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          default_root_dir=str(out_dir), _execution_whitelist_=TRUSTED_TARGETS)

    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_time = time.perf_counter() - started
    if cfg.objective not in trainer.callback_metrics:
        raise RuntimeError(f"objective {cfg.objective!r} was never logged; logged metrics: "
                           f"{sorted(trainer.callback_metrics)}")

    best = "best" if checkpoint.best_model_path else None
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0] \
        if labelled(datamodule, "test") else {}
    epochs = trainer.current_epoch
    metrics = {
        "model": model_name(cfg, model),
        "dataset": datamodule.name,
        "seed": cfg.seed,
        **{k: float(v) for k, v in {**val, **test}.items() if k.startswith(("val/", "test/"))},
        "objective": cfg.objective,
        "best_epoch": history.best_epoch(cfg.objective, mode),
        "epochs": epochs,
        "train_time_s": train_time,  # wall time of fit, validation included
        "train_samples_per_s": history.samples_per_second,
        "num_params": sum(p.numel() for p in model.parameters()),
        **oracle_metrics(datamodule),
    }
    if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
        raise RuntimeError(f"non-finite metrics: {metrics}")
    if trainer.is_global_zero:  # under DDP every rank runs this function on the same metrics
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    wait_for_started_ranks(trainer)
    return metrics


def model_name(cfg: DictConfig, model: pl.LightningModule) -> str:
    """The name the model was chosen by (``model=deepfm``); the class name outside a Hydra app."""
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.model
    return type(model).__name__.lower()


def labelled(datamodule, split: str) -> bool:
    """Whether every row of ``split`` has a label. An unlabelled test file (Kaggle's Criteo
    test.txt) leaves the test metrics out of metrics.json instead of making them NaN."""
    unlabelled = int(np.isnan(datamodule.labels(split)).sum())
    if unlabelled:
        log.warning("%s split: %d of %d rows have no label; test metrics are left out",
                    split, unlabelled, datamodule.num_rows(split))
    return not unlabelled


def oracle_metrics(datamodule) -> dict:
    """Test AUC/LogLoss of the true probabilities, where the data has them (synthetic)."""
    p_true = datamodule.true_probabilities("test")
    if p_true is None:
        return {}
    y = datamodule.labels("test")
    return {"oracle/test/auc": float(auc(y, p_true)), "oracle/test/logloss": float(logloss(y, p_true))}


@hydra.main(config_path="conf", config_name="config", execution_whitelist=TRUSTED_TARGETS)
def main(cfg: DictConfig) -> float:
    with ddp_world_of_this_run():
        metrics = train(cfg, HydraConfig.get().runtime.output_dir)
    return metrics[cfg.objective]


if __name__ == "__main__":
    main()
