"""One dataset's runs -> the paper's Table 2 layout: ``build_table`` computes every number once into
one frame (mean and sample standard deviation over seeds; the 95% interval of AUC and the
Holm-adjusted p-values against the best model, from the runs' saved test predictions
(``significance``); calibration; reference and difference; DeepFM's relative improvement; the cost
of each model; on synthetic data the ceilings and each model's share of its ceiling's lift).
``render`` formats it as table.md, table.csv and table.tex: a quality table, then a cost table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from experiments.report.collect import ORACLE_AUC, ORACLE_LOGLOSS, TEST_AUC, TEST_LOGLOSS, VAL_AUC
from experiments.report.naming import (
    CEILING_LABELS,
    DEEPFM_LABEL,
    MODEL_LABELS,
    ORACLE_LABEL,
    family_of,
    label_sort_key,
)
from experiments.report.predictions import SavedPredictions, saved_predictions
from experiments.report.references import Reference
from experiments.report.significance import significance

ORACLE_KEY = "oracle"
CEILING_KEY = "ceiling"
# metrics.json key -> table column: each run's cost, averaged over seeds
COST = {
    "num_params": "params",
    "train_seconds_per_epoch": "seconds_per_epoch",
    "epochs_to_best": "epochs_to_best",
    "train_samples_per_s": "train_samples_per_s",
    "inference_samples_per_s": "inference_samples_per_s",
    "one_row_p99_ms": "one_row_p99_ms",
    "peak_rss_mib": "peak_rss_mib",
}
CALIBRATION = {"test/ece": "ece", "test/mean_prediction": "mean_prediction", "test/click_rate": "click_rate"}
_KEY_OF_LABEL = {label: key for key, label in MODEL_LABELS.items()}
_METRICS = {"auc": True, "logloss": False}  # metric -> higher is better


@dataclass
class DatasetTable:
    """``rows``: one row per model in paper order, the oracle last; the columns of table.csv."""

    dataset: str
    rows: pd.DataFrame
    reference: Optional[Reference]
    notes: list[str] = field(default_factory=list)

    @property
    def has_oracle(self) -> bool:
        return bool((self.rows["model"] == ORACLE_KEY).any())

    @property
    def has_ceilings(self) -> bool:
        return bool((self.rows["model"] == CEILING_KEY).any())

    @property
    def has_significance(self) -> bool:
        return "auc_ci_low" in self.rows and self.rows["auc_ci_low"].notna().any()

    @property
    def truncated(self) -> list[str]:
        return [str(label) for label, value in zip(self.rows["label"], self.rows.get("truncated", [])) if value]

    @property
    def still_improving(self) -> list[str]:
        """The models some of whose runs ended on their best epoch (more epochs might have scored higher)."""
        counts = self.rows.get("still_improving", pd.Series(0, index=self.rows.index))
        return [str(label) for label, count in zip(self.rows["label"], counts) if count]

    @property
    def models(self) -> pd.DataFrame:
        """The rows of models (not the oracle or ceilings)."""
        return self.rows[~self.rows["model"].isin([ORACLE_KEY, CEILING_KEY])]


def _relative_improvement_of_deepfm(
    auc: pd.Series, logloss: pd.Series, labels: pd.Index
) -> tuple[pd.Series, pd.Series]:
    """The paper's: AUC (auc_DeepFM - auc_m) / auc_m, LogLoss (ll_m - ll_DeepFM) / ll_m, in %."""
    if DEEPFM_LABEL not in labels or pd.isna(auc.get(DEEPFM_LABEL)):
        nan = pd.Series(np.nan, index=labels)
        return nan, nan.copy()
    return (100.0 * (auc[DEEPFM_LABEL] - auc) / auc, 100.0 * (logloss - logloss[DEEPFM_LABEL]) / logloss)


def _best_flags(values: pd.Series, higher_is_better: bool) -> pd.Series:
    best = values.max() if higher_is_better else values.min()
    return values.eq(best) & values.notna()


