"""The Hydra app: configs compose, a run writes its files, multiruns and Optuna sweeps work,
and the mistakes a user makes get clear errors."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from datamodules.schema import Batch, Schema
from experiments.run import config as run_config
from experiments.run.train import train
from tests.helpers import CONF, run_app, tiny_run

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
WITH_MLP = {m for m in MODELS if "- mlp:" in (CONF / "model" / f"{m}.yaml").read_text()}

# Small enough to train in seconds, large enough that a model learns something.
TINY = tiny_run(20000, 3, "optim.lr=0.01", "trainer.enable_progress_bar=false")


def tiny_overrides(model: str, cache: Path) -> list[str]:
    narrow = ["model.mlp.hidden_units=[16,16]"] if model in WITH_MLP else []
    return [f"model={model}", f"data.cache_dir={cache}", *TINY, *narrow]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_composes_and_instantiates(model):
    cfg = run_config.compose_config([f"model={model}"])
    schema = Schema.build([("a", "categorical", 5), ("b", "categorical", 7), ("c", "numeric", 4)], ["d"])
    module = instantiate(
        cfg.model, schema=schema, optim=cfg.optim, _convert_="all", _execution_whitelist_=run_config.TRUSTED_TARGETS
    )
    batch = Batch(
        x=torch.tensor([[0, 5, 12], [4, 11, 15]]), y=torch.tensor([0.0, 1.0]), x_dense=torch.tensor([[0.5], [-1.0]])
    )
    logits = module(batch)
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_single_run_writes_config_metrics_and_history(tmp_path, cache):
    cfg = run_config.compose_config(tiny_overrides("deepfm", cache))
    metrics = train(cfg, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    for key in (
        "val/auc",
        "val/logloss",
        "test/auc",
        "test/logloss",
        "oracle/test/auc",
        "train_samples_per_s",
        "train_time_s",
    ):
        assert math.isfinite(written[key]), key
    assert 0.55 < written["test/auc"] <= written["oracle/test/auc"] + 0.02
    assert written["epochs"] == 3 and written["best_epoch"] in (0, 1, 2)
    assert written["num_params"] > 0 and written["dataset"] == "synthetic"
    # threads: auto, the default, says which thread counts the run used
    assert 1 <= written["threads_min"] <= written["threads_max"] <= len(os.sched_getaffinity(0))
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train/loss,val/auc") and len(history) == 4


def test_same_seed_same_metrics(tmp_path, cache):
    cfg = run_config.compose_config(tiny_overrides("fm", cache))
    first = train(cfg, tmp_path / "a")
    second = train(cfg, tmp_path / "b")
    for key in ("val/auc", "val/logloss", "test/auc", "test/logloss"):
        assert first[key] == second[key], key


@pytest.mark.integration
def test_multirun_of_three_models_writes_three_run_folders(tmp_path, cache):
    sweep = tmp_path / "sweep"
    result = run_app(
        "-m", "model=lr,fm,deepfm", f"hydra.sweep.dir={sweep}", f"data.cache_dir={cache}", *TINY, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert [p.name for p in runs] == ["0", "1", "2"]
    models = [json.loads((p / "metrics.json").read_text())["model"] for p in runs]
    assert models == ["lr", "fm", "deepfm"]
    assert all((p / ".hydra" / "config.yaml").exists() for p in runs)
    # the report callback ran at the end of the multirun
    assert (sweep / "results" / "synthetic" / "table.md").exists()


@pytest.mark.integration
def test_optuna_sweep_persists_and_resumes(tmp_path, cache):
    storage = f"sqlite:///{tmp_path / 'studies' / 'optuna.db'}"
    args = [
        "-m",
        "hparams_search=deepfm",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=deepfm-tiny",
        "mlp_width=choice(8,16)",
        "mlp_depth=range(1,2)",
        f"data.cache_dir={cache}",
        *TINY,
    ]
    first = run_app(*args, f"hydra.sweep.dir={tmp_path / 's1'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="deepfm-tiny", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert all(0.5 < t.value < 1 for t in study.trials)
    assert study.metric_names == ["val/auc"]  # the dashboard's name for the objective
    printed = first.stdout + first.stderr
    assert f"Storage: {storage}" in printed and "RDBStorage object" not in printed

    second = run_app(*args, f"hydra.sweep.dir={tmp_path / 's2'}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="deepfm-tiny", storage=storage)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 6
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 6
    assert_dashboard_lists(storage, "deepfm-tiny", trials=6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_dashboard_lists(storage: str, study_name: str, trials: int) -> None:
    """``optuna-dashboard <storage>``, as README shows it, serves the study with its trials."""
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")  # the installed console script
    server = subprocess.Popen(
        [str(dashboard), storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/studies"
        for _ in range(100):  # up to ~20 s for the server to start
            try:
                studies = json.load(urllib.request.urlopen(url, timeout=2))["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("optuna-dashboard did not answer")
        [summary] = [s for s in studies if s["study_name"] == study_name]
        study = json.load(urllib.request.urlopen(f"{url}/{summary['study_id']}", timeout=5))
        assert [t["state"] for t in study["trials"]] == ["Complete"] * trials
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_unlabelled_test_file_leaves_test_metrics_out(tmp_path):
    from tests.test_data_formats import write_criteo

    train_file = write_criteo(tmp_path / "train.tsv", 600)
    test = write_criteo(tmp_path / "test.tsv", 50, seed=1, labelled=False)
    cfg = run_config.compose_config(
        [
            "model=fm",
            "data=criteo",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"data.source.files={{train: {train_file}, test: {test}}}",
            "data.split.val_from_train=0.2",
            "data.encoding.min_count=1",
            "data.batch_size=128",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=none",
        ]
    )
    metrics = train(cfg, tmp_path / "run")
    assert not any(key.startswith("test/") for key in metrics)
    assert math.isfinite(metrics["val/auc"]) and math.isfinite(metrics["val/logloss"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == pytest.approx(metrics)


def test_unknown_model_lists_the_choices():
    with pytest.raises(ConfigCompositionException, match="deepfm"):
        run_config.compose_config(["model=deep_fm"])


def test_unknown_objective_is_a_clear_error(tmp_path, cache):
    cfg = run_config.compose_config(tiny_overrides("lr", cache) + ["objective=val/acc"])
    with pytest.raises(ValueError, match="val/acc.*val/auc"):
        train(cfg, tmp_path / "run")


def test_criteo_without_a_path_says_what_to_supply(tmp_path):
    cfg = run_config.compose_config(["data=criteo", f"data.cache_dir={tmp_path}"])
    where_and_what = r"(?s)no input file.*Display Advertising Challenge.*tab-separated.*data.source.path"
    with pytest.raises(Exception, match=where_and_what):
        train(cfg, tmp_path / "run")


def test_a_missing_data_file_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "train.txt"
    cfg = run_config.compose_config(["data=criteo", f"data.source.path={missing}", f"data.cache_dir={tmp_path}"])
    with pytest.raises(Exception, match=f"{missing}.*does not exist"):
        train(cfg, tmp_path / "run")


def test_peak_memory_is_the_runs_own_not_an_earlier_runs_in_the_same_process():
    from experiments.run.memory import PeakMemory

    memory = PeakMemory()
    memory.start()
    block = np.ones(300_000_000 // 8)  # 300 MB, touched
    first = memory.mib()
    del block
    memory.start()  # the next run of a multirun
    if memory.scope != "run":
        pytest.skip("this system cannot reset the peak resident memory (no /proc/self/clear_refs)")
    assert first > memory.mib() + 250
