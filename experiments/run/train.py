"""One run: fit, restore the best epoch, validate and test it, write ``metrics.json``.

``train(cfg, out_dir)`` is what ``python run.py`` does inside its Hydra job; tools and tests call
it with a config from ``experiments.run.config.compose_config``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from datamodules.bundle import ENCODING_DIR, write_encoding
from datamodules.encode import Encoding
from experiments.run.atomic import AtomicCheckpointIO, replacing, write_text
from experiments.run.config import TRUSTED_TARGETS
from experiments.run.ddp import wait_for_started_ranks
from experiments.run.errors import configured
from experiments.run.history import EpochHistory
from experiments.run.latency import one_row_p99_ms
from experiments.run.memory import PeakMemory
from experiments.run.objective import objective_mode
from experiments.run.output import EpochLines, interactive, quiet_library_notices
from experiments.run.plateau import PlateauSchedule
from experiments.run.resume import (
    FINGERPRINT_KEY,
    METRICS_FILE,
    RESUME_STATE,
    ResumeState,
    config_fingerprint,
    resume_checkpoint,
)
from experiments.run.threads import GovernThreads, thread_policy
from experiments.run.trial import sweep_trial_pruning
from models import MODELS
from models.layers.precision import set_precision
from models.metrics import auc, expected_calibration_error, logloss

log = logging.getLogger(__name__)


def train(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Fit, restore the best epoch, test; write ``metrics.json`` into ``out_dir`` and return it."""
    out_dir = Path(out_dir)
    memory = PeakMemory()
    memory.start()
    with configured("objective"):
        objective_mode(cfg.objective)  # fails fast on an objective the models do not log
    with configured("threads"):
        governor = thread_policy(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule.schema)
    history = EpochHistory(out_dir / "history.csv")
    plateau = plateau_schedule(cfg, out_dir / "checkpoints" / "best.ckpt")
    state = resume_state(cfg, out_dir)
    callbacks = [history, plateau, state, *sweep_trial_pruning(cfg.objective)]  # a sweep trial the pruner may stop
    if governor:
        callbacks.append(GovernThreads(governor))
    trainer = build_trainer(cfg, out_dir, callbacks)

    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg, out_dir), weights_only=False)
    train_time = time.perf_counter() - started
    if cfg.objective not in trainer.callback_metrics:
        raise RuntimeError(
            f"objective {cfg.objective!r} was never logged; logged metrics: {sorted(trainer.callback_metrics)}"
        )

    scores = best_epoch_scores(trainer, model, datamodule, plateau.best_checkpoint)
    epochs = trainer.current_epoch
    metrics = {
        **run_identity(cfg, model, datamodule),
        **scores,
        **calibration_metrics(model),
        "objective": cfg.objective,
        "best_epoch": plateau.best_epoch,
        "epochs": epochs,
        "epochs_to_best": None if plateau.best_epoch is None else plateau.best_epoch + 1,
        # the best epoch was the last: early stopping never ended the run, more epochs may still score higher
        "still_improving": plateau.best_epoch is not None and plateau.best_epoch == epochs - 1,
        **cost_metrics(model, datamodule, history, memory, epochs, train_time),
        **oracle_metrics(datamodule),
        **(governor.summary() if governor else {}),
        **truncation(trainer),
    }
    if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
        raise RuntimeError(f"non-finite metrics: {metrics}")
    if trainer.is_global_zero:  # under DDP every rank runs this function on the same metrics
        save_encoding(cfg, datamodule, out_dir / ENCODING_DIR)
        write_outputs(cfg, model, metrics, out_dir)
        state.finished()
    wait_for_started_ranks(trainer)
    return metrics


def cost_metrics(model, datamodule, history: EpochHistory, memory: PeakMemory, epochs: int, train_time: float) -> dict:
    """What the run cost: its time, its rates of training and scoring, memory and size."""
    return {
        "train_time_s": train_time,  # wall time of fit, validation included
        "train_seconds_per_epoch": history.train_seconds / max(epochs, 1),  # validation left out
        "train_samples_per_s": history.samples_per_second,
        "inference_samples_per_s": inference_rate(model),
        "one_row_p99_ms": one_row_p99_ms(model, datamodule),
        "peak_rss_mib": memory.mib(),
        "peak_rss_scope": memory.scope,  # "run", or "process" where the peak could not be reset
        "num_params": sum(p.numel() for p in model.parameters()),
        "train_rows": datamodule.num_rows("train"),
    }


