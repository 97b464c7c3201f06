"""The FuxiCTR side-by-side check on tiny data, where FuxiCTR is installed (``pip install -e
".[reference]"``; the main install and CI have no FuxiCTR, and these tests then skip)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("fuxictr", reason="FuxiCTR is an optional extra: pip install -e '.[reference]'")

from fuxictr.preprocess import FeatureProcessor

from datamodules.sources.frappe import FIELDS
from experiments.reference import check
from experiments.reference.data import write_frappe_like
from experiments.reference.fuxictr_models import REFERENCE_MODELS
from experiments.reference.zoo import zoo_models

# FuxiCTR's model_zoo folder (a checkout of its repository), for the newer models' reference
ZOO = os.environ.get("FUXICTR_ZOO")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_frappe_like(tmp_path_factory.mktemp("frappe"), rows=3000)


@pytest.mark.parametrize("model", sorted(REFERENCE_MODELS))
def test_both_libraries_take_the_same_steps_in_float64(model, files, tmp_path):
    cfg = check.preset_config(
        "bars_frappe_x1",
        model,
        files["libfm"],
        tmp_path / "cache",
        ["data.batch_size=512", "model.mlp.hidden_units=[32,32]"]
        if model not in ("lr", "fm", "ffm")
        else ["data.batch_size=512"],
    )
    result = check.compare_steps(model, cfg, check.datamodule(cfg), "tiny", steps=8, seed=0, workdir=tmp_path)
    assert result.first_prediction_gap < 1e-6
    assert result.max_relative_gap_64 < 1e-12
    assert result.ours_64[-1] < result.ours_64[0]  # it trained


# FuxiCTR takes its loss on sigmoid probabilities, which round to exactly 0 or 1 beyond |logit| ~ 37 in
# float64 (its log then clamped at -100, its gradient 0) and keep few digits of 1 - p well before that;
# DSSM's inner products start that large, and AFN's first Adam step overshoots to such logits
SATURATING = {"dssm", "afn", "afn_plus"}
SATURATED = pytest.mark.xfail(strict=True, reason="FuxiCTR's loss of saturated probabilities (see above)")
KNOWN_DIFFERENCES = dict.fromkeys(SATURATING, SATURATED)


@pytest.mark.slow
@pytest.mark.skipif(not ZOO, reason="set FUXICTR_ZOO to the model_zoo folder of a checkout of FuxiCTR")
@pytest.mark.parametrize(
    "model",
    [pytest.param(m, marks=KNOWN_DIFFERENCES[m]) if m in KNOWN_DIFFERENCES else m for m in sorted(zoo_models())],
)
def test_newer_models_take_the_zoos_steps_in_float64(model, files, tmp_path):
    """At the Frappe_x1 preset's own sizes, from the zoo model's weights."""
    cfg = check.preset_config("bars_frappe_x1", model, files["libfm"], tmp_path / "cache", ["data.batch_size=512"])
    result = check.compare_steps(model, cfg, check.datamodule(cfg), "tiny", 6, 0, tmp_path, Path(ZOO))
    assert result.first_prediction_gap < 1e-6
    assert result.max_relative_gap_64 < 1e-12
    assert result.ours_64[-1] < result.ours_64[0]


@pytest.mark.slow
@pytest.mark.skipif(not ZOO, reason="set FUXICTR_ZOO to the model_zoo folder of a checkout of FuxiCTR")
@pytest.mark.parametrize("model", sorted(SATURATING))
def test_saturating_models_take_the_zoos_steps_with_its_loss_on_logits(model, files, tmp_path, monkeypatch):
    """The same steps once FuxiCTR's loss is the cross-entropy of its logits, as ours: the models agree."""
    build = check.build_reference

    def on_logits(*args, **kwargs):
        reference = build(*args, **kwargs)
        reference.output_activation = torch.nn.Identity()
        reference.loss_fn = lambda logits, labels, reduction="mean": F.binary_cross_entropy_with_logits(
            logits, labels, reduction=reduction
        )
        return reference

    monkeypatch.setattr(check, "build_reference", on_logits)
    cfg = check.preset_config("bars_frappe_x1", model, files["libfm"], tmp_path / "cache", ["data.batch_size=512"])
    # AFN's first steps overshoot (its loss rises before it falls): steps enough to see it train
    dm = check.datamodule(cfg)
    result = check.compare_steps(model, cfg, dm, "tiny", 16, 0, tmp_path, Path(ZOO), floor_64=True)
    assert result.ours_64[-1] < result.ours_64[0]
    gaps = [abs(ours - theirs) / theirs for ours, theirs in zip(result.ours_64, result.theirs_64)]
    floor = [abs(twin - theirs) / theirs for twin, theirs in zip(result.floor_64, result.theirs_64)]
    assert max(gaps[:3]) < 1e-13  # the first steps: rounding
    # then AFN's exponentials amplify rounding in either library: FuxiCTR against itself (the same batches,
    # rows reordered: the same sums in another order) grows alike, so later steps are held to the report's bar
    if model in ("afn", "afn_plus"):
        assert max(floor[-8:]) > 10 * max(floor[:3])
    assert max(gaps) < check.STEP_TOLERANCE