def build_table(
    runs: pd.DataFrame,
    reference: Optional[Reference] = None,
    notes: Optional[list[str]] = None,
    predictions: Optional[SavedPredictions] = None,
) -> DatasetTable:
    """Runs of one dataset (one configuration per model, see ``collect.select_configurations``)
    -> ``DatasetTable``. Models of the reference that were not run get a row with its numbers.
    ``predictions``: the runs' ``saved_predictions`` where the caller has read them already."""
    datasets = runs["dataset"].unique()
    if len(datasets) != 1:
        raise ValueError(f"build_table wants the runs of one dataset, got {list(datasets)}")
    rows = _model_rows(runs).join(significance(runs, saved_predictions(runs) if predictions is None else predictions))
    if reference is not None:
        rows = _with_reference(rows, reference)
    rows = rows.loc[sorted(rows.index, key=label_sort_key)]
    rows.index.name = "label"
    _add_comparisons(rows, reference)
    oracle = _oracle_row(runs)
    if oracle is not None:
        rows = pd.concat([rows, oracle, *_ceiling_rows(runs)])
        rows = _shares_of_lift(rows)
    _settle_types(rows)
    return DatasetTable(dataset=str(datasets[0]), rows=rows.reset_index(), reference=reference, notes=list(notes or []))