def run_identity(cfg: DictConfig, model, datamodule) -> dict:
    """Which run this is: its model, dataset and seed, and its config's fingerprint, which tells a
    later command in the same folder whether this finished run is the one it asks for."""
    return {
        "model": model_name(cfg, model),
        "dataset": datamodule.name,
        "seed": cfg.seed,
        FINGERPRINT_KEY: config_fingerprint(cfg),
    }


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """``cfg.data``, its cache built (or found) and its splits set up."""
    with configured("data"):
        datamodule = instantiate(cfg.data, seed=cfg.seed, _execution_whitelist_=TRUSTED_TARGETS)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def best_epoch_scores(trainer: pl.Trainer, model, datamodule, checkpoint) -> dict:
    """The val/ and test/ metrics of the best epoch's weights (``checkpoint``), test only where every
    test row has a label."""
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)[0]
    test = (
        trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)[0]
        if labelled(datamodule, "test")
        else {}
    )
    return {k: float(v) for k, v in {**val, **test}.items() if k.startswith(("val/", "test/"))}


def write_outputs(cfg: DictConfig, model, metrics: dict, out_dir: Path) -> None:
    """Where ``cfg.save_predictions`` asks, the test predictions, then ``metrics.json``: the file
    that marks the run finished comes last."""
    if cfg.save_predictions and model.test_predictions is not None:
        save_predictions(model, out_dir / PREDICTIONS_DIR)
    write_text(out_dir / METRICS_FILE, json.dumps(metrics, indent=2))


def save_encoding(cfg: DictConfig, datamodule, folder: Path) -> None:
    """The fitted encoding, readable, with the source's settings (``datamodules.bundle``): what
    ``python -m experiments.predict`` needs besides the checkpoint to score raw rows once the cache
    and the training files are gone. Nothing for a datamodule without a cache (one of a test's own)."""
    cache_path = getattr(datamodule, "cache_path", None)
    if cache_path is None or "source" not in cfg.data:
        return
    scoring = {
        "on_bad_line": datamodule.on_bad_line,
        "block_bytes": datamodule.block_bytes,
        "eval_batch_size": datamodule.eval_batch_size,
        "precision": str(cfg.precision),
        "dataset": datamodule.name,
        "label": getattr(datamodule.source, "label", "label"),
    }
    source = OmegaConf.to_container(cfg.data.source, resolve=True)
    encoding = Encoding.load(cache_path / "encoding.npz")
    write_encoding(folder, encoding, datamodule.encoding_config, source, scoring)


def resume_state(cfg: DictConfig, out_dir: Path) -> ResumeState:
    """The callback that saves the run's state as ``cfg.checkpoint`` says, to resume it from."""
    with configured("checkpoint"):
        return ResumeState(out_dir / RESUME_STATE, config_fingerprint(cfg), **cfg.checkpoint)


def build_model(cfg: DictConfig, schema) -> pl.LightningModule:
    """``cfg.model`` over ``schema``, with the optimisation (``cfg.optim``) and initialisation
    (``cfg.init``) settings, its parameters drawn as ``cfg.init`` says."""
    # plain containers: checkpoints store hyperparameters and must load without OmegaConf types
    with configured("model, optim or init"):
        model = instantiate(
            cfg.model,
            schema=schema,
            optim=cfg.optim,
            init=cfg.init,
            _convert_="all",
            _execution_whitelist_=TRUSTED_TARGETS,
        )
    model.reset_parameters()
    with configured("precision"):
        set_precision(model, cfg.precision)
    return model


def plateau_schedule(cfg: DictConfig, checkpoint_path: Path) -> PlateauSchedule:
    """The run's best-epoch, learning-rate-decay and early-stopping rule (``cfg.plateau``)."""
    with configured("plateau"):
        return PlateauSchedule(cfg.objective, objective_mode(cfg.objective), checkpoint_path, **cfg.plateau)


