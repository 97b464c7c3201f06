"""The Optuna sweeper and its storage plumbing (``hydra/sweeper=distributed_optuna``).

- ``resumable_tpe``: the sweeps' sampler, TPE whose trial k draws with seed ``seed + k``
  (``TrialSeededSampler``), so a resumed study draws new trials and concurrent workers never
  share a random stream.
- ``DistributedOptunaSweeper``: the Optuna plugin's sweeper made safe for many worker processes
  on one study: heartbeats, stale trials failed and retried, run folders named by trial number;
  plus pruning of bad trials (``experiments.sweep.pruning``) and a time limit.
- ``PrepareStorage``: a Hydra callback that creates the folder of a SQLite study file before the
  sweeper opens it (SQLite does not create folders, and the sweeper opens the study before any
  job folder exists). ``conf/config.yaml`` lists it, so Hydra imports this module at every start,
  before it builds a sweeper: that import registers ``DistributedOptunaSweeper`` as a plugin.

The config resolvers the search spaces use (``objective_direction``, ``layers``) are registered by
``experiments.run.config``: a job resolves its config in processes that never load the sweeper.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from hydra.core.plugins import Plugins
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, Trial, TrialState

from experiments.report.naming import shown_storage
from experiments.run.trial import build_pruner
from experiments.sweep.pruning import tell_marked_trials_pruned, trial_env_overrides

log = logging.getLogger(__name__)

# The trial attribute that names the worker process which ran it ("host:pid").
WORKER_ATTR = "worker"
# Where a sampler config may point: Optuna's samplers, the plugin's factories, and ours.
SAMPLER_TARGETS = ("optuna.samplers.*", "hydra_plugins.hydra_optuna_sweeper.*", "experiments.*")


def sqlite_path(storage: str | None) -> Path | None:
    """The database file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL, else None."""
    prefix = "sqlite:///"
    if not storage or not str(storage).startswith(prefix):
        return None
    return Path(str(storage)[len(prefix) :])


class TrialSeededSampler(BaseSampler):
    """Samples trial k of a study with a sampler of its own, ``make_sampler(seed=seed + k)``.

    The storage hands out trial numbers, unique across every worker of a study. Seeding by them
    means that workers started together draw different parameters (one sampler seeded once per
    process would give them the same random stream), that a fresh sweep is reproducible trial by
    trial whichever worker runs which trial, and that a resumed study continues with new draws
    instead of replaying the first invocation's.
    """

    def __init__(self, seed: int, make_sampler: Callable[..., BaseSampler]) -> None:
        self.seed = seed
        self._make_sampler = make_sampler
        # a batch of trials is asked before any is told, so several can be in flight
        self._by_trial: dict[int, BaseSampler] = {}

    def _sampler(self, trial: FrozenTrial) -> BaseSampler:
        if trial.number not in self._by_trial:
            self._by_trial[trial.number] = self._make_sampler(seed=self.seed + trial.number)
        return self._by_trial[trial.number]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler(trial).before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        sampler = self._sampler(trial)
        del self._by_trial[trial.number]  # the trial is over; its sampler draws nothing more
        sampler.after_trial(study, trial, state, values)


def resumable_tpe(seed: int, **tpe_options: Any) -> TrialSeededSampler:
    """TPE whose trial k draws with seed ``seed + k`` (see ``TrialSeededSampler``); the options
    go to ``optuna.samplers.TPESampler``."""
    return TrialSeededSampler(seed, functools.partial(optuna.samplers.TPESampler, **tpe_options))


def worker_name() -> str:
    """``host:pid`` of this process: which worker ran a trial, as the dashboard shows it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class NamedStorage(optuna.storages.RDBStorage):
    """An ``RDBStorage`` that prints as its URL, password masked (the plugin logs the storage)."""

    def __repr__(self) -> str:
        return shown_storage(self.url)

    __str__ = __repr__