def _model_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model (label): its seeds, the means and spreads over them, its configuration and
    why its runs were truncated, if they were."""
    by_model = runs.groupby("label", sort=False)
    optional = {
        col: by_model[col].mean() for col in (VAL_AUC, "val/logloss", "train_time_s", "num_params") if col in runs
    }
    return pd.DataFrame(
        {
            "model": by_model["model"].first(),
            "seeds": by_model["seed"].nunique(),
            "seed_list": by_model["seed"].agg(lambda seeds: " ".join(map(str, sorted(seeds)))),
            "auc_mean": by_model[TEST_AUC].mean(),
            "auc_std": by_model[TEST_AUC].std(ddof=1),
            "logloss_mean": by_model[TEST_LOGLOSS].mean(),
            "logloss_std": by_model[TEST_LOGLOSS].std(ddof=1),
            **{f"{col.replace('/', '_')}_mean": values for col, values in optional.items()},
            **{name: by_model[key].mean() for key, name in {**CALIBRATION, **COST}.items() if key in runs},
            "configuration": by_model["configuration"].first(),
            "still_improving": by_model["still_improving"].agg(lambda v: int(v.fillna(False).astype(bool).sum()))
            if "still_improving" in runs
            else 0,
            "truncated": by_model["truncated"].agg(
                lambda t: "; ".join(sorted({str(v) for v in t if isinstance(v, str)}))
            )
            if "truncated" in runs
            else "",
        }
    )


def _with_reference(rows: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """``rows`` and a row for each model only the reference has; the reference's numbers beside ours
    and the differences."""
    reference_only = reference.scores.index.difference(rows.index)
    if len(reference_only):
        rows = pd.concat(
            [
                rows,
                pd.DataFrame(
                    {"model": [_KEY_OF_LABEL.get(label, label) for label in reference_only], "seeds": 0},
                    index=reference_only,
                ),
            ]
        )
    for metric in _METRICS:
        rows[f"ref_{metric}"] = reference.scores[metric].reindex(rows.index)
        rows[f"diff_{metric}"] = rows[f"{metric}_mean"] - rows[f"ref_{metric}"]
    return rows


def _add_comparisons(rows: pd.DataFrame, reference: Optional[Reference]) -> None:
    """DeepFM's relative improvements and the best flags, ours and the reference's, as columns of
    ``rows`` (the models' rows: the oracle and ceilings are not compared)."""
    improvement = _relative_improvement_of_deepfm(rows["auc_mean"], rows["logloss_mean"], rows.index)
    rows["deepfm_rel_impr_auc_pct"], rows["deepfm_rel_impr_logloss_pct"] = improvement
    if reference is not None:
        improvement = _relative_improvement_of_deepfm(rows["ref_auc"], rows["ref_logloss"], rows.index)
        rows["ref_deepfm_rel_impr_auc_pct"], rows["ref_deepfm_rel_impr_logloss_pct"] = improvement
    for metric, higher_is_better in _METRICS.items():
        rows[f"best_{metric}"] = _best_flags(rows[f"{metric}_mean"], higher_is_better)
        if reference is not None:
            rows[f"ref_best_{metric}"] = _best_flags(rows[f"ref_{metric}"], higher_is_better)


def _settle_types(rows: pd.DataFrame) -> None:
    """The column types table.csv is written with, once the oracle's and ceilings' rows left gaps: whole
    seed counts, no missing text, flags that are False where they were not set."""
    rows["seeds"] = rows["seeds"].astype("Int64")
    rows["truncated"] = rows["truncated"].fillna("")
    rows["still_improving"] = rows["still_improving"].fillna(0).astype(int)
    for flag in [c for c in rows if c.startswith(("best_", "ref_best_", "not_worse_"))]:
        rows[flag] = rows[flag].fillna(False).astype(bool)


def _oracle_row(runs: pd.DataFrame) -> Optional[pd.DataFrame]:
    """The true probabilities' AUC/LogLoss, from the runs that report them. Every run of a
    dataset sees the same test split, so the spread is zero unless data settings differed."""
    if ORACLE_AUC not in runs or ORACLE_LOGLOSS not in runs:
        return None
    oracle = runs[[ORACLE_AUC, ORACLE_LOGLOSS]].dropna()
    if oracle.empty:
        return None
    spread = oracle.std(ddof=1).where(lambda std: std > 1e-9)  # rounding-level spread: a single value
    return pd.DataFrame(
        {
            "model": ORACLE_KEY,
            "seeds": pd.NA,
            "auc_mean": oracle[ORACLE_AUC].mean(),
            "auc_std": spread[ORACLE_AUC],
            "logloss_mean": oracle[ORACLE_LOGLOSS].mean(),
            "logloss_std": spread[ORACLE_LOGLOSS],
        },
        index=pd.Index([ORACLE_LABEL], name="label"),
    )


def _ceiling_rows(runs: pd.DataFrame) -> list[pd.DataFrame]:
    """One row per ceiling the runs report (``ceiling/<family>/test/...``: synthetic data)."""
    out = []
    for family, label in CEILING_LABELS.items():
        columns = [f"ceiling/{family}/test/auc", f"ceiling/{family}/test/logloss"]
        if not all(c in runs for c in columns):
            continue
        values = runs[columns].dropna()
        if values.empty:
            continue
        out.append(
            pd.DataFrame(
                {
                    "model": CEILING_KEY,
                    "family": family,
                    "seeds": pd.NA,
                    "auc_mean": values[columns[0]].mean(),
                    "logloss_mean": values[columns[1]].mean(),
                },
                index=pd.Index([label], name="label"),
            )
        )
    return out


def _shares_of_lift(rows: pd.DataFrame) -> pd.DataFrame:
    """Each model's (AUC - 0.5) over its family's ceiling's, and over the oracle's."""
    rows = rows.copy()
    oracle = rows.loc[rows["model"] == ORACLE_KEY, "auc_mean"].iloc[0]
    ceilings = {row.family: row.auc_mean for row in rows[rows["model"] == CEILING_KEY].itertuples()}
    is_model = ~rows["model"].isin([ORACLE_KEY, CEILING_KEY])
    rows["ceiling"] = rows["model"].map(lambda key: family_of(str(key))).where(is_model)
    ceilings["full"] = oracle  # a deep model's ceiling; a family without its ceiling's numbers gets none
    ceiling_auc = rows["ceiling"].map(lambda family: ceilings.get(family, np.nan))
    rows["share_of_ceiling"] = ((rows["auc_mean"] - 0.5) / (ceiling_auc - 0.5)).where(is_model)
    rows["share_of_oracle"] = ((rows["auc_mean"] - 0.5) / (oracle - 0.5)).where(is_model)
    return rows
