"""Resuming stopped runs: a run stopped mid-epoch, at an epoch's end, by a signal or by kill -9
resumes to the uninterrupted run's val/test metrics bit for bit; a finished run is not run again;
a multirun run again finishes each job exactly once."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from experiments.run import config as run_config
from experiments.run import train as run_train
from experiments.run.errors import ConfigError
from experiments.run.resume import RESUME_STATE, finished_run
from tests.helpers import REPO, run_app, tiny_run

# every_steps=2: mid-epoch states to resume from within the 12 steps of an epoch
SMALL = tiny_run(7500, 3, "optim.lr=0.01", "trainer.enable_progress_bar=false", "checkpoint.every_steps=2")
WITH_MLP = ("deepfm", "xdeepfm")
NARROW = {"xdeepfm": ["model.cin_layer_sizes=[16,16]"]}  # CIN's maps dominate a step at the config's sizes


def overrides(model: str, optim: str, cache: Path, *extra: str) -> list[str]:
    narrow = (["model.mlp.hidden_units=[16,16]"] if model in WITH_MLP else []) + NARROW.get(model, [])
    return [f"model={model}", f"optim={optim}", f"data.cache_dir={cache}", *SMALL, *narrow, *extra]


def scores(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}


class Killed(Exception):
    pass


class KillAt(pl.Callback):
    """Stops training as a kill would, after the state of the step or epoch before was saved."""

    def __init__(self, step: int | None = None, epoch: int | None = None):
        self.step, self.epoch = step, epoch

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step:
            raise Killed

    def on_train_epoch_start(self, trainer, *args):
        if trainer.current_epoch == self.epoch:
            raise Killed


def train_killed_then_resumed(cfg, out_dir: Path, monkeypatch, **kill) -> dict:
    with monkeypatch.context() as patch:
        patch.setattr(run_train, "sweep_trial_pruning", lambda monitor: [KillAt(**kill)])
        with pytest.raises(Killed):
            run_train.train(cfg, out_dir)
    assert (out_dir / RESUME_STATE).is_file() and not (out_dir / "metrics.json").exists()
    metrics = run_train.train(cfg, out_dir)
    assert not (out_dir / RESUME_STATE).exists()  # a finished run keeps only its best checkpoint
    return metrics


def check_resumed_runs_equal_the_uninterrupted_one(model, optim, cache, tmp_path, monkeypatch):
    cfg = run_config.compose_config(overrides(model, optim, cache))
    reference = run_train.train(cfg, tmp_path / "uninterrupted")
    history = (tmp_path / "uninterrupted" / "history.csv").read_text()
    # step 17: within the second epoch (12 steps each) after the state of step 16; epoch 2: at its start
    for name, kill in (("mid_epoch", dict(step=17)), ("epoch_end", dict(epoch=2))):
        resumed = train_killed_then_resumed(cfg, tmp_path / name, monkeypatch, **kill)
        assert scores(resumed) == scores(reference), name
        assert (resumed["epochs"], resumed["best_epoch"]) == (reference["epochs"], reference["best_epoch"])
        assert (tmp_path / name / "history.csv").read_text() == history


@pytest.mark.parametrize("model, optim", [("deepfm", "lazy_adam"), ("lr", "ftrl")])
def test_a_resumed_run_ends_with_the_uninterrupted_metrics_bit_for_bit(model, optim, cache, tmp_path, monkeypatch):
    check_resumed_runs_equal_the_uninterrupted_one(model, optim, cache, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("optim", ["adam", "lazy_adam", "ftrl"])
@pytest.mark.parametrize("model", ["lr", "fm", "ffm", "deepfm", "xdeepfm"])
def test_every_model_and_optimiser_resumes_bit_for_bit(model, optim, cache, tmp_path, monkeypatch):
    check_resumed_runs_equal_the_uninterrupted_one(model, optim, cache, tmp_path, monkeypatch)


def test_a_finished_run_is_found_and_one_of_another_config_is_an_error(cache, tmp_path):
    cfg = run_config.compose_config(overrides("lr", "adam", cache))
    metrics = run_train.train(cfg, tmp_path / "run")
    assert finished_run(tmp_path / "run", cfg) == json.loads(json.dumps(metrics))
    other = run_config.compose_config(overrides("lr", "adam", cache, "optim.lr=0.02"))
    with pytest.raises(ConfigError, match="finished run of another config"):
        finished_run(tmp_path / "run", other)
    assert finished_run(tmp_path / "elsewhere", cfg) is None


class SendAt(pl.Callback):
    """Sends this process the given signal before the given training steps."""

    def __init__(self, signals: dict[int, int]):
        self.signals = signals

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step in self.signals:
            os.kill(os.getpid(), self.signals[trainer.global_step])


class Requeued(Exception):
    pass


def test_a_job_managers_signals_stay_its_own_and_its_requeue_comes_after_the_state_is_saved(
    cache, tmp_path, monkeypatch
):
    """As under submitit: its handler ignores SIGTERM and requeues the job on SIGUSR2 (here: raises)."""
    cfg = run_config.compose_config(overrides("deepfm", "lazy_adam", cache))
    reference = run_train.train(cfg, tmp_path / "uninterrupted")
    calls = []

    def bypass(signum, frame):
        calls.append(signum)

    def requeue(signum, frame):
        calls.append((signum, torch.load(tmp_path / "run" / RESUME_STATE, weights_only=False)["global_step"]))
        raise Requeued

    previous = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, bypass), (signal.SIGUSR2, requeue))}
    try:
        with monkeypatch.context() as patch:
            sends = SendAt({5: signal.SIGTERM, 17: signal.SIGUSR2})
            patch.setattr(run_train, "sweep_trial_pruning", lambda monitor: [sends])
            with pytest.raises(Requeued):
                run_train.train(cfg, tmp_path / "run")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert calls == [signal.SIGTERM, (signal.SIGUSR2, 18)]  # saved after the step it was signalled in
    assert scores(run_train.train(cfg, tmp_path / "run")) == scores(reference)


def test_resuming_with_another_config_is_refused(cache, tmp_path, monkeypatch):
    cfg = run_config.compose_config(overrides("lr", "adam", cache))
    with monkeypatch.context() as patch:
        patch.setattr(run_train, "sweep_trial_pruning", lambda monitor: [KillAt(step=5)])
        with pytest.raises(Killed):
            run_train.train(cfg, tmp_path)
    other = run_config.compose_config(overrides("lr", "adam", cache, "optim.lr=0.02"))
    with pytest.raises(ValueError, match="holds a run of another config: resume=false"):
        run_train.train(other, tmp_path)
    other.resume = False
    run_train.train(other, tmp_path)


def start_run(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, start: str) -> None:
    for line in process.stdout:
        if line.startswith(start):
            return
    pytest.fail(f"the run ended before printing {start!r}: {process.stderr.read()[-2000:]}")


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_state_says_how_to_resume_and_the_resumed_run_ends_the_same(signum, cache, tmp_path):
    args = overrides("fm", "lazy_adam", cache, "checkpoint.every_steps=null", "data.source.rows=60000")
    args = [a for a in args if a != "trainer.enable_progress_bar=false"]  # its epoch lines tell when to signal
    args.append(f"hydra.run.dir={tmp_path / 'run'}")
    reference = run_train.train(run_config.compose_config(args[:-1]), tmp_path / "uninterrupted")
    process = start_run(args, tmp_path)
    wait_for_line(process, "epoch 1/")
    time.sleep(0.7)  # within an epoch or at its end: either is a place to stop at
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, stderr[-2000:]
    where = r"(in epoch [23] after batch \d+|after epoch [12])"  # how far it got depends on the machine's load
    assert re.search(rf"stopped by {signal.Signals(signum).name} {where}; its state is saved", stderr), stderr
    assert f"resume with: python run.py {' '.join(args)}" in stderr
    resumed = run_app(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert scores(json.loads((tmp_path / "run" / "metrics.json").read_text())) == scores(reference)
    again = run_app(*args, cwd=tmp_path)
    assert again.returncode == 0 and "holds a finished run, not run again" in again.stdout


@pytest.mark.integration
def test_a_killed_multirun_run_again_finishes_each_job_once(cache, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model=lr,fm,ffm", f"hydra.sweep.dir={sweep}", f"data.cache_dir={cache}", *SMALL]
    process = start_run(args, tmp_path)
    while not (sweep / "1" / RESUME_STATE).exists() and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    first = (sweep / "0" / "metrics.json").read_text()
    result = run_app(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("holds a finished run, not run again") == 1
    assert (sweep / "0" / "metrics.json").read_text() == first
    models = [json.loads((sweep / str(job) / "metrics.json").read_text())["model"] for job in range(3)]
    assert models == ["lr", "fm", "ffm"]
    assert "| FFM" in (sweep / "results" / "synthetic" / "table.md").read_text()


def chaos(kills: int, seed: int, cache: Path, tmp_path: Path) -> None:
    """kill -9 a run at ``kills`` random moments, resuming after each; then let it finish. Its
    cache is its own, so that the first kills may fall while it encodes the data."""
    reference = run_train.train(run_config.compose_config(overrides("deepfm", "lazy_adam", cache)), tmp_path / "ref")
    args = overrides("deepfm", "lazy_adam", tmp_path / "cache", "checkpoint.every_steps=1")
    args.append(f"hydra.run.dir={tmp_path / 'run'}")
    moments = random.Random(seed)
    for _ in range(kills):
        process = start_run(args, tmp_path)
        time.sleep(moments.uniform(1.5, 10.0))
        process.kill()
        process.communicate()
        state = tmp_path / "run" / RESUME_STATE
        if state.exists():
            torch.load(state, weights_only=False)  # readable: the kill left the previous state whole
    finished = run_app(*args, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert scores(json.loads((tmp_path / "run" / "metrics.json").read_text())) == scores(reference)
    torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)


@pytest.mark.integration
def test_chaos_kill_9_at_random_moments_then_the_same_metrics(cache, tmp_path):
    chaos(2, 0, cache, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif("CHAOS_KILLS" not in os.environ, reason="the long chaos run: set CHAOS_KILLS, e.g. to 20")
def test_chaos_many_kills(cache, tmp_path):
    chaos(int(os.environ["CHAOS_KILLS"]), 1, cache, tmp_path)
