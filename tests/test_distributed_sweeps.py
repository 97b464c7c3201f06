"""Distributed sweeps: several workers on one Optuna study in a real PostgreSQL server, a worker
killed mid-trial, the parallel (joblib) and cluster (SLURM) launchers.

The PostgreSQL tests start a throwaway server from the distribution's packages (tests/postgres.py)
and skip, saying so, only where those are not installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from optuna.trial import FrozenTrial, TrialState

from experiments.sweep.sweeper import WORKER_ATTR, Heartbeat, open_storage, resumable_tpe
from tests.helpers import CONF, REPO, tiny_run
from tests.postgres import server_binaries, temporary_server

pytestmark = pytest.mark.integration

# Trials of a fraction of a second: a few thousand synthetic rows, one epoch, narrow layers.
TINY = tiny_run(3000, 1, "threads=1", "trainer.enable_progress_bar=false")
SEARCH = ["hparams_search=deepfm", "mlp_width=choice(8,16)", "mlp_depth=range(1,2)"]
GRACE_S = 5  # a killed worker's trial is failed this long after its last heartbeat
HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", f"hydra.sweeper.grace_period={GRACE_S}"]
NO_REPORT = "~hydra.callbacks.report"
STUDY = "deepfm-distributed"
SEARCH_SPACE = {
    "x": optuna.distributions.FloatDistribution(0.0, 1.0),
    "k": optuna.distributions.CategoricalDistribution([1, 2, 3, 4]),
}


@pytest.fixture(scope="module")
def postgres():
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; on Debian or "
            "Ubuntu: apt-get install postgresql (.ci/run does when it can)"
        )
    with temporary_server(binaries) as server:
        yield server


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def app_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "run.py"), *args]


def worker_name(process: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def trial_overrides(trial: FrozenTrial) -> set[str]:
    """The command-line overrides the sweeper gave the trial's run."""
    return {f"{name}={value}" for name, value in trial.params.items()}


# ---------------------------------------------------------------------------------------------
# Building blocks, in one process


def test_workers_racing_to_open_a_fresh_database_all_get_one_study(postgres):
    url = postgres.create_database("race")
    barrier = threading.Barrier(6)
    studies, errors = [], []

    def worker() -> None:
        try:
            barrier.wait()
            storage = open_storage(url)
            studies.append(optuna.create_study(study_name="s", storage=storage, load_if_exists=True))
        except Exception as error:  # collected: an exception in a thread would not fail the test
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({study._study_id for study in studies}) == 1
    assert optuna.get_all_study_names(url) == ["s"]


