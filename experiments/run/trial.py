"""The run's side of pruning Optuna sweep trials: a run reports its validation objective to its
trial after every epoch and stops training once the study's pruner gives up on it.

The Optuna plugin's sweeper hands a job its trial's parameters as overrides and nothing else, so a
run cannot reach its trial the way an ``objective(trial)`` function can. Our sweeper
(``experiments.sweep.sweeper.DistributedOptunaSweeper``, with a ``pruner`` and a storage) therefore names
the trial in the job's environment (``hydra.job.env_set``: study name and trial number; unlike a
config key, the environment reaches every DDP rank the run starts and stays out of the run's
configuration); the job reopens the trial through the storage, builds the pruner from its Hydra
config (``hydra.sweeper.pruner``) and reports to it (``TrialPruning``). A pruned run stops training and
finishes as any run does (best epoch restored and tested, metrics written); it marks its trial
with the user attribute ``pruned_at_epoch``, and the sweeper tells that trial PRUNED instead of
COMPLETE (``experiments.sweep.pruning.tell_marked_trials_pruned``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

import optuna
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# The environment variables that name a job's trial, and the user attribute a pruned trial gets.
STUDY_ENV = "CTR_BENCH_OPTUNA_STUDY"
TRIAL_ENV = "CTR_BENCH_OPTUNA_TRIAL"
PRUNED_ATTR = "pruned_at_epoch"
# Where a pruner config may point.
PRUNER_TARGETS = ("optuna.pruners.*", "experiments.*")


def build_pruner(config: DictConfig | None) -> optuna.pruners.BasePruner | None:
    """The pruner of a sweeper config's ``pruner`` node; None for ``pruner: null``."""
    return None if config is None else instantiate(config, _execution_whitelist_=PRUNER_TARGETS)


def open_sweep_trial(study_name: str, trial_number: int) -> optuna.Trial:
    """Trial ``trial_number`` of the study, through the sweep's storage, with the sweep's pruner
    (both from this job's Hydra config)."""
    sweeper = HydraConfig.get().sweeper
    storage = optuna.storages.get_storage(str(sweeper.storage))
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=build_pruner(sweeper.pruner))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), trial_number)
    return optuna.trial.Trial(study, trial_id)


class TrialPruning(pl.Callback):
    """Reports ``monitor`` to an Optuna trial after every training epoch (validation has run by
    then, as in ``EpochHistory``) and stops training when the study's pruner says the trial is
    clearly worse than the others were at that epoch; the trial is then marked ``pruned_at_epoch``.

    Only global rank 0 opens the trial (``open_trial``, on its first report) and talks to the
    study; its decision is broadcast, so every DDP rank stops after the same epoch.
    """

    def __init__(self, open_trial: Callable[[], optuna.Trial], monitor: str) -> None:
        self._open_trial = open_trial
        self.monitor = monitor
        self.trial: optuna.Trial | None = None
        self.pruned_at_epoch: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pruned = trainer.is_global_zero and self._report(trainer)
        if trainer.strategy.broadcast(pruned, src=0):
            trainer.should_stop = True

    def _report(self, trainer: pl.Trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:  # no validation this epoch: nothing to judge by
            return False
        if self.trial is None:
            self.trial = self._open_trial()
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)  # a NaN is reported too: pruners prune it
        if not self.trial.should_prune():
            return False
        self.trial.set_user_attr(PRUNED_ATTR, epoch)
        self.pruned_at_epoch = epoch
        log.info("trial %d pruned after epoch %d: %s = %.6g", self.trial.number, epoch, self.monitor, float(value))
        return True


def sweep_trial_pruning(monitor: str) -> list[pl.Callback]:
    """``[TrialPruning]`` when the sweeper named this run's trial in the environment (a sweep with
    a pruner and a storage), ``[]`` otherwise: a plain run, or a sweep that does not prune."""
    study_name, trial_number = os.environ.get(STUDY_ENV), os.environ.get(TRIAL_ENV)
    if study_name is None or trial_number is None:
        return []
    return [TrialPruning(functools.partial(open_sweep_trial, study_name, int(trial_number)), monitor)]