def test_fuxictr_preprocessing_gives_our_ids(files, tmp_path):
    cfg = check.preset_config("bars_frappe_x1", "deepfm", files["libfm"], tmp_path / "cache")
    sizes, encoded = check.fuxictr_encoding(
        FeatureProcessor,
        [{"name": list(FIELDS), "active": True, "dtype": "float", "type": "categorical"}],
        {"name": "label", "dtype": "float"},
        files["csv"],
        1,
    )
    result = check.compare_preprocessing("tiny", check.datamodule(cfg), sizes, encoded, 1)
    assert result.total_ids == 3000 * 10 and result.mismatched_ids == 0 and result.vocab_sizes_equal


def test_a_resumed_check_keeps_what_was_measured_and_runs_only_the_rest(files, tmp_path, monkeypatch):
    from experiments.reference import __main__ as reference

    calls = []

    def fake_steps(name, *args, **kwargs):
        calls.append(name)
        return check.StepComparison("frappe_like", name, 1, 512, 0.0, [0.5], [0.5], [0.5], [0.5], [0.5])

    monkeypatch.setattr(reference, "write_frappe_like", lambda folder, rows: files)
    monkeypatch.setattr(check, "compare_steps", fake_steps)
    argv = ["--parts", "steps", "--models", "lr,fm", "--out", str(tmp_path / "out"), "--workdir", str(tmp_path)]
    assert reference.main(argv) == 0 and calls == ["lr", "fm"]
    assert reference.main([*argv[:3], "lr,fm,dnn", *argv[4:], "--resume"]) == 0
    assert calls == ["lr", "fm", "dnn"]
    saved = reference.Outcome.from_json(json.loads((tmp_path / "out" / "reference.json").read_text()))
    assert [s.model for s in saved.steps] == ["lr", "fm", "dnn"] and "--resume" in saved.command


def test_the_report_gives_the_known_cause_of_a_missed_bar_and_only_there():
    from experiments.reference.report import Outcome, steps_lines

    def steps(model: str, gap: float) -> check.StepComparison:
        losses = [0.69, 0.6]
        return check.StepComparison(
            "frappe_like", model, 2, 8, 0.0, losses, losses, losses, losses, [0.69, 0.6 * (1 + gap)]
        )

    lines, passed = steps_lines(Outcome("", {}, steps=[steps("fm", 1e-16), steps("dssm", 0.49)]), 1e-9)
    text = "\n".join(lines)
    assert not passed
    assert "| dssm |" in text and "| **NO** (below) |" in text and text.count("(below)") == 1
    assert "- dssm: FuxiCTR takes its loss on sigmoid probabilities" in text
    lines, passed = steps_lines(Outcome("", {}, steps=[steps("dssm", 1e-12)]), 1e-9)
    assert passed and "known reason" not in "\n".join(lines)
