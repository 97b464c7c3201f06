"""Which differences are real, and how well calibrated the predictions are.

- ``delong``: the AUCs of several predictors of the same rows and their covariance matrix
  (DeLong, DeLong & Clarke-Pearson 1988), computed with the midrank algorithm of Sun & Xu (2014):
  O(K n log n) for K predictors of n rows (a few seconds for 4.5M test rows), no n^2 pair matrix.
- ``compare_auc`` / ``compare_logloss``: a model against the best one, both run with several
  seeds on the same test rows. The statistic is the difference of seed-averaged scores; its
  variance adds the two sources a rerun would change: the test rows (DeLong's covariance for AUC;
  the per-row variance of the paired LogLoss differences for LogLoss) and training (the variance
  of each model's scores across seeds, over the number of seeds). Two-sided normal p-value.
- ``all_pairs_auc``: the same test for every pair of models, for the groups a board cannot tell apart.
- ``holm``: Holm's step-down adjustment of p-values for the number of comparisons.
- ``expected_calibration_error``, ``calibration_bins``: ECE over equal-mass bins of the predicted
  probabilities (``measures.metrics``, which runs compute at test time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from measures.metrics import CALIBRATION_BINS, calibration_bins, expected_calibration_error  # noqa: F401

Z_95 = 1.959963984540054


def _midranks(values: np.ndarray) -> np.ndarray:
    """``[K, m]`` -> ranks 1..m per row, ties given their mean rank."""
    order = np.argsort(values, axis=1, kind="mergesort")
    ranks = np.empty(values.shape, dtype=np.float64)
    for k in range(values.shape[0]):  # K predictors: a loop over models, never over rows
        sorted_values = values[k, order[k]]
        first = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
        starts = np.flatnonzero(first)
        ends = np.append(starts[1:], len(sorted_values))
        mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (0-based), 1-based mean
        ranks[k, order[k]] = np.repeat(mean_rank, ends - starts)
    return ranks


@dataclass
class DeLong:
    """``auc``: ``[K]``; ``covariance``: ``[K, K]`` of the AUC estimates (test-row sampling)."""

    auc: np.ndarray
    covariance: np.ndarray


def delong(labels: np.ndarray, scores: Sequence[np.ndarray]) -> DeLong:
    """AUCs and their DeLong covariance for ``K`` score vectors ``[n]`` of the same 0/1 ``labels``."""
    labels = np.asarray(labels)
    positive = labels == 1
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("DeLong needs positive and negative rows")
    values = np.asarray([np.asarray(s, dtype=np.float64) for s in scores])
    x, y = values[:, positive], values[:, ~positive]
    rank_x, rank_y = _midranks(x), _midranks(y)
    rank_all = _midranks(np.concatenate([x, y], axis=1))
    auc = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (rank_all[:, :m] - rank_x) / n  # per positive: share of negatives it beats
    v01 = 1.0 - (rank_all[:, m:] - rank_y) / m  # per negative: share of positives beating it
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return DeLong(auc, s10 / m + s01 / n)


@dataclass
class Comparison:
    """A model against the best: ``difference`` = model − best (seed means), its standard error,
    the two-sided p-value, and the model's own 95% confidence interval."""

    difference: float
    standard_error: float
    p_value: float


def _p_value(difference: float, variance: float) -> float:
    if variance <= 0:
        return 1.0 if difference == 0 else 0.0
    return math.erfc(abs(difference) / math.sqrt(2 * variance))


def seed_variance(values: Sequence[float]) -> float:
    """The variance of a seed mean from the spread across seeds (0 with one seed)."""
    values = list(values)
    return float(np.var(values, ddof=1)) / len(values) if len(values) > 1 else 0.0


def auc_interval(labels: np.ndarray, seed_scores: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """``(mean AUC over seeds, low, high)``: 95% interval from the test rows and the seeds."""
    result = delong(labels, seed_scores)
    k = len(seed_scores)
    weights = np.full(k, 1.0 / k)
    variance = float(weights @ result.covariance @ weights) + seed_variance(result.auc)
    mean = float(result.auc.mean())
    half = Z_95 * math.sqrt(max(variance, 0.0))
    return mean, mean - half, mean + half


def compare_auc(
    labels: np.ndarray, model_scores: Sequence[np.ndarray], best_scores: Sequence[np.ndarray]
) -> Comparison:
    """Seed-averaged AUC of a model minus the best's, on the same rows (see the module docstring)."""
    result = delong(labels, [*model_scores, *best_scores])
    k_model = len(model_scores)
    return _auc_contrast(result, range(k_model), range(k_model, k_model + len(best_scores)))


def _auc_contrast(result: DeLong, model: range, other: range) -> Comparison:
    """The seed-mean AUC of the score vectors ``model`` minus that of ``other`` (indices into one
    DeLong result), with the test rows' covariance and each side's spread across seeds."""
    contrast = np.zeros(len(result.auc))
    contrast[list(model)] = 1.0 / len(model)
    contrast[list(other)] = -1.0 / len(other)
    variance = float(contrast @ result.covariance @ contrast)
    variance += seed_variance(result.auc[list(model)]) + seed_variance(result.auc[list(other)])
    difference = float(contrast @ result.auc)
    return Comparison(difference, math.sqrt(max(variance, 0.0)), _p_value(difference, variance))


def all_pairs_auc(
    labels: np.ndarray, seed_scores: dict[str, Sequence[np.ndarray]]
) -> list[tuple[str, str, Comparison]]:
    """Every pair ``(a, b)`` of the models of ``seed_scores`` (model -> its seeds' scores of the same
    rows), ``a`` before ``b`` in the given order, with the seed-mean AUC of ``a`` minus ``b``'s:
    one DeLong covariance over all score vectors, so each pair is tested as ``compare_auc`` would."""
    names = list(seed_scores)
    result = delong(labels, [s for name in names for s in seed_scores[name]])
    spans, start = {}, 0
    for name in names:
        spans[name] = range(start, start + len(seed_scores[name]))
        start += len(seed_scores[name])
    return [(a, b, _auc_contrast(result, spans[a], spans[b])) for i, a in enumerate(names) for b in names[i + 1 :]]


def row_logloss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def compare_logloss(
    labels: np.ndarray, model_probabilities: Sequence[np.ndarray], best_probabilities: Sequence[np.ndarray]
) -> Comparison:
    """Seed-averaged LogLoss of a model minus the best's: paired over rows, plus the seeds' spread."""
    labels = np.asarray(labels, dtype=np.float64)
    model_losses = np.array([row_logloss(labels, p) for p in model_probabilities])
    best_losses = np.array([row_logloss(labels, p) for p in best_probabilities])
    paired = model_losses.mean(axis=0) - best_losses.mean(axis=0)
    variance = float(paired.var(ddof=1)) / len(paired)
    variance += seed_variance(model_losses.mean(axis=1)) + seed_variance(best_losses.mean(axis=1))
    difference = float(paired.mean())
    return Comparison(difference, math.sqrt(max(variance, 0.0)), _p_value(difference, variance))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): the family-wise error stays at
    the level for any dependence between the tests."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted
