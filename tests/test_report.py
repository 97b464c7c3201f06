"""The results collector on hand-made run folders: exact table values, the files it writes and the
Hydra callback (its other outputs: ``test_report_outputs.py``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from experiments.report import writer as report
from experiments.report.callback import ReportCallback
from experiments.report.collect import (
    BAD_METRICS,
    DUPLICATE,
    NO_METRICS,
    NON_FINITE,
    collect_runs,
    find_run_dirs,
    load_histories,
    reconstruct_commands,
    select_configurations,
)
from experiments.report.naming import order_labels
from experiments.report.references import reference_for
from experiments.report.render import to_latex, to_markdown
from experiments.report.tables import build_table
from tests.report_runs import make_run

ORACLE = (0.85, 0.40)


@pytest.fixture
def synthetic_sweep(tmp_path: Path) -> Path:
    """LR x3 seeds; FM seeds 0 and 2 (seed 1 crashed); DeepFM x3 seeds plus a seed that diverged."""
    sweep = tmp_path / "multirun" / "2026-11-24" / "12-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": ["model=lr,fm,deepfm", "seed=0,1,2,3"]},
                    "job": {"name": "run", "config_name": "config"},
                    "runtime": {
                        "config_sources": [
                            {"path": "pkg://hydra.conf", "schema": "pkg", "provider": "hydra"},
                            {"path": "my conf", "schema": "file", "provider": "command-line"},
                        ]
                    },
                }
            }
        )
    )
    jobs = [("lr", s, auc, ll) for s, auc, ll in [(0, 0.70, 0.50), (1, 0.72, 0.52), (2, 0.74, 0.54)]]
    jobs += [("fm", 0, 0.75, 0.48), ("fm", 1, None, None), ("fm", 2, 0.77, 0.46)]
    jobs += [("deepfm", s, auc, ll) for s, auc, ll in [(0, 0.80, 0.44), (1, 0.81, 0.45), (2, 0.82, 0.46)]]
    jobs += [("deepfm", 3, float("nan"), 0.45)]
    for number, (model, seed, auc, ll) in enumerate(jobs):
        make_run(
            sweep / str(number),
            model,
            "synthetic",
            seed,
            auc,
            ll,
            oracle=ORACLE,
            history=[0.6, 0.65, auc or 0.7],
            finished=auc is not None,
        )
    return sweep


def test_collector_yields_the_exact_table_values(synthetic_sweep: Path):
    collection = collect_runs([synthetic_sweep])
    assert len(collection.runs) == 8
    assert collection.ignored_counts() == {NO_METRICS: 1, NON_FINITE: 1}
    assert collection.ignored_counts("synthetic") == {NO_METRICS: 1, NON_FINITE: 1}

    selected, notes = select_configurations(collection.runs)
    assert notes == {}
    table = build_table(selected, reference_for("synthetic"))
    rows = table.rows.set_index("label")
    assert list(rows.index) == ["LR", "FM", "DeepFM", "Oracle (true p)"]
    assert list(rows["seeds"][:3]) == [3, 2, 3]
    assert list(rows["seed_list"][:3]) == ["0 1 2", "0 2", "0 1 2"]
    assert rows.loc["LR", ["auc_mean", "auc_std", "logloss_mean", "logloss_std"]].tolist() == pytest.approx(
        [0.72, 0.02, 0.52, 0.02]
    )
    assert rows.loc["FM", ["auc_mean", "auc_std", "logloss_mean", "logloss_std"]].tolist() == pytest.approx(
        [0.76, math.sqrt(2) * 0.01, 0.47, math.sqrt(2) * 0.01]
    )
    assert rows.loc["DeepFM", ["auc_mean", "auc_std", "logloss_mean", "logloss_std"]].tolist() == pytest.approx(
        [0.81, 0.01, 0.45, 0.01]
    )
    # the paper's relative improvement of DeepFM over each model, in %
    assert rows.loc["LR", "deepfm_rel_impr_auc_pct"] == pytest.approx(100 * 0.09 / 0.72)
    assert rows.loc["LR", "deepfm_rel_impr_logloss_pct"] == pytest.approx(100 * 0.07 / 0.52)
    assert rows.loc["FM", "deepfm_rel_impr_auc_pct"] == pytest.approx(100 * 0.05 / 0.76)
    assert rows.loc["FM", "deepfm_rel_impr_logloss_pct"] == pytest.approx(100 * 0.02 / 0.47)
    assert rows.loc["DeepFM", "deepfm_rel_impr_auc_pct"] == 0.0
    # the oracle: identical in every run, so no spread; never counted as best
    assert rows.loc["Oracle (true p)", ["auc_mean", "logloss_mean"]].tolist() == pytest.approx(list(ORACLE))
    assert rows.loc["Oracle (true p)", ["auc_std", "logloss_std"]].isna().all()
    assert rows["best_auc"].tolist() == [False, False, True, False]
    assert rows["best_logloss"].tolist() == [False, False, True, False]
    assert table.reference is None and "ref_auc" not in rows


def test_markdown_and_latex_mark_the_best_values(synthetic_sweep: Path):
    table = build_table(select_configurations(collect_runs([synthetic_sweep]).runs)[0])
    markdown = to_markdown(table).splitlines()
    assert markdown[0] == (
        "| Model | AUC | LogLoss | Seeds | Share of its ceiling's lift | Share of the oracle's lift "
        "| DeepFM rel. impr. AUC | DeepFM rel. impr. LogLoss |"
    )
    # no ceilings in these runs: LR's and FM's share of their own is unknown; DeepFM's ceiling is the oracle
    assert markdown[2] == "| LR | 0.7200 ± 0.0200 | 0.52000 ± 0.02000 | 3 | — | 62.9% | +12.50% | +13.46% |"
    assert markdown[3] == "| FM | 0.7600 ± 0.0141 | 0.47000 ± 0.01414 | 2 | — | 74.3% | +6.58% | +4.26% |"
    assert markdown[4] == (
        "| DeepFM | **0.8100 ± 0.0100** | **0.45000 ± 0.01000** | 3 | 88.6% | 88.6% | +0.00% | +0.00% |"
    )
    assert markdown[5] == "| Oracle (true p) | 0.8500 | 0.40000 | — | — | — | — | — |"
    latex = to_latex(table)
    assert r"DeepFM & \textbf{0.8100 $\pm$ 0.0100} & \textbf{0.45000 $\pm$ 0.01000} & 3" in latex
    assert "\\midrule\nOracle (true p) & 0.8500 & 0.40000" in latex
    # the scores' tabular and the costs' (the model and its seven costs), eight columns each
    assert latex.count(r"\begin{tabular}{lrrrrrrr}") == 2 and latex.rstrip().endswith(r"\end{table}")


def test_criteo_is_compared_with_the_paper_and_a_sample_is_not(tmp_path: Path):
    outputs = tmp_path / "outputs"
    make_run(outputs / "2026-11-24" / "09-00-00", "deepfm", "criteo", 0, 0.8000, 0.4500)
    make_run(outputs / "2026-11-24" / "10-00-00", "fm", "criteo", 0, 0.7900, 0.4600)
    make_run(outputs / "2026-11-25" / "08-00-00", "deepfm", "criteo_sample", 0, 0.7000, 0.5000)
    selected, _ = select_configurations(collect_runs([outputs]).runs)

    criteo = build_table(selected[selected["dataset"] == "criteo"], reference_for("criteo")).rows.set_index("label")
    assert list(criteo.index) == ["LR", "FM", "FNN", "IPNN", "OPNN", "PNN*", "LR&DNN", "FM&DNN", "DeepFM"]
    assert criteo.loc["DeepFM", ["ref_auc", "ref_logloss"]].tolist() == [0.8016, 0.44985]
    assert criteo.loc["DeepFM", ["diff_auc", "diff_logloss"]].tolist() == pytest.approx([-0.0016, 0.00015])
    assert criteo.loc["FM", ["diff_auc", "diff_logloss"]].tolist() == pytest.approx([0.7900 - 0.7894, 0.46 - 0.46059])
    assert criteo.loc["LR", "seeds"] == 0 and math.isnan(criteo.loc["LR", "auc_mean"])  # paper row, not run
    assert criteo.loc["LR", "ref_deepfm_rel_impr_auc_pct"] == pytest.approx(100 * (0.8016 - 0.7804) / 0.7804)
    assert criteo["ref_best_auc"].sum() == 1 and criteo.loc["DeepFM", "ref_best_auc"]
    assert not criteo.loc["FM", "best_auc"] and criteo.loc["DeepFM", "best_auc"]

    assert reference_for("criteo_sample") is None
    sample = build_table(selected[selected["dataset"] == "criteo_sample"], reference_for("criteo_sample"))
    assert list(sample.rows["label"]) == ["DeepFM"] and "ref_auc" not in sample.rows
    assert "DeepFM paper" not in to_markdown(sample)


def test_models_keep_the_paper_order_and_unknown_models_go_last(tmp_path: Path):
    for number, model in enumerate(["zeta_net", "xdeepfm", "alpha_net", "deepfm", "lr", "Bert4CTR", "ffm", "pnn_star"]):
        make_run(tmp_path / str(number), model, "synthetic", 0, 0.7, 0.5)
    table = build_table(select_configurations(collect_runs([tmp_path]).runs)[0])
    assert list(table.rows["label"]) == ["LR", "PNN*", "DeepFM", "FFM", "xDeepFM", "alpha_net", "Bert4CTR", "zeta_net"]
    assert order_labels(["DCN", "LR&DNN", "Wide&Deep", "FM&DNN", "DNN"]) == [
        "LR&DNN",
        "FM&DNN",
        "DNN",
        "Wide&Deep",
        "DCN",
    ]


def test_one_configuration_per_model_most_seeds_then_best_validation(tmp_path: Path):
    for seed in range(3):  # the 3-seed confirmation run of a tuned FM
        make_run(
            tmp_path / f"fm{seed}", "fm", "synthetic", seed, 0.76, 0.47, val_auc=0.70, overrides=("optim.lr=0.01",)
        )
    make_run(tmp_path / "fm_trial", "fm", "synthetic", 0, 0.99, 0.10, val_auc=0.99, overrides=("optim.lr=0.1",))
    for number, (lr, val_auc) in enumerate([(0.1, 0.71), (0.01, 0.73), (0.001, 0.72)]):  # Optuna trials
        make_run(
            tmp_path / f"lr_trial{number}",
            "lr",
            "synthetic",
            0,
            0.70 + number / 100,
            0.5,
            val_auc=val_auc,
            overrides=(f"optim.lr={lr}",),
        )
    selected, notes = select_configurations(collect_runs([tmp_path]).runs)
    chosen = selected.groupby("label")["configuration"].unique().to_dict()
    assert list(chosen["FM"]) == ["model=fm optim.lr=0.01"]
    assert list(chosen["LR"]) == ["model=lr optim.lr=0.01"]  # best validation AUC, not best test AUC
    assert len(selected) == 4
    assert notes["synthetic"][0].startswith(
        "LR: 3 configurations found; shown: `model=lr optim.lr=0.01` (1 seed, mean validation AUC 0.7300)"
    )
    assert notes["synthetic"][1].startswith("FM: 2 configurations found")


def test_execution_settings_do_not_split_a_configuration(tmp_path: Path):
    make_run(tmp_path / "a", "fm", "synthetic", 0, 0.70, 0.5, overrides=("optim.lr=0.01",))
    make_run(
        tmp_path / "b",
        "fm",
        "synthetic",
        1,
        0.72,
        0.5,
        overrides=("optim.lr=0.01", "threads=1", "trainer.enable_progress_bar=false"),
    )
    selected, notes = select_configurations(collect_runs([tmp_path]).runs)
    assert selected["configuration"].tolist() == ["model=fm optim.lr=0.01"] * 2 and notes == {}


def test_a_rerun_of_the_same_seed_replaces_the_older_run(tmp_path: Path):
    make_run(tmp_path / "old" / "0", "lr", "synthetic", 0, 0.60, 0.6)
    make_run(tmp_path / "old" / "1", "lr", "synthetic", 1, 0.62, 0.6)
    make_run(tmp_path / "new" / "0", "lr", "synthetic", 0, 0.64, 0.6)  # finishes last
    collection = collect_runs([tmp_path / "old", tmp_path / "new", tmp_path])  # overlapping inputs count once
    assert sorted(collection.runs["test/auc"]) == [0.62, 0.64]
    assert collection.ignored_counts() == {DUPLICATE: 1}
    assert collection.ignored["detail"].iloc[0].endswith(os.path.join("old", "0"))


def test_unreadable_metrics_are_skipped_with_file_and_line(tmp_path: Path):
    run = make_run(tmp_path / "0", "lr", "synthetic", 0, 0.7, 0.5)
    (run / "metrics.json").write_text('{"model": "lr",\n "test/auc": 0.7,\n "test/logloss": }\n')
    make_run(tmp_path / "1", "lr", "synthetic", 1, 0.7, 0.5)
    collection = collect_runs([tmp_path])
    assert collection.ignored_counts() == {BAD_METRICS: 1}
    assert collection.ignored["detail"].iloc[0] == f"{run.resolve() / 'metrics.json'}:3: Expecting value"
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        find_run_dirs([tmp_path / "no_such_folder"])


def test_learning_curves_and_commands_come_from_the_run_folders(synthetic_sweep: Path, tmp_path: Path):
    lone = make_run(
        tmp_path / "outputs" / "lone",
        "dcn",
        "synthetic",
        5,
        0.7,
        0.5,
        history=[0.61, 0.66],
        overrides=("data.source.files={train: a b.csv}",),
    )
    (synthetic_sweep / "0" / "history.csv").write_text("epoch,val/auc\n1,0.5,0.1\n2,0.6\n")
    (synthetic_sweep / "1" / "history.csv").write_text("epoch,val/auc\n1,0.5\n2,n/a?\n")
    selected, _ = select_configurations(collect_runs([synthetic_sweep, lone]).runs)
    histories, problems = load_histories(selected)
    assert problems == [
        f"{synthetic_sweep.resolve() / '0' / 'history.csv'}:2: more fields than the header",
        f"{synthetic_sweep.resolve() / '1' / 'history.csv'}:3: val/auc = 'n/a?' is not a number",
    ]
    dcn = histories[histories["label"] == "DCN"]
    assert dcn["epoch"].tolist() == [1, 2] and dcn["val/auc"].tolist() == [0.61, 0.66]
    assert len(histories) == 3 * 6 + 2  # 6 finished sweep runs with a readable history, 3 epochs each

    assert reconstruct_commands(selected.sort_values("finished_at")["run_dir"]) == [
        "python run.py -m --config-dir 'my conf' model=lr,fm,deepfm seed=0,1,2,3",
        "python run.py model=dcn 'data.source.files={train: a b.csv}' seed=5",
    ]


def test_report_writes_tables_figures_and_readme(synthetic_sweep: Path, tmp_path: Path, capsys):
    out = tmp_path / "results"
    criteo_run = make_run(tmp_path / "outputs" / "criteo0", "deepfm", "criteo", 0, 0.79, 0.46, history=[0.7, 0.79])
    code = report.main(
        [
            str(synthetic_sweep),
            str(criteo_run),
            "--out",
            str(out),
            "--command",
            "python run.py -m experiment=paper seed=0,1,2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "== synthetic: 8 runs, 3 models ==" in printed
    assert "| DeepFM | **0.8100 ± 0.0100** |" in printed
    assert f"ignored 2 runs: 1 {NO_METRICS}; 1 {NON_FINITE}" in printed

    for dataset in ("synthetic", "criteo"):
        for name in ("table.md", "table.csv", "table.tex", "metrics.png", "learning_curves.png", "provenance.json"):
            path = out / dataset / name
            assert path.is_file() and path.stat().st_size > 200, path
            assert str(path) in printed
        assert (out / dataset / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not list((out / dataset).glob("*.svg"))  # each figure once, as PNG

    csv = pd.read_csv(out / "synthetic" / "table.csv").set_index("label")
    assert csv.loc["FM", ["auc_mean", "logloss_mean", "seeds"]].tolist() == pytest.approx([0.76, 0.47, 2])
    assert csv.loc["DeepFM", "best_auc"] and not csv.loc["LR", "best_auc"]
    assert csv.loc["LR", "deepfm_rel_impr_auc_pct"] == pytest.approx(12.5)

    provenance = json.loads((out / "synthetic" / "provenance.json").read_text())
    assert provenance["runs_used"] == 8
    assert provenance["runs_ignored"] == {NO_METRICS: 1, NON_FINITE: 1}
    assert provenance["commands"] == ["python run.py -m --config-dir 'my conf' model=lr,fm,deepfm seed=0,1,2,3"]
    readme = (out / "README.md").read_text()
    assert readme.index("## criteo") < readme.index("## synthetic")
    assert "| DeepFM | **0.7900** | **0.46000** | 1 | **0.8016** | -0.0116 | **0.44985** | +0.01015 |" in readme
    assert "![metrics](synthetic/metrics.png)" in readme and "![learning_curves](criteo/learning_curves.png)" in readme
    assert "python run.py -m experiment=paper seed=0,1,2" in readme
    assert "python run.py -m --config-dir 'my conf' model=lr,fm,deepfm seed=0,1,2,3" in readme
    for library in ("torch", "pytorch-lightning", "hydra-core", "optuna", "pandas", "seaborn"):
        assert f"{library} {provenance['versions'][library]}" in readme
    assert f"{provenance['hardware']['logical_cpus']} logical CPUs" in readme

    # a later report on one dataset keeps the other's section
    assert report.main([str(criteo_run), "--out", str(out)]) == 0
    assert "## synthetic" in (out / "README.md").read_text()


def test_report_fails_clearly_without_finished_runs(tmp_path: Path, capsys):
    make_run(tmp_path / "0", "lr", "synthetic", 0, finished=False)
    assert report.main([str(tmp_path), "--out", str(tmp_path / "results")]) == 1
    captured = capsys.readouterr()
    assert "no finished run found" in captured.err and f"1 {NO_METRICS}" in captured.out
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err


def _multirun_end_config(sweep_dir: str, launch_dir: Path):
    """The parts of the config Hydra hands to on_multirun_end that the callback reads."""
    return OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": sweep_dir},
                "runtime": {"cwd": str(launch_dir)},
                "job": {"name": "run"},
                "overrides": {
                    "hydra": ["hydra.mode=MULTIRUN", "hydra/sweeper=optuna"],
                    "task": ["optim.lr=interval(0.0001,0.1)"],
                },
            }
        }
    )


@pytest.mark.slow
def test_callback_reports_the_sweep_at_multirun_end(synthetic_sweep: Path, tmp_path: Path, caplog):
    ReportCallback(out_dir="report_out").on_multirun_end(
        _multirun_end_config(str(synthetic_sweep.relative_to(tmp_path)), tmp_path)
    )
    rows = pd.read_csv(tmp_path / "report_out" / "synthetic" / "table.csv")
    assert rows["label"].tolist() == ["LR", "FM", "DeepFM", "Oracle (true p)"]
    readme = (tmp_path / "report_out" / "README.md").read_text()
    assert "python run.py -m hydra/sweeper=optuna 'optim.lr=interval(0.0001,0.1)'" in readme

    ReportCallback(out_dir=None).on_multirun_end(_multirun_end_config(str(synthetic_sweep), tmp_path))
    assert (synthetic_sweep / "results" / "synthetic" / "table.md").read_text().startswith("| Model | AUC |")

    # a report that cannot run is logged with the command to retry, and does not fail the sweep
    ReportCallback(out_dir="report_out").on_multirun_end(_multirun_end_config("gone", tmp_path))
    assert "re-run it with: python -m experiments.report" in caplog.text and "gone: no such file" in caplog.text


def test_runs_that_ended_still_improving_are_marked(tmp_path: Path):
    make_run(tmp_path / "0", "lr", "synthetic", 0, 0.70, 0.5, still_improving=True)
    make_run(tmp_path / "1", "lr", "synthetic", 1, 0.72, 0.5, still_improving=False)
    make_run(tmp_path / "2", "fm", "synthetic", 0, 0.75, 0.5)  # written before the key existed
    table = build_table(select_configurations(collect_runs([tmp_path]).runs)[0])
    assert table.still_improving == ["LR"]
    markdown = to_markdown(table)
    assert "| LR ↑ | 0.7100 ± 0.0141 |" in markdown and "| FM | " in markdown
    assert "still improving when trainer.max_epochs ended them (more epochs might score higher): LR 1 of 2." in markdown
