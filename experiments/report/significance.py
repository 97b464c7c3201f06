"""Which models' differences from the best are real: each model's 95% AUC interval and Holm-adjusted
p-values against the best model, from the saved test predictions (the tests themselves: ``stats``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.report import stats
from experiments.report.collect import TEST_AUC, TEST_LOGLOSS
from experiments.report.predictions import SavedPredictions, shared_labels

SIGNIFICANCE_LEVEL = 0.05


def significance(runs: pd.DataFrame, predictions: SavedPredictions) -> pd.DataFrame:
    """Per model (label): the 95% interval of its seed-mean test AUC, and Holm-adjusted p-values
    of its AUC and LogLoss against the best model's (``stats``), from the saved test predictions
    of every run; empty where a model of the dataset saved none or the runs scored different rows."""
    columns = ["auc_ci_low", "auc_ci_high", "p_auc", "p_logloss", "not_worse_auc", "not_worse_logloss"]
    if not predictions or set(predictions) != set(runs["label"].astype(str)):
        return pd.DataFrame(columns=columns)
    labels = shared_labels(*predictions.values())
    if labels is None:
        return pd.DataFrame(columns=columns)  # different test rows: no paired test
    scores = {label: [p for p, _ in seeds] for label, seeds in predictions.items()}
    means = runs.groupby("label")[[TEST_AUC, TEST_LOGLOSS]].mean()
    best_auc, best_logloss = means[TEST_AUC].idxmax(), means[TEST_LOGLOSS].idxmin()
    out = pd.DataFrame(index=pd.Index(list(scores), name="label"), columns=columns, dtype=float)
    for label, seeds in scores.items():
        _, out.loc[label, "auc_ci_low"], out.loc[label, "auc_ci_high"] = stats.auc_interval(labels, seeds)
    for metric, best, compare in (
        ("auc", best_auc, stats.compare_auc),
        ("logloss", best_logloss, stats.compare_logloss),
    ):
        others = [label for label in scores if label != best]
        raw = [compare(labels, scores[label], scores[best]).p_value for label in others]
        adjusted = stats.holm(raw) if raw else []
        out.loc[best, f"p_{metric}"] = np.nan
        out.loc[others, f"p_{metric}"] = adjusted
        out[f"not_worse_{metric}"] = out[f"p_{metric}"].isna() | (out[f"p_{metric}"] >= SIGNIFICANCE_LEVEL)
    return out
