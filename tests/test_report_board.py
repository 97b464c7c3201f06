"""The board report: BARS's rows beside ours, significance against the best, and the groups of models
that cannot be told apart."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest

from experiments.report import stats
from experiments.report.board import letter_groups, letters
from experiments.report.writer import run_report
from tests.report_runs import make_run


@pytest.mark.parametrize("seed", range(30))
def test_letter_groups_separate_every_different_pair_and_join_every_other(seed):
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(rng.randint(2, 9))]
    pairs = list(itertools.combinations(names, 2))
    different = [pair for pair in pairs if rng.random() < rng.choice((0.2, 0.5, 0.8))]
    groups = letter_groups(names, different)
    sets = [set(g) for g in groups]
    for a, b in pairs:
        together = any({a, b} <= g for g in sets)
        assert together != ((a, b) in different), (a, b)
    assert all(not (g < h) for g in sets for h in sets)  # none inside another
    assert set(itertools.chain.from_iterable(groups)) == set(names)  # every model has a letter


def test_letter_groups_of_a_chain_overlap_and_are_named_in_order():
    # a ~ b ~ c but a differs from c: two overlapping groups, the best model's first
    assert letter_groups(["a", "b", "c"], [("a", "c")]) == [["a", "b"], ["b", "c"]]
    assert letter_groups(["a", "b", "c"], []) == [["a", "b", "c"]]
    assert letter_groups(["a", "b"], [("a", "b")]) == [["a"], ["b"]]
    assert letters([[]] * 28)[-3:] == ["z", "aa", "ab"]


def test_all_pairs_auc_is_the_pairwise_comparison():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.4).astype(np.int64)
    scores = {
        name: [labels * shift + rng.normal(size=400) for _ in range(3)]
        for name, shift in (("x", 1.0), ("y", 0.6), ("z", 0.2))
    }
    pairs = stats.all_pairs_auc(labels, scores)
    assert [(a, b) for a, b, _ in pairs] == [("x", "y"), ("x", "z"), ("y", "z")]
    for a, b, comparison in pairs:
        alone = stats.compare_auc(labels, scores[a], scores[b])
        assert comparison.difference == pytest.approx(alone.difference, abs=1e-12)
        assert comparison.standard_error == pytest.approx(alone.standard_error, rel=1e-9)
        assert comparison.p_value == pytest.approx(alone.p_value, rel=1e-9, abs=1e-300)


def _board_runs(root, dataset: str, experiment: str | None = "bars_frappe_x1"):
    """Three models of BARS's Frappe_x1 board and one weaker, three seeds each, saved predictions of
    the same 3,000 test rows: FinalMLP and DCN-V2 alike, LR far worse."""
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.35).astype(np.float32)
    signal = rng.normal(size=3000)
    strength = {"finalmlp": 2.0, "dcn_v2": 2.0, "deepfm": 1.6, "lr": 0.5}
    for model, weight in strength.items():
        for seed in range(3):
            logit = weight * (y - 0.35) * 2 + 0.3 * signal + rng.normal(scale=0.9, size=3000)
            p = 1 / (1 + np.exp(-logit))
            auc = float(stats.delong(y, [p]).auc[0])
            run = make_run(root / f"{model}_{seed}", model, dataset, seed, auc, 0.4, experiment=experiment)
            (run / "predictions").mkdir()
            np.save(run / "predictions" / "test_p.npy", p.astype(np.float32))
            np.save(run / "predictions" / "test_y.npy", y)


def test_a_board_run_on_other_data_gets_the_board_in_its_order_without_differences(tmp_path):
    _board_runs(tmp_path / "runs", "frappe_like")
    run_report([tmp_path / "runs"], out_dir=tmp_path / "out")
    board = pd.read_csv(tmp_path / "out" / "frappe_like" / "board.csv")
    text = (tmp_path / "out" / "frappe_like" / "board.md").read_text()
    assert list(board["model"][:3]) == ["FinalMLP", "FinalNet", "DESTINE"]  # BARS's order, run or not
    assert "diff_auc" not in board and "Δ AUC" not in text
    assert "not on BARS's data" in text and "How BARS picked its rows" in text
    ran = board.set_index("model").loc[["FinalMLP", "DCN-V2", "DeepFM", "LR"]]
    assert (ran["seeds"] == 3).all()
    assert set(ran.loc["FinalMLP", "group"]) & set(ran.loc["DCN-V2", "group"])  # alike: a shared letter
    assert not set(ran.loc["LR", "group"]) & set(ran.loc["FinalMLP", "group"])
    assert board.set_index("model").loc["FinalNet", "seeds"] != 3  # not run: BARS's numbers only
    assert "| not run |" in text
    widths = {line.count("|") for line in text.splitlines() if line.startswith("| ")}
    assert len(widths) == 1  # every row has the header's cells


def test_a_board_run_on_the_boards_data_gets_differences(tmp_path):
    _board_runs(tmp_path / "runs", "frappe")
    run_report([tmp_path / "runs"], out_dir=tmp_path / "out")
    board = pd.read_csv(tmp_path / "out" / "frappe" / "board.csv").set_index("model")
    assert board.loc["LR", "diff_auc"] == pytest.approx(board.loc["LR", "auc_mean"] - 0.9356)


def test_runs_of_no_board_experiment_get_no_board(tmp_path):
    _board_runs(tmp_path / "runs", "frappe_like", experiment=None)
    run_report([tmp_path / "runs"], out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "frappe_like" / "board.md").exists()