def test_trial_seeded_tpe_gives_concurrent_workers_distinct_reproducible_draws():
    def ask(study: optuna.Study) -> dict:
        trial = study.ask(SEARCH_SPACE)
        study.tell(trial, trial.params["x"])
        return trial.params

    # two workers with the same sweep config, asking in turn from one study
    shared = optuna.storages.InMemoryStorage()
    first = optuna.create_study(study_name="s", storage=shared, sampler=resumable_tpe(7))
    second = optuna.load_study(study_name="s", storage=shared, sampler=resumable_tpe(7))
    interleaved = [ask(worker) for _ in range(3) for worker in (first, second)]
    assert len({tuple(sorted(p.items())) for p in interleaved}) == 6

    # one worker alone draws the same trial k: draws follow the trial number, not the process
    alone = optuna.create_study(sampler=resumable_tpe(7))
    assert [ask(alone) for _ in range(6)] == interleaved
    assert ask(optuna.create_study(sampler=resumable_tpe(8))) != interleaved[0]  # another seed, other draws


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_beating_trial_stays_running_and_a_silent_one_is_failed_and_queued_again(tmp_path):
    storage = open_storage(
        f"sqlite:///{tmp_path / 'study.db'}",
        heartbeat_interval=1,
        grace_period=2,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    study = optuna.create_study(storage=storage)
    live, silent = study.ask(SEARCH_SPACE), study.ask(SEARCH_SPACE)
    Heartbeat(storage, [silent._trial_id], interval=1).stop()  # one beat, then its worker is gone
    beating = Heartbeat(storage, [live._trial_id], interval=1)
    try:
        time.sleep(3.5)  # past the grace period of the silent trial's only beat
        optuna.storages.fail_stale_trials(study)
    finally:
        beating.stop()

    states = {t.number: t.state for t in study.trials}
    assert states[live.number] == TrialState.RUNNING
    assert states[silent.number] == TrialState.FAIL
    [queued] = study.get_trials(states=(TrialState.WAITING,))
    assert queued.params == silent.params
    assert queued.system_attrs["failed_trial"] == silent.number
    assert study.ask().params == silent.params  # the next ask runs the copy


# ---------------------------------------------------------------------------------------------
# Sweep workers as separate processes on one PostgreSQL study


@dataclass
class KilledWorkerSweep:
    study: optuna.Study
    sweep_dir: Path
    n_trials: dict[str, int]  # worker -> its n_trials, for the workers that were not killed
    victim: str  # the killed worker
    finished_by_victim: list[FrozenTrial]  # what it had finished when it was killed
    abandoned: FrozenTrial  # what it was running when it was killed


def freeze_mid_trial(process: subprocess.Popen, storage, timeout_s: float = 240) -> tuple[list, FrozenTrial]:
    """Stops ``process`` (SIGSTOP) at a moment when it has finished a trial and runs another; returns
    those trials. A stopped process cannot move on, so what the database shows is what it was doing."""
    name = worker_name(process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker {name} ended (rc {process.returncode}) before it was caught mid-trial")
        os.killpg(process.pid, signal.SIGSTOP)
        try:
            trials = optuna.load_study(study_name=STUDY, storage=storage).trials
        except KeyError:  # no worker has created the study yet
            trials = []
        own = [t for t in trials if t.user_attrs.get(WORKER_ATTR) == name]
        finished = [t for t in own if t.state == TrialState.COMPLETE]
        running = [t for t in own if t.state == TrialState.RUNNING]
        if finished and running:
            return finished, running[0]
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.1)
    pytest.fail(f"worker {name} was not caught mid-trial within {timeout_s} s")


@pytest.fixture(scope="module")
def killed_worker_sweep(postgres, cache, tmp_path_factory) -> KilledWorkerSweep:
    """Three workers start together on one study and share one sweep folder, as workers started
    in the same second do; one (the victim) is killed mid-trial, the others finish; once the
    victim's trial is stale, a fourth worker resumes the study."""
    url = postgres.create_database("sweep")
    storage = open_storage(url)
    workers = SweepWorkers(tmp_path_factory.mktemp("distributed"), url, cache)
    n_trials = {}
    try:
        victim = workers.start(4, NO_REPORT)
        # one survivor runs its two trials as one batch in two joblib processes
        survivors = [
            workers.start(2, NO_REPORT),
            workers.start(2, NO_REPORT, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"),
        ]
        finished_by_victim, abandoned = freeze_mid_trial(victim, storage)
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait()
        for survivor in survivors:
            workers.finish(survivor)
            n_trials[worker_name(survivor)] = 2
        time.sleep(max(0.0, killed_at + GRACE_S + 1 - time.monotonic()))
        resumed = workers.start(1)  # with the report, which also draws the study from PostgreSQL
        workers.finish(resumed)
        n_trials[worker_name(resumed)] = 1
    finally:
        workers.kill_all()
    return KilledWorkerSweep(
        study=optuna.load_study(study_name=STUDY, storage=storage),
        sweep_dir=workers.sweep_dir,
        n_trials=n_trials,
        victim=worker_name(victim),
        finished_by_victim=finished_by_victim,
        abandoned=abandoned,
    )


class SweepWorkers:
    """Sweep workers of the shared study, each ``run.py -m`` in its own process group, logging to
    its own file under ``root``; they share one sweep folder."""

    def __init__(self, root: Path, url: str, cache: Path):
        self.root, self.url, self.cache = root, url, cache
        self.sweep_dir = root / "sweep"
        self.logs: dict[subprocess.Popen, Path] = {}

    def start(self, n_trials: int, *extra: str) -> subprocess.Popen:
        log = self.root / f"worker{len(self.logs)}.log"
        command = app_command(
            "-m",
            *SEARCH,
            f"hydra.sweeper.storage={self.url}",
            f"hydra.sweeper.study_name={STUDY}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweep.dir={self.sweep_dir}",
            f"data.cache_dir={self.cache}",
            *TINY,
            *HEARTBEAT,
            *extra,
        )
        with log.open("w") as out:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command, cwd=self.root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )  # its own group: signals reach it alone
        self.logs[process] = log
        return process

    def finish(self, process: subprocess.Popen) -> None:
        returncode = process.wait(timeout=300)
        assert returncode == 0, self.logs[process].read_text()[-4000:]

    def kill_all(self) -> None:
        for process in self.logs:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_workers_share_the_study_and_no_trial_is_run_twice(killed_worker_sweep):
    sweep = killed_worker_sweep
    trials = sweep.study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    by_worker = {}
    for trial in complete:
        by_worker.setdefault(trial.user_attrs[WORKER_ATTR], []).append(trial.number)
    # every surviving worker ran exactly its n_trials; the victim kept what it had finished
    assert {w: len(n) for w, n in by_worker.items()} == {**sweep.n_trials, sweep.victim: len(sweep.finished_by_victim)}
    assert len(trials) == len(complete) + 1  # the abandoned trial, failed
    # distinct parameters everywhere, except the abandoned trial and its rerun
    distinct = {tuple(sorted(t.params.items())) for t in trials}
    assert len(distinct) == len(trials) - 1


def test_finished_trials_survive_a_worker_killed_mid_trial(killed_worker_sweep):
    now = {t.number: t for t in killed_worker_sweep.study.trials}
    for before in killed_worker_sweep.finished_by_victim:
        after = now[before.number]
        assert (after.state, after.value, after.params) == (TrialState.COMPLETE, before.value, before.params)


def test_the_killed_workers_running_trial_is_failed_and_rerun_with_its_parameters(killed_worker_sweep):
    sweep = killed_worker_sweep
    trials = sweep.study.trials
    assert trials[sweep.abandoned.number].state == TrialState.FAIL
    [rerun] = [t for t in trials if t.system_attrs.get("failed_trial") == sweep.abandoned.number]
    assert rerun.state == TrialState.COMPLETE and rerun.params == sweep.abandoned.params
    assert rerun.user_attrs[WORKER_ATTR] != sweep.victim
    assert not sweep.study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_shared_sweep_folder_holds_one_run_per_trial_named_by_trial_number(killed_worker_sweep):
    sweep = killed_worker_sweep
    for trial in sweep.study.get_trials(states=(TrialState.COMPLETE,)):
        run_dir = sweep.sweep_dir / str(trial.number)
        overrides = set(yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()))
        assert trial_overrides(trial) <= overrides, run_dir
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["val/auc"] == pytest.approx(trial.value), run_dir
    # besides those, at most the abandoned trial's folder, without metrics
    abandoned = str(sweep.abandoned.number)
    assert not (sweep.sweep_dir / abandoned / "metrics.json").exists()
    run_dirs = {p.name for p in sweep.sweep_dir.iterdir() if p.name.isdigit()} - {abandoned}
    assert run_dirs == {str(t.number) for t in sweep.study.get_trials(states=(TrialState.COMPLETE,))}


