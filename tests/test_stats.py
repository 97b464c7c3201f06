"""The report's statistics on hand-made predictions: DeLong against its O(n^2) definition, the
coverage of its intervals where the answer is known, Holm's adjustment, calibration error."""

import math

import numpy as np
import pytest

from experiments.report import stats


def brute_force_delong(labels, scores):
    """DeLong's structural components by their definition: every positive against every negative."""
    labels = np.asarray(labels)
    x = [np.asarray(s)[labels == 1] for s in scores]
    y = [np.asarray(s)[labels == 0] for s in scores]
    m, n = len(x[0]), len(y[0])
    psi = [(a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :]) for a, b in zip(x, y)]  # [m, n] each
    auc = np.array([p.mean() for p in psi])
    v10 = np.array([p.mean(axis=1) for p in psi])  # per positive
    v01 = np.array([p.mean(axis=0) for p in psi])  # per negative
    return auc, np.cov(v10) / m + np.cov(v01) / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_its_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = [np.round(rng.normal(labels * shift, 1.0), 1) for shift in (0.5, 1.0, 0.0)]  # rounded: many ties
    expected_auc, expected_cov = brute_force_delong(labels, scores)
    result = stats.delong(labels, scores)
    np.testing.assert_allclose(result.auc, expected_auc, atol=1e-12)
    np.testing.assert_allclose(result.covariance, expected_cov, atol=1e-12)


def test_delong_is_fast_on_millions_of_rows():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2_000_000)
    scores = [rng.normal(labels * 0.5, 1.0).astype(np.float32) for _ in range(2)]
    result = stats.delong(labels, scores)
    expected = 0.5 * math.erfc(-0.5 / 2)  # AUC of N(0.5, 1) against N(0, 1): Phi(0.5 / sqrt(2))
    assert result.auc == pytest.approx([expected, expected], abs=2e-3)


def test_delong_intervals_cover_the_true_auc_about_95_percent_of_the_time():
    true_auc = 0.5 * math.erfc(-0.8 / 2)  # binormal scores: N(0.8, 1) for positives, N(0, 1) for negatives
    rng = np.random.default_rng(1)
    covered = 0
    trials = 400
    for _ in range(trials):
        labels = rng.integers(0, 2, 400)
        score = rng.normal(labels * 0.8, 1.0)
        mean, low, high = stats.auc_interval(labels, [score])
        covered += low <= true_auc <= high
    assert 0.92 <= covered / trials <= 0.98


def test_a_model_no_better_than_the_best_is_rarely_significant_and_a_worse_one_is():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 20_000)
    signal = rng.normal(labels * 1.0, 1.0)

    def noisy(level, seed):
        return signal + np.random.default_rng(seed).normal(0, level, len(labels))

    same = stats.compare_auc(labels, [noisy(0.3, s) for s in range(3)], [noisy(0.3, 10 + s) for s in range(3)])
    worse = stats.compare_auc(labels, [noisy(0.8, s) for s in range(3)], [noisy(0.3, 10 + s) for s in range(3)])
    assert same.p_value > 0.01 and worse.p_value < 1e-6 and worse.difference < 0
    probabilities = lambda score: 1 / (1 + np.exp(-score))  # noqa: E731
    loss = stats.compare_logloss(
        labels, [probabilities(noisy(0.8, s)) for s in range(3)], [probabilities(noisy(0.3, 10 + s)) for s in range(3)]
    )
    assert loss.difference > 0 and loss.p_value < 1e-6


def test_holm_multiplies_the_smallest_by_the_count_and_keeps_the_order():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(adjusted, [0.04, 0.09, 0.09, 0.5])  # 4*0.01; max(3*0.03, .04); max(2*0.04, .09)
    assert stats.holm([0.6, 0.9]).tolist() == [1.0, 1.0]


def test_calibration_error_of_calibrated_and_of_shifted_predictions():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.6, 400_000)
    labels = (rng.random(len(p)) < p).astype(float)
    assert stats.expected_calibration_error(labels, p) < 0.003
    assert stats.expected_calibration_error(labels, np.clip(p + 0.05, 0, 1)) == pytest.approx(0.05, abs=0.004)
    predicted, observed, rows = stats.calibration_bins(labels, p, bins=10)
    assert rows.sum() == len(p) and (np.diff(predicted) > 0).all()
    np.testing.assert_allclose(predicted, observed, atol=0.01)