def open_storage(url: str, attempts: int = 5, **storage_options: Any) -> optuna.storages.RDBStorage:
    """``optuna.storages.RDBStorage(url, **storage_options)``, retried when workers race to create
    the tables of a fresh database (PostgreSQL then fails all but one ``CREATE TABLE`` with a
    duplicate-key or already-exists error; on a retry the tables are there)."""
    for attempt in range(1, attempts + 1):
        try:
            return NamedStorage(url, **storage_options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


class Heartbeat:
    """Records a heartbeat for each of ``trial_ids`` now, then every ``interval`` seconds from a
    background thread until ``stop()``. Optuna fails a RUNNING trial whose last heartbeat is older
    than the storage's grace period (``optuna.storages.fail_stale_trials``), and never one that has
    none yet, hence the first beat before returning."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_ids: Sequence[int], interval: float) -> None:
        self._storage = storage
        self._trial_ids = list(trial_ids)
        self._interval = interval
        self._stopped = threading.Event()
        self._beat()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        for trial_id in self._trial_ids:
            self._storage.record_heartbeat(trial_id)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except Exception:  # a dropped connection must not end the beats: the next may get through
                log.warning(
                    "could not record the heartbeat of trials %s; trying again in %ss",
                    self._trial_ids,
                    self._interval,
                    exc_info=True,
                )

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


@contextlib.contextmanager
def _quiet_heartbeat_warnings() -> Iterator[None]:
    """Optuna marks its heartbeat API experimental and warns at every ``ask`` that heartbeats are
    meant for ``Study.optimize``; the sweeper records them itself, so both warnings are noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


class DistributedOptunaSweeper(OptunaSweeperImpl):
    """The Optuna plugin's sweeper (ask a batch, launch it, tell the results), safe for several
    workers on one study.

    Run the same sweep command in several processes, on one machine or many, against one
    database (``hydra.sweeper.storage=postgresql://user:password@host/db``): each worker asks the
    study for trials of its own, so none is run twice, and every told trial is committed, so a
    killed worker loses only the trials it was running. On top of the plugin, for a study in a
    database (any SQLAlchemy URL; ``storage: null`` keeps an in-memory study and none of this):

    - while the launcher runs a batch, a background thread records a heartbeat for its trials every
      ``heartbeat_interval`` seconds (Optuna records heartbeats only inside ``Study.optimize``, which
      the plugin does not use);
    - at the start and before every batch, RUNNING trials silent for ``grace_period`` seconds (their
      worker was killed) are failed by ``optuna.storages.fail_stale_trials`` and queued again with
      the same parameters (``RetryHeartbeatStaleTrialCallback``, at most ``max_retry`` times; ``null``
      retries forever); the next ``ask`` of any worker runs the copy;
    - run folders are named by trial number instead of the per-process job number, so workers that
      share a sweep folder (started in the same second, or on a shared file system) never write
      into each other's runs;
    - each trial records the worker that ran it (user attribute ``worker``: ``host:pid``);
    - with a ``pruner``, each job reports its validation objective every epoch and stops when the
      pruner gives up on it; its trial is then told PRUNED (see ``experiments.run.trial``);
    - with a ``timeout`` (seconds), no new batch of trials is asked once this worker has swept
      that long; the trials running then finish.

    ``n_trials`` counts per worker, as in the plugin: W workers run W x ``n_trials`` trials.
    """

    def __init__(
        self,
        sampler: DictConfig,
        *,
        heartbeat_interval: int = 60,
        grace_period: int | None = None,
        max_retry: int | None = 1,
        pruner: DictConfig | None = None,
        timeout: float | None = None,
        **plugin_options: Any,
    ) -> None:
        super().__init__(sampler=instantiate(sampler, _execution_whitelist_=SAMPLER_TARGETS), **plugin_options)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry
        # built here only to fail before any trial runs; the jobs build their own from the config
        self.prunes = build_pruner(pruner) is not None
        self.timeout = timeout
        self._heartbeat: Heartbeat | None = None
        self._study_telling_pruned: optuna.Study | None = None

    def sweep(self, arguments: list[str]) -> None:
        with _quiet_heartbeat_warnings():
            if self.storage is not None:
                url = str(self.storage)
                self.storage = open_storage(
                    url,
                    heartbeat_interval=self.heartbeat_interval,
                    grace_period=self.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(self.max_retry),
                    # trials run for hours on a cluster; servers and firewalls drop idle connections
                    engine_kwargs={"pool_pre_ping": True},
                )
                log.info(
                    "Storage: %s, heartbeat every %ss, a trial silent for %ss is failed and retried (at most %s times)",
                    shown_storage(url),
                    self.heartbeat_interval,
                    self.storage.grace_period or 2 * self.heartbeat_interval,
                    "unlimited" if self.max_retry is None else self.max_retry,
                )
                self._fail_stale_trials_of_existing_study()
            elif self.prunes:
                log.warning(
                    "Pruning needs a storage the jobs can reach (hydra.sweeper.storage); "
                    "this in-memory study's trials run unpruned"
                )
            try:
                if self.timeout is None:
                    self._plugin_sweep(arguments)
                else:
                    self._sweep_until_timeout(arguments)
            finally:
                self._stop_heartbeat()

    def _plugin_sweep(self, arguments: list[str]) -> None:
        """The plugin's sweep, except that a pruned study without a completed trial (a pruner such
        as ThresholdPruner can prune them all) is no error: the plugin then fails only to write the
        best trial, there being none."""
        try:
            super().sweep(arguments)
        except ValueError:
            study = self._study_telling_pruned
            if study is None or study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                raise
            log.warning("No trial of study %s completed (all pruned or failed): no best parameters", study.study_name)

    def _sweep_until_timeout(self, arguments: list[str]) -> None:
        """The plugin runs its ``n_trials`` in one loop that nothing can stop; under a time limit
        it is given one batch (``n_jobs`` trials) at a time until the trials or the time run out."""
        deadline = time.monotonic() + self.timeout
        to_go = self.n_trials
        while to_go > 0 and time.monotonic() < deadline:
            self.n_trials = min(self.n_jobs, to_go)
            self._plugin_sweep(arguments)
            to_go -= self.n_trials
        if to_go > 0:
            log.info("Time limit of %ss reached: %d trial(s) of this sweep not started", self.timeout, to_go)

    def _fail_stale_trials_of_existing_study(self) -> None:
        """So that this worker's first ``ask`` already picks up a trial a killed worker left."""
        if self.study_name is None:
            return  # the plugin creates a new study under a generated name
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:  # a new study: nothing in it can be stale
            return
        optuna.storages.fail_stale_trials(study)

    def _configure_trials(self, trials: list[Trial], *args: Any) -> Sequence[Sequence[str]]:
        """Called with each freshly asked batch, just before the launcher runs it."""
        self._stop_heartbeat()  # the previous batch has been told
        if trials and isinstance(self.storage, optuna.storages.RDBStorage):
            self._heartbeat = Heartbeat(self.storage, [t._trial_id for t in trials], self.heartbeat_interval)
            optuna.storages.fail_stale_trials(trials[0].study)
        overrides = super()._configure_trials(trials, *args)
        worker = worker_name()
        for trial in trials:
            trial.set_user_attr(WORKER_ATTR, worker)
        objective = OmegaConf.select(self.config, "objective") if getattr(self, "config", None) else None
        if trials and objective and trials[0].study.metric_names is None:
            trials[0].study.set_metric_names([str(objective)])  # the dashboard shows val/auc, not "Objective 0"
        pruning = bool(trials) and self.prunes and isinstance(self.storage, optuna.storages.RDBStorage)
        if pruning and trials[0].study is not self._study_telling_pruned:  # the plugin's study, once
            self._study_telling_pruned = trials[0].study
            tell_marked_trials_pruned(self._study_telling_pruned)
        return [
            (
                *job,
                f"hydra.sweep.subdir={trial.number}",
                *(trial_env_overrides(trial.study.study_name, trial.number) if pruning else ()),
            )
            for job, trial in zip(overrides, trials)
        ]

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None


class PrepareStorage(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        path = sqlite_path(OmegaConf.select(config, "hydra.sweeper.storage"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


# Hydra finds plugins in the `hydra_plugins` namespace package or through entry points; this one
# lives in the project, so importing this module (the PrepareStorage callback does) registers it.
Plugins.instance().register(DistributedOptunaSweeper)