def test_the_report_draws_the_study_from_postgresql(killed_worker_sweep):
    drawn = killed_worker_sweep.sweep_dir / "results" / "studies" / STUDY
    assert (drawn / "optimization_history.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Launchers


def test_joblib_launcher_runs_a_multirun_in_two_processes(tmp_path, cache):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        app_command(
            "-m",
            "model=lr,fm",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
            f"data.cache_dir={cache}",
            *TINY,
            NO_REPORT,
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    models = [json.loads((sweep / str(i) / "metrics.json").read_text())["model"] for i in range(2)]
    assert models == ["lr", "fm"]


def test_slurm_launcher_config_composes_into_a_submitit_launcher():
    with initialize_config_dir(config_dir=str(CONF)):
        cfg = compose(
            config_name="config",
            return_hydra_config=True,
            overrides=[
                "hparams_search=deepfm",
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=2",
            ],
        )
    launcher = instantiate(cfg.hydra.launcher, _execution_whitelist_=["hydra_plugins.hydra_submitit_launcher.*"])
    assert type(launcher).__name__ == "SlurmLauncher"
    assert launcher.params["partition"] == "gpu" and launcher.params["gpus_per_node"] == 2
    for resource in ("cpus_per_task", "mem_gb", "timeout_min"):  # set by slurm.yaml, not left to the cluster
        assert isinstance(launcher.params[resource], int) and launcher.params[resource] > 0, resource
    assert str(launcher.params["submitit_folder"]).endswith(".submitit/%j")


@pytest.mark.parametrize("experiment", ["paper_table", "zoo_table", "paper_criteo"])
def test_table_experiments_launch_one_job_per_cpu_unless_told_otherwise(experiment):
    def launcher(*overrides):
        with initialize_config_dir(config_dir=str(CONF)):
            return compose(
                config_name="config", return_hydra_config=True, overrides=[f"experiment={experiment}", *overrides]
            ).hydra.launcher

    parallel = launcher()
    assert parallel._target_.endswith("JoblibLauncher") and parallel.n_jobs == -1
    assert launcher("hydra.launcher.n_jobs=2").n_jobs == 2
    basic = launcher("hydra/launcher=basic")  # the parallel launcher's settings must not linger
    assert basic._target_.endswith("BasicLauncher") and "n_jobs" not in basic