def build_trainer(cfg: DictConfig, out_dir: Path, callbacks: list[pl.Callback], **overrides) -> pl.Trainer:
    """The ``pl.Trainer`` of ``cfg.trainer`` with the configured loggers, writing into ``out_dir``."""
    quiet_library_notices()
    overrides = {"plugins": [AtomicCheckpointIO()], **overrides}
    if cfg.trainer.get("enable_progress_bar", True) and not interactive():  # a bar's every redraw would be a line
        overrides = {"enable_progress_bar": False, **overrides}
        callbacks = [*callbacks, EpochLines()]
    with configured("logger or trainer"):
        loggers = [
            instantiate(logger, save_dir=str(out_dir), _execution_whitelist_=TRUSTED_TARGETS)
            for logger in cfg.logger.values()
        ]
        return instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(out_dir),
            **overrides,
            _execution_whitelist_=TRUSTED_TARGETS,
        )


PREDICTIONS_DIR = "predictions"


def calibration_metrics(model) -> dict:
    """The test split's expected calibration error (equal-mass bins), mean prediction and click rate."""
    if model.test_predictions is None:
        return {}
    p, y = model.test_predictions
    return {
        "test/ece": expected_calibration_error(y, p),
        "test/mean_prediction": float(p.double().mean()),
        "test/click_rate": float(y.double().mean()),
    }


def inference_rate(model) -> Optional[float]:
    """Test rows scored per second (forward passes of the whole split, all ranks together)."""
    if model.test_predictions is None or not model.test_seconds:
        return None
    return len(model.test_predictions[0]) / model.test_seconds


def save_predictions(model, folder: Path) -> None:
    """``test_p.npy`` (float32 click probabilities) and ``test_y.npy`` (int8 labels), in the cache's
    row order: what the report's significance tests and reliability diagrams read."""
    p, y = model.test_predictions
    for name, values in (("test_p.npy", p.numpy().astype(np.float32)), ("test_y.npy", y.numpy().astype(np.int8))):
        with replacing(folder / name) as temporary, temporary.open("wb") as f:
            np.save(f, values)


TRUNCATING = ("limit_train_batches", "limit_val_batches", "limit_test_batches")


def truncation(trainer: pl.Trainer) -> dict:
    """``{"truncated": "<what>"}`` for a run that saw only part of its data (``fast_dev_run``,
    ``limit_*_batches``, ``trainer=debug``): its metrics are not comparable with full runs."""
    reasons = ["fast_dev_run"] if trainer.fast_dev_run else []
    for name in TRUNCATING:
        value = getattr(trainer, name)
        if value is not None and value != 1.0:
            reasons.append(f"{name}={value}")
    return {"truncated": ", ".join(reasons)} if reasons else {}


def model_name(cfg: DictConfig, model: pl.LightningModule) -> str:
    """The suite's name of the model's class (``models.MODELS``), whichever config chose it (a
    preset may run ``model=wide_deep`` as ``lr_dnn``); for a class from elsewhere, the name it was
    chosen by (``model=my_model``), or the class name outside a Hydra app."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.model
    return type(model).__name__.lower()


def labelled(datamodule, split: str) -> bool:
    """Whether every row of ``split`` has a label. An unlabelled test file (Kaggle's Criteo
    test.txt) leaves the test metrics out of metrics.json instead of making them NaN."""
    unlabelled = int(np.isnan(datamodule.labels(split)).sum())
    if unlabelled:
        log.warning(
            "%s split: %d of %d rows have no label; test metrics are left out",
            split,
            unlabelled,
            datamodule.num_rows(split),
        )
    return not unlabelled


def oracle_metrics(datamodule) -> dict:
    """Test AUC/LogLoss of the true probabilities and of each ceiling (the true probability
    restricted to a model family, ``ceiling/<name>/test/...``), where the data has them (synthetic)."""
    p_true = datamodule.true_probabilities("test")
    if p_true is None:
        return {}
    y = datamodule.labels("test")
    metrics = {"oracle/test/auc": float(auc(y, p_true)), "oracle/test/logloss": float(logloss(y, p_true))}
    for name, p in datamodule.ceiling_probabilities("test").items():
        metrics |= {f"ceiling/{name}/test/auc": float(auc(y, p)), f"ceiling/{name}/test/logloss": float(logloss(y, p))}
    return metrics
