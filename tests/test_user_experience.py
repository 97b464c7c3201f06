"""What a new user meets: one-line errors, a summary at the end of a run, failed runs of a multirun
listed with their reason, no silent overwrite of committed results, truncated runs marked, a line
per epoch outside a terminal, and none of the libraries' notices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.report.writer import OverwriteError, run_report
from experiments.run.errors import ConfigError, configured, user_error_message
from experiments.run.summary import run_summary
from tests.helpers import REPO, run_app, tiny_run

TINY = tiny_run(3000, 1, "model.mlp.hidden_units=[8]")


@pytest.mark.integration
def test_a_missing_data_file_is_one_message_without_a_traceback(tmp_path):
    done = run_app(
        "data=criteo", f"data.source.path={tmp_path / 'nope.tsv'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"error: CriteoSource: the input file {tmp_path / 'nope.tsv'} does not exist." in done.stderr
    assert (tmp_path / "run" / "failure.txt").read_text().startswith("CriteoSource: the input file")


@pytest.mark.integration
def test_a_rejected_setting_names_its_group_and_the_full_traceback_stays_available(tmp_path, cache):
    args = ["model.mlp.dropout=1.5", f"data.cache_dir={cache}", *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    done = run_app(*args, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: model, optim or init: dropout is a drop probability in [0, 1), got 1.5" in done.stderr
    full = run_app(*args, cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr


def test_bugs_keep_their_traceback():
    assert user_error_message(KeyError("internal")) is None
    with pytest.raises(ConfigError, match="trainer: bad value"):
        with configured("trainer"):
            raise ValueError("bad value")
    assert user_error_message(ConfigError("trainer: bad value")) == "trainer: bad value"


@pytest.mark.integration
def test_a_run_ends_with_its_summary_and_writes_its_predictions(tmp_path, cache):
    done = run_app(f"data.cache_dir={cache}", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    tail = done.stdout.strip().splitlines()[-6:]
    assert tail[0].startswith("deepfm on synthetic (seed 0): best epoch 1 of 1")
    assert tail[1].startswith("  val  AUC 0.") and tail[2].startswith("  test AUC 0.")
    assert tail[-2].startswith("  still improving: the best epoch was the last of 1;")
    assert tail[-1].startswith("  run folder: run ")
    # not a terminal: one line per epoch, no progress bar; and no advertisement
    assert any(line.startswith("epoch 1/1  train/loss") for line in done.stdout.splitlines())
    assert "💡" not in done.stdout + done.stderr and "LeafSpec" not in done.stderr
    assert "Restoring states" not in done.stdout + done.stderr and "logging interval" not in done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in (
        "test/ece",
        "inference_samples_per_s",
        "one_row_p99_ms",
        "peak_rss_mib",
        "train_seconds_per_epoch",
        "epochs_to_best",
        "ceiling/first_order/test/auc",
        "ceiling/pairwise/test/auc",
    ):
        assert key in metrics, key
    assert "truncated" not in metrics and metrics["still_improving"] is True
    assert 0 < metrics["one_row_p99_ms"] < 1000
    assert (tmp_path / "run" / "predictions" / "test_p.npy").is_file()


def test_a_summary_marks_a_truncated_run():
    text = run_summary(
        {
            "model": "fm",
            "dataset": "d",
            "seed": 1,
            "best_epoch": 0,
            "epochs": 1,
            "test/auc": 0.5,
            "test/logloss": 0.7,
            "truncated": "limit_train_batches=5",
        },
        Path("x"),
        3.0,
    )
    assert "truncated run (limit_train_batches=5)" in text and "not comparable" in text
    assert "still improving" not in text


@pytest.mark.parametrize("best_epoch, marked", [(9, True), (7, False)])
def test_a_summary_says_when_the_best_epoch_was_the_last(best_epoch, marked):
    metrics = {"model": "fm", "dataset": "d", "seed": 1, "best_epoch": best_epoch, "epochs": 10}
    text = run_summary({**metrics, "still_improving": best_epoch == 9}, Path("x"), 3.0)
    assert text.startswith(f"fm on d (seed 1): best epoch {best_epoch + 1} of 10")
    assert ("still improving: the best epoch was the last of 10; more epochs may score higher" in text) == marked


@pytest.mark.integration
def test_a_multirun_with_a_failed_run_reports_the_others_lists_the_failure_and_exits_1(tmp_path, cache):
    done = run_app(
        "-m",
        "optim.lr=0.001,-1",
        f"data.cache_dir={cache}",
        *TINY,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "1 failed" in done.stdout and "the learning rate must be > 0, got -1" in done.stdout
    assert "| DeepFM ↑ |" in done.stdout  # the table of the runs that worked (one epoch: its best was its last)
    assert (tmp_path / "sweep" / "results" / "synthetic" / "table.md").is_file()


@pytest.mark.integration
def test_debug_runs_are_flagged_and_marked_in_the_table_and_every_figure(tmp_path, cache, monkeypatch):
    from experiments.report import plots

    notes, save = {}, plots.save_figure

    def save_and_note(fig, stem, note=None):
        notes[stem.name] = note
        return save(fig, stem, note)

    monkeypatch.setattr(plots, "save_figure", save_and_note)
    done = run_app(
        "trainer=debug",
        f"data.cache_dir={cache}",
        "data.source.rows=3000",
        "model.mlp.hidden_units=[8]",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "limit_train_batches" in metrics["truncated"]
    run_report([tmp_path / "run"], tmp_path / "results", stream=open("/dev/null", "w"))
    table = (tmp_path / "results" / "synthetic" / "table.md").read_text()
    assert "| DeepFM † ↑ |" in table and "†: debug run, not comparable" in table
    assert set(notes) == {"metrics", "learning_curves", "cost", "reliability"}
    assert all(note.startswith("† debug runs, not comparable") and note.endswith(": DeepFM") for note in notes.values())


@pytest.mark.integration
def test_the_report_refuses_to_replace_results_with_fewer_runs(tmp_path, cache):
    sweep = tmp_path / "sweep"
    done = run_app(
        "-m",
        "model=fm,lr",
        "seed=0,1",
        f"data.cache_dir={cache}",
        *tiny_run(),
        f"hydra.sweep.dir={sweep}",
        "~hydra.callbacks.report",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "results"
    quiet = open("/dev/null", "w")
    run_report([sweep], out, stream=quiet)
    committed = (out / "synthetic" / "table.md").read_text()
    with pytest.raises(OverwriteError, match=r"FM seeds 1.*LR \(seeds 0 1\)|LR \(seeds 0 1\).*FM seeds 1"):
        run_report([sweep / "0"], out, stream=quiet)  # one FM run (seed 0) in place of four runs
    assert (out / "synthetic" / "table.md").read_text() == committed  # nothing written
    run_report([sweep], out, stream=quiet)  # the same runs again: allowed
    run_report([sweep / "0"], out, stream=quiet, replace=True)
    assert pd.read_csv(out / "synthetic" / "table.csv")["seeds"].dropna().tolist() == [1]


@pytest.mark.integration
def test_the_report_command_writes_next_to_the_runs_by_default(tmp_path, cache):
    done = run_app(f"data.cache_dir={cache}", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0
    report = subprocess.run(
        [sys.executable, "-m", "experiments.report", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "run" / "results" / "synthetic" / "table.md").is_file()
    assert not (REPO / "results" / "tables" / "synthetic" / "provenance.json").read_text().count(str(tmp_path))
