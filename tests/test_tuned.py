"""The tuned comparison (experiments.sweep.tuned) end to end on tiny data, resumed after an interruption
between its stages, and the pruning of trials (experiments.run.trial) by their runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.trial import TrialState

from experiments.run.config import register_resolvers
from experiments.run.trial import PRUNED_ATTR, TrialPruning
from experiments.sweep import sweeper as sweeper_module
from experiments.sweep import tuned
from experiments.sweep.pruning import override_value, tell_marked_trials_pruned
from experiments.sweep.sweeper import DistributedOptunaSweeper
from tests.helpers import REPO, tiny_run

MODELS = ["lr", "deepfm"]  # the linear and the deep template: the deep one's final runs need its keys
SEEDS = [0, 1]
TINY = tiny_run(3000, 2, "threads=1", "trainer.enable_progress_bar=false")


def arguments(root: Path, *more: str) -> list[str]:
    overrides = ",".join([*TINY, f"data.cache_dir={root / 'cache'}"])
    return [
        f"models=[{','.join(MODELS)}]",
        "trials=2",
        f"seeds=[{','.join(map(str, SEEDS))}]",
        f"overrides=[{overrides}]",
        f"out={root / 'runs'}",
        f"results={root / 'results'}",
        "note=Tiny data: three thousand rows, two epochs.",
        *more,
    ]


def trial_records(invocation: tuned.Tuned) -> dict[str, list[tuple]]:
    """Everything that would change if a trial were run again."""
    return {
        model: [(t.number, t.state, t.params, t.datetime_start, t.value) for t in invocation.trials(model)]
        for model in MODELS
    }


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    """Stage 1 alone (a protocol interrupted between stages 1 and 2), then the full command twice."""
    root = tmp_path_factory.mktemp("tuned")
    searched = tuned.run_protocol(tuned.load_config(arguments(root, "stages=[search]")))
    after_search = trial_records(searched)
    final_after_search = (root / "runs" / "final").exists()
    resumed = tuned.run_protocol(tuned.load_config(arguments(root)))
    after_resume = trial_records(resumed)
    again = tuned.run_protocol(tuned.load_config(arguments(root)))
    return SimpleNamespace(
        root=root,
        searched=searched,
        resumed=resumed,
        again=again,
        after_search=after_search,
        after_resume=after_resume,
        final_after_search=final_after_search,
    )


def best_trials(invocation: tuned.Tuned) -> dict[str, optuna.trial.FrozenTrial]:
    return {model: tuned.best_trial(invocation, model) for model in MODELS}


@pytest.mark.slow
def test_stage_one_runs_one_study_per_model_with_the_budget(protocol):
    assert [words[1:3] for words in protocol.searched.launched] == [
        ["model=lr", "hparams_search=linear"],
        ["model=deepfm", "hparams_search=deep"],
    ]
    assert all("hydra.sweeper.n_trials=2" in words for words in protocol.searched.launched)
    for model, trials in protocol.after_search.items():
        assert [state for _, state, *_ in trials] == [TrialState.COMPLETE] * 2, model
        assert all(0.3 < value < 1 for *_, value in trials)
    assert set(protocol.after_search["deepfm"][0][2]) == {
        "optim.lr",
        "optim.embedding_l2",
        "model.embedding_dim",
        "mlp_width",
        "mlp_depth",
        "model.mlp.dropout",
        "optim.weight_l2",
    }
    assert set(protocol.after_search["lr"][0][2]) == {"optim.lr", "optim.embedding_l2"}
    assert not protocol.final_after_search


@pytest.mark.slow
def test_resumed_protocol_repeats_no_trial_and_runs_every_seed_of_the_best_trials(protocol):
    assert protocol.after_resume == protocol.after_search
    search = protocol.root / "runs" / "search"
    assert sorted(p.relative_to(search).as_posix() for p in search.glob("*/*/metrics.json")) == [
        f"{model}/{number}/metrics.json" for model in ("deepfm", "lr") for number in (0, 1)
    ]
    assert [words[1] for words in protocol.resumed.launched] == ["model=lr", "model=deepfm"]
    assert all("seed=0,1" in words for words in protocol.resumed.launched)
    for model, best in best_trials(protocol.resumed).items():
        folder = protocol.root / "runs" / "final" / model / f"trial_{best.number}"
        assert sorted(p.name for p in folder.glob("seed_*") if (p / "metrics.json").is_file()) == ["seed_0", "seed_1"]


@pytest.mark.slow
def test_final_runs_use_exactly_the_best_trials_parameters(protocol):
    for model, best in best_trials(protocol.resumed).items():
        for seed in SEEDS:
            run = protocol.root / "runs" / "final" / model / f"trial_{best.number}" / f"seed_{seed}"
            config = OmegaConf.load(run / ".hydra" / "config.yaml")
            assert {name: OmegaConf.select(config, name) for name in best.params} == best.params
            assert config.seed == seed and config.data.source.rows == 3000
            if model == "deepfm":  # the MLP as the trial had it, rebuilt from width and depth
                register_resolvers()
                assert (
                    OmegaConf.to_container(config.model, resolve=True)["mlp"]["hidden_units"]
                    == [best.params["mlp_width"]] * best.params["mlp_depth"]
                )


@pytest.mark.slow
def test_report_tables_the_final_runs_and_the_best_hyperparameters(protocol):
    results = protocol.root / "results" / "synthetic"
    table = pd.read_csv(results / "table.csv")
    assert table["model"].tolist() == ["lr", "deepfm", "oracle", "ceiling", "ceiling"]  # synthetic: two ceilings
    assert table["seeds"].tolist()[:2] == [2, 2] and table["seed_list"].tolist()[:2] == ["0 1", "0 1"]

    best_params = pd.read_csv(results / "best_params.csv")
    assert best_params["model"].tolist() == MODELS
    assert best_params["template"].tolist() == ["linear", "deep"]
    assert best_params[["trials_complete", "trials_pruned", "trials_failed"]].values.tolist() == [[2, 0, 0]] * 2
    for row, (model, best) in zip(best_params.to_dict("records"), best_trials(protocol.resumed).items()):
        assert row["best_trial"] == best.number and row["best_value"] == pytest.approx(best.value, rel=1e-7)
        assert {name: row[name] for name in best.params} == pytest.approx(best.params, rel=1e-7), model
    assert best_params.loc[0, ["model.embedding_dim", "mlp_width"]].isna().all()  # not in LR's template

    note = json.loads((results / "provenance.json").read_text())["note"]
    assert note.startswith("Tuned comparison: each model's hyperparameters searched by Optuna (2 trials per model")
    assert note.endswith("with seeds 0 1. Tiny data: three thousand rows, two epochs.")

    markdown = (results / "best_params.md").read_text()
    assert "| LR | linear |" in markdown and "| DeepFM | deep |" in markdown
    readme = (protocol.root / "results" / "README.md").read_text()
    assert "### Best hyperparameters" in readme and "### tuned-deepfm-synthetic" in readme
    studies = protocol.root / "results" / "studies"
    assert (studies / "tuned-lr-synthetic" / "optimization_history.png").is_file()


@pytest.mark.slow
def test_a_finished_protocol_launches_nothing_when_run_again(protocol):
    assert protocol.again.launched == []
    assert trial_records(protocol.again) == protocol.after_search


@pytest.mark.slow
def test_only_a_seed_run_without_metrics_is_run_again(protocol, monkeypatch):
    launched = []
    monkeypatch.setattr(tuned, "launch", lambda invocation, words, what: launched.append(words))
    best = best_trials(protocol.resumed)["lr"]
    metrics = protocol.root / "runs" / "final" / "lr" / f"trial_{best.number}" / "seed_1" / "metrics.json"
    metrics.rename(metrics.with_suffix(".kept"))
    try:
        tuned.run_protocol(tuned.load_config(arguments(protocol.root, "stages=[final]")))
    finally:
        metrics.with_suffix(".kept").rename(metrics)
    assert len(launched) == 1 and launched[0][1] == "model=lr" and "seed=1" in launched[0]


@pytest.mark.slow
def test_a_study_whose_time_is_spent_asks_no_trial(protocol, monkeypatch):
    launched = []
    monkeypatch.setattr(tuned, "launch", lambda invocation, words, what: launched.append(words))
    spent = {model: tuned.seconds_spent(protocol.resumed.trials(model)) for model in MODELS}
    assert all(0 < seconds < 60 for seconds in spent.values())
    tuned.run_protocol(tuned.load_config(arguments(protocol.root, "trials=3", "timeout=0.01", "stages=[search]")))
    assert launched == []
    tuned.run_protocol(tuned.load_config(arguments(protocol.root, "trials=3", "timeout=3600", "stages=[search]")))
    assert [words[1] for words in launched] == ["model=lr", "model=deepfm"]
    for words, model in zip(launched, MODELS):
        assert "hydra.sweeper.n_trials=1" in words
        assert f"hydra.sweeper.timeout={math.ceil(3600 - spent[model])}" in words


def test_time_spent_counts_overlapping_trials_once_and_gaps_not_at_all():
    def trial(start: float, end: float):
        at = pd.Timestamp("2026-01-01").to_pydatetime()
        return SimpleNamespace(
            datetime_start=at + pd.Timedelta(seconds=start), datetime_complete=at + pd.Timedelta(seconds=end)
        )

    running = SimpleNamespace(datetime_start=pd.Timestamp("2026-01-01").to_pydatetime(), datetime_complete=None)
    assert tuned.seconds_spent([trial(0, 10), trial(5, 12), trial(100, 103), running]) == 15.0


@pytest.mark.parametrize("seconds_per_batch, batches", [(4, [2, 2, 1]), (6, [2, 2])])
def test_sweeper_asks_no_new_batch_once_its_time_is_up(monkeypatch, seconds_per_batch, batches):
    sweeper = DistributedOptunaSweeper(
        OmegaConf.create({"_target_": "optuna.samplers.RandomSampler"}),
        direction="maximize",
        storage=None,
        study_name=None,
        n_trials=5,
        n_jobs=2,
        max_failure_rate=0.0,
        custom_search_space=None,
        params=None,
        timeout=10,
    )
    clock, launched = [0.0], []

    def run_batch(arguments):  # the plugin's sweep of n_trials, taking seconds_per_batch
        launched.append(sweeper.n_trials)
        clock[0] += seconds_per_batch

    monkeypatch.setattr(sweeper_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(sweeper, "_plugin_sweep", run_batch)
    sweeper._sweep_until_timeout([])
    assert launched == batches


def test_unknown_keys_and_stages_are_errors():
    with pytest.raises(tuned.ProtocolError, match="conf/tuned.yaml"):
        tuned.load_config(["trails=3"])
    with pytest.raises(tuned.ProtocolError, match="unknown stage tune"):
        tuned.load_config(["stages=[search,tune]"])


@pytest.mark.parametrize(
    "text",
    [
        "tuned-lr-synthetic",
        "sqlite:////tmp/a b/optuna.db",
        "postgresql://user:p@ss=1@host/db?x=1",
        "it's",
        "ends\\",
        "5",
        "a,b",
    ],
)
def test_override_values_parse_back_to_the_text(text):
    assert OverridesParser.create().parse_override(f"key={override_value(text)}").value() == text


def fake_trainer(value: float, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(
        is_global_zero=True,
        current_epoch=epoch,
        should_stop=False,
        callback_metrics={"val/auc": torch.tensor(value)},
        strategy=SimpleNamespace(broadcast=lambda obj, src: obj),
    )


def test_a_trial_its_pruner_gives_up_on_stops_training_and_is_told_pruned():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.7))
    tell_marked_trials_pruned(study)
    bad, good = study.ask(), study.ask()
    for trial, value in ((bad, 0.6), (good, 0.8)):
        callback, trainer = TrialPruning(lambda trial=trial: trial, "val/auc"), fake_trainer(value, epoch=1)
        callback.on_train_epoch_end(trainer, None)
        assert trainer.should_stop is (trial is bad) and callback.pruned_at_epoch == (1 if trial is bad else None)
        study.tell(trial, value + 0.01)  # what the sweeper does with the run's best value
    bad_trial, good_trial = study.trials
    assert bad_trial.state == TrialState.PRUNED and bad_trial.value == pytest.approx(0.6)
    assert bad_trial.intermediate_values == {1: pytest.approx(0.6)} and bad_trial.user_attrs[PRUNED_ATTR] == 1
    assert good_trial.state == TrialState.COMPLETE and good_trial.value == pytest.approx(0.81)


@pytest.mark.integration
def test_sweep_with_a_pruner_stops_the_run_and_records_the_trial_pruned(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    pruner = "{_target_:optuna.pruners.ThresholdPruner,lower:1.0,n_warmup_steps:0}"  # no AUC reaches 1: prunes
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "-m",
            "hparams_search=linear",
            "model=lr",
            "hydra.sweeper.n_trials=1",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=pruned",
            "~hydra.sweeper.pruner",
            f"+hydra.sweeper.pruner={pruner}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "~hydra.callbacks.report",
            f"data.cache_dir={tmp_path / 'cache'}",
            *TINY,
            "trainer.max_epochs=3",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="pruned", storage=storage).trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs[PRUNED_ATTR] == 0
    assert list(trial.intermediate_values) == [0] and trial.value == trial.intermediate_values[0]
    history = pd.read_csv(tmp_path / "sweep" / "0" / "history.csv")
    assert history["epoch"].tolist() == [0]  # stopped after the epoch it was pruned at, of 3


def test_the_report_names_the_protocol_command_without_stages_or_note():
    assert (
        tuned.protocol_command(["trials=8", "stages=[report]", "note=Why: these rows.", "overrides=[threads=1]"])
        == "python -m experiments.sweep.tuned trials=8 'overrides=[threads=1]'"
    )
