"""The report's other outputs on hand-made runs: the Optuna figures, model colours, the reference
numbers' file and the A/B comparison of two settings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from experiments.report import writer as report
from experiments.report.naming import KNOWN_LABELS
from experiments.report.plots import model_color
from experiments.report.references import ReferenceFileError, load_references, reference_for
from tests.report_runs import make_run


@pytest.mark.slow
def test_optuna_study_figures(tmp_path: Path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = optuna.create_study(
        study_name="deepfm_lr", storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(
        lambda t: 0.8 - (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 1e-3) ** 2 + 0.0 * t.suggest_int("layers", 1, 3),
        n_trials=8,
    )
    optuna.create_study(study_name="empty", storage=storage)

    out = tmp_path / "results"
    outcome = report.run_report([], out, study_storage=storage, stream=io.StringIO())
    assert outcome.studies == ["deepfm_lr", "empty"]
    for name in ("optimization_history.png", "param_importances.png"):
        assert (out / "studies" / "deepfm_lr" / name).stat().st_size > 1000
    summary = json.loads((out / "studies" / "deepfm_lr" / "provenance.json").read_text())
    assert summary["trials"] == {"complete": 8}
    assert summary["best_value"] == pytest.approx(study.best_value)
    assert summary["best_params"] == study.best_params
    assert json.loads((out / "studies" / "empty" / "provenance.json").read_text())["notes"] == [
        "empty: no completed trial"
    ]
    readme = (out / "README.md").read_text()
    assert "### deepfm_lr" in readme and "![param_importances](studies/deepfm_lr/param_importances.png)" in readme
    with pytest.raises(ValueError, match="no study 'nope'.*deepfm_lr, empty"):
        report.run_report([], out, study_storage=storage, study_names=["nope"], stream=io.StringIO())
    with pytest.raises(FileNotFoundError, match="typo.db: no such SQLite file"):
        report.run_report([], out, study_storage=f"sqlite:///{tmp_path / 'typo.db'}", stream=io.StringIO())
    assert not (tmp_path / "typo.db").exists()


def test_every_model_keeps_one_distinct_colour():
    colours = [model_color(label) for label in KNOWN_LABELS]
    assert len(set(colours)) == len(KNOWN_LABELS)
    assert model_color("DeepFM") == "#d62728"
    assert model_color("my_new_model") == model_color("my_new_model") not in colours


# --- the reference numbers --------------------------------------------------------------------

PAPER_CRITEO = {
    "LR": (0.7804, 0.46782),
    "FM": (0.7894, 0.46059),
    "FNN": (0.7959, 0.46350),
    "IPNN": (0.7971, 0.45347),
    "OPNN": (0.7981, 0.45293),
    "PNN*": (0.7983, 0.45330),
    "LR&DNN": (0.7858, 0.46596),
    "FM&DNN": (0.7980, 0.45343),
    "DeepFM": (0.8016, 0.44985),
}
PAPER_COMPANY = {
    "LR": (0.8641, 0.02648),
    "FM": (0.8679, 0.02632),
    "FNN": (0.8684, 0.02628),
    "IPNN": (0.8662, 0.02639),
    "OPNN": (0.8657, 0.02640),
    "PNN*": (0.8663, 0.02638),
    "LR&DNN": (0.8671, 0.02635),
    "FM&DNN": (0.8658, 0.02639),
    "DeepFM": (0.8715, 0.02619),
}
BARS_FRAPPE = {
    "LR": (0.9356, 0.3076),
    "FM": (0.9671, 0.2065),
    "FFM": (0.9786, 0.1860),
    "DNN": (0.9833, 0.1622),
    "IPNN": (0.9841, 0.1540),
    "LR&DNN": (0.9841, 0.1490),
    "DeepFM": (0.9842, 0.1482),
    "DCN": (0.9839, 0.1527),
    "xDeepFM": (0.9845, 0.1466),
    "CrossNet-V2": (0.9729, 0.2216),
    "DCN-V2": (0.9845, 0.1491),
    "AutoInt": (0.9831, 0.1637),
    "AutoInt+": (0.9848, 0.1490),
    "FiBiNET": (0.9832, 0.1941),
    "DLRM": (0.9840, 0.1444),
    "MaskNet": (0.9837, 0.1696),
    "FinalMLP": (0.9861, 0.1484),
    "FinalNet": (0.9857, 0.1311),
    "AOANet": (0.9844, 0.1424),
    "DeepIM": (0.9844, 0.1490),
    "EDCN": (0.9850, 0.1547),
    "DESTINE": (0.9856, 0.1434),
    "NFM": (0.9804, 0.2058),
    "AFM": (0.9697, 0.2264),
    "FwFM": (0.9776, 0.2030),
    "FmFM": (0.9749, 0.2004),
    "HOFM": (0.9742, 0.2073),
    "FiGNN": (0.9761, 0.2037),
    "AFN": (0.9811, 0.2331),
    "AFN+": (0.9826, 0.2139),
    "SAM": (0.9801, 0.1735),
    "CrossNet": (0.9594, 0.2715),
    "CIN": (0.9782, 0.2352),
    "HFM": (0.9386, 0.2815),
    "HFM+": (0.9827, 0.1543),
    "DSSM": (0.9832, 0.1874),
}
BARS_CRITEO_X4 = {
    "LR": (0.7934, 0.4568),
    "FM": (0.8086, 0.4431),
    "FFM": (0.8113, 0.4407),
    "IPNN": (0.8142, 0.4378),
    "LR&DNN": (0.8142, 0.4377),
    "DeepFM": (0.8143, 0.4376),
    "DCN": (0.8144, 0.4376),
    "xDeepFM": (0.8143, 0.4376),
    "DCN-V2": (0.8145, 0.4376),
    "AutoInt": (0.8119, 0.4399),
    "AutoInt+": (0.8132, 0.4390),
    "FiBiNET": (0.8131, 0.4387),
    "MaskNet": (0.8134, 0.4387),
    "NFM": (0.8093, 0.4424),
    "AFM": (0.8060, 0.4455),
    "FwFM": (0.8112, 0.4408),
    "HOFM": (0.8107, 0.4411),
    "CrossNet": (0.8060, 0.4456),
    "CIN": (0.8127, 0.4394),
    "HFM": (0.8095, 0.4424),
    "HFM+": (0.8127, 0.4392),
}


def test_reference_file_holds_the_published_numbers():
    references = {r.key: r for r in load_references()}
    assert set(references) == {"deepfm_paper_criteo", "deepfm_paper_company", "bars_frappe_x1", "bars_criteo_x4_001"}
    for key, expected, dataset in [
        ("deepfm_paper_criteo", PAPER_CRITEO, "criteo"),
        ("deepfm_paper_company", PAPER_COMPANY, None),
        ("bars_frappe_x1", BARS_FRAPPE, "frappe"),
        ("bars_criteo_x4_001", BARS_CRITEO_X4, "criteo_x4"),
    ]:
        reference = references[key]
        assert reference.dataset == dataset
        assert {label: tuple(row) for label, row in reference.scores.iterrows()} == expected
        assert reference.source.strip()
    assert "IJCAI 2017" in references["deepfm_paper_criteo"].source
    assert "BARS" in references["bars_frappe_x1"].source
    assert reference_for("frappe").key == "bars_frappe_x1"
    assert reference_for("criteo_x4").key == "bars_criteo_x4_001"
    assert [reference_for(name) for name in ("criteo_sample", "synthetic", "avazu")] == [None, None, None]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "- key: x\n  title: X\n  dataset: d\n  setting: s\n  source: c\n  models:\n    LR: {auc: 0.7}\n",
            r"bad.yaml:7: x/LR: expected exactly \{auc",
        ),
        (
            "- key: x\n  title: X\n  dataset: d\n  setting: s\n  source: c\n  models:\n"
            "    Lr: {auc: 0.7, logloss: 0.4}\n",
            r"bad.yaml:7: x: unknown model name 'Lr'",
        ),
        (
            "- key: x\n  title: X\n  dataset: d\n  setting: s\n  models: {}\n",
            r"bad.yaml:1: reference is missing source",
        ),
        ("- key: x\n  models: [\n", r"bad.yaml:3: invalid YAML"),
    ],
)
def test_reference_file_errors_name_file_and_line(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ReferenceFileError, match=message):
        load_references(path)


def test_ab_compares_two_settings_model_by_model_on_saved_predictions(tmp_path: Path):
    import numpy as np

    from experiments.report import ab, stats

    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(np.int8)
    signal = y + rng.normal(0, 1.2, size=len(y))
    predictions = {}
    for side, noise in (("a", 1.0), ("b", 0.5)):  # b's scores are less noisy: a real AUC gain
        for seed in range(3):
            run = make_run(tmp_path / side / str(seed), "deepfm", "synthetic", seed, 0.7, 0.5)
            p = 1 / (1 + np.exp(-(signal + rng.normal(0, noise, size=len(y)))))
            (run / "predictions").mkdir()
            np.save(run / "predictions" / "test_p.npy", p.astype(np.float32))
            np.save(run / "predictions" / "test_y.npy", y)
            predictions.setdefault(side, []).append(p.astype(np.float32).astype(np.float64))
            metrics = json.loads((run / "metrics.json").read_text())
            metrics["test/auc"] = float(stats.delong(y, [p.astype(np.float32).astype(np.float64)]).auc[0])
            metrics["train_samples_per_s"] = 1000.0 if side == "a" else 1500.0
            (run / "metrics.json").write_text(json.dumps(metrics))
    make_run(tmp_path / "a" / "lr0", "lr", "synthetic", 0, 0.6, 0.55)  # on one side only: left out
    table = ab.main(
        [str(tmp_path / "a"), "--vs", str(tmp_path / "b"), "--names", "float32,bf16", "--out", str(tmp_path / "out")]
    )
    assert list(table["model"]) == ["DeepFM"]
    row = table.iloc[0]
    expected = stats.compare_auc(y, predictions["b"], predictions["a"])
    assert row["auc_diff"] == pytest.approx(expected.difference, abs=1e-9) and row["auc_diff"] > 0.02
    assert row["p_auc"] == pytest.approx(expected.p_value) and row["p_auc"] < 0.001
    assert row["speed_ratio"] == pytest.approx(1.5) and bool(row["within_tolerance"])
    text = (tmp_path / "out" / "ab.md").read_text()
    assert "# bf16 against float32" in text and "| synthetic | DeepFM | 3, 3 |" in text and "| 1.50x | yes |" in text
