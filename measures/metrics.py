"""Exact AUC, LogLoss and calibration over a whole split, in numpy: the one copy of their math, for
the runs (through ``models.metrics``, which takes tensors) and for the reports, which need no torch."""

from __future__ import annotations

import numpy as np


def _as_float64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _labels_and_scores(y, p) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = _as_float64(y), _as_float64(p)
    if labels.shape != scores.shape:
        raise ValueError(f"y has {labels.size} values but p has {scores.size}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return labels, scores


def auc(y, p) -> float:
    """Area under the ROC curve of scores ``p`` for labels ``y`` (``[N]`` each), exactly.

    Mann-Whitney: the probability that a random positive scores above a random negative, ties
    counting one half, computed from average ranks in O(N log N). NaN when a class is absent.
    """
    labels, scores = _labels_and_scores(y, p)
    positives = labels.sum()
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts_group = np.empty(sorted_scores.size, dtype=bool)
    starts_group[0] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=starts_group[1:])
    group_starts = np.flatnonzero(starts_group)
    group_ends = np.append(group_starts[1:], sorted_scores.size)
    # 1-based ranks start+1 .. end share their mean
    mean_rank = (group_starts + group_ends + 1) / 2.0
    ranks = mean_rank[np.cumsum(starts_group) - 1]
    positive_rank_sum = ranks[labels[order] == 1.0].sum()
    return float((positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def logloss(y, p, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of probabilities ``p`` for labels ``y`` (``[N]`` each).

    ``p`` is clipped to ``[eps, 1 - eps]`` so a confident mistake costs ``-log(eps)``, not inf.
    """
    labels, probabilities = _labels_and_scores(y, p)
    if labels.size == 0:
        return float("nan")
    clipped = np.clip(probabilities, eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(clipped) + (1.0 - labels) * np.log1p(-clipped)))


CALIBRATION_BINS = 20


def calibration_bins(y, p, bins: int = CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-mass bins of the predictions (rows sorted by ``p``, cut into ``bins`` groups of equal
    size, the last ones one row shorter): ``(mean predicted [B], observed click rate [B], rows [B])``."""
    labels, probabilities = _labels_and_scores(y, p)
    order = np.argsort(probabilities, kind="stable")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    return (
        np.array([probabilities[g].mean() for g in groups]),
        np.array([labels[g].mean() for g in groups]),
        np.array([len(g) for g in groups]),
    )


def expected_calibration_error(y, p, bins: int = CALIBRATION_BINS) -> float:
    """ECE: ``sum_b rows_b / N * |mean predicted_b - observed rate_b|`` over ``bins`` equal-mass bins
    (equal mass, not equal width: CTR predictions crowd near 0, where equal-width bins sit empty)."""
    predicted, observed, rows = calibration_bins(y, p, bins)
    return float((rows * np.abs(predicted - observed)).sum() / rows.sum())
