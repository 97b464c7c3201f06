"""One dataset's runs -> the paper's Table 2 layout, written as table.md, table.csv and table.tex.

``build_table`` computes every number once into one frame (mean and sample standard deviation
over seeds; the 95% interval of AUC and the Holm-adjusted p-values against the best model, from
the runs' saved test predictions (``stats``); calibration; reference and difference; DeepFM's
relative improvement; the cost of each model; on synthetic data the ceilings and each model's
share of its ceiling's lift); the three writers only format it: a quality table, then a cost table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from experiments.report import stats
from experiments.report.collect import ORACLE_AUC, ORACLE_LOGLOSS, TEST_AUC, TEST_LOGLOSS, VAL_AUC
from experiments.report.naming import (CEILING_LABELS, DEEPFM_LABEL, MODEL_LABELS, ORACLE_LABEL, family_of,
                                       label_sort_key)
from experiments.report.references import Reference

ORACLE_KEY = "oracle"
CEILING_KEY = "ceiling"
PREDICTIONS = ("predictions/test_p.npy", "predictions/test_y.npy")  # what each run saves (experiments.run)
SIGNIFICANCE_LEVEL = 0.05
# metrics.json key -> table column: each run's cost, averaged over seeds
COST = {"num_params": "params", "train_seconds_per_epoch": "seconds_per_epoch", "epochs_to_best": "epochs_to_best",
        "train_samples_per_s": "train_samples_per_s", "inference_samples_per_s": "inference_samples_per_s",
        "peak_rss_mib": "peak_rss_mib"}
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
    def models(self) -> pd.DataFrame:
        """The rows of models (not the oracle or ceilings)."""
        return self.rows[~self.rows["model"].isin([ORACLE_KEY, CEILING_KEY])]


def _relative_improvement_of_deepfm(auc: pd.Series, logloss: pd.Series,
                                   labels: pd.Index) -> tuple[pd.Series, pd.Series]:
    """The paper's: AUC (auc_DeepFM - auc_m) / auc_m, LogLoss (ll_m - ll_DeepFM) / ll_m, in %."""
    if DEEPFM_LABEL not in labels or pd.isna(auc.get(DEEPFM_LABEL)):
        nan = pd.Series(np.nan, index=labels)
        return nan, nan.copy()
    return (100.0 * (auc[DEEPFM_LABEL] - auc) / auc,
            100.0 * (logloss - logloss[DEEPFM_LABEL]) / logloss)


def _best_flags(values: pd.Series, higher_is_better: bool) -> pd.Series:
    best = values.max() if higher_is_better else values.min()
    return values.eq(best) & values.notna()


def build_table(runs: pd.DataFrame, reference: Optional[Reference] = None, notes: Optional[list[str]] = None,
                predictions: Optional["SavedPredictions"] = None) -> DatasetTable:
    """Runs of one dataset (one configuration per model, see ``collect.select_configurations``)
    -> ``DatasetTable``. Models of the reference that were not run get a row with its numbers.
    ``predictions``: the runs' ``saved_predictions`` where the caller has read them already."""
    datasets = runs["dataset"].unique()
    if len(datasets) != 1:
        raise ValueError(f"build_table wants the runs of one dataset, got {list(datasets)}")
    by_model = runs.groupby("label", sort=False)
    optional = {col: by_model[col].mean() for col in (VAL_AUC, "val/logloss", "train_time_s", "num_params")
                if col in runs}
    rows = pd.DataFrame({
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
        "truncated": by_model["truncated"].agg(lambda t: "; ".join(sorted({str(v) for v in t if isinstance(v, str)})))
        if "truncated" in runs else "",
    })
    rows = rows.join(significance(runs, saved_predictions(runs) if predictions is None else predictions))
    if reference is not None:
        reference_only = reference.scores.index.difference(rows.index)
        if len(reference_only):
            rows = pd.concat([rows, pd.DataFrame({
                "model": [_KEY_OF_LABEL.get(label, label) for label in reference_only],
                "seeds": 0}, index=reference_only)])
        for metric in _METRICS:
            rows[f"ref_{metric}"] = reference.scores[metric].reindex(rows.index)
            rows[f"diff_{metric}"] = rows[f"{metric}_mean"] - rows[f"ref_{metric}"]
    rows = rows.loc[sorted(rows.index, key=label_sort_key)]
    rows.index.name = "label"

    improvement = _relative_improvement_of_deepfm(rows["auc_mean"], rows["logloss_mean"], rows.index)
    rows["deepfm_rel_impr_auc_pct"], rows["deepfm_rel_impr_logloss_pct"] = improvement
    if reference is not None:
        improvement = _relative_improvement_of_deepfm(rows["ref_auc"], rows["ref_logloss"], rows.index)
        rows["ref_deepfm_rel_impr_auc_pct"], rows["ref_deepfm_rel_impr_logloss_pct"] = improvement
    for metric, higher_is_better in _METRICS.items():
        rows[f"best_{metric}"] = _best_flags(rows[f"{metric}_mean"], higher_is_better)
        if reference is not None:
            rows[f"ref_best_{metric}"] = _best_flags(rows[f"ref_{metric}"], higher_is_better)

    oracle = _oracle_row(runs)
    if oracle is not None:
        rows = pd.concat([rows, oracle, *_ceiling_rows(runs)])
        rows = _shares_of_lift(rows)
    rows["seeds"] = rows["seeds"].astype("Int64")
    rows["truncated"] = rows["truncated"].fillna("")
    for flag in [c for c in rows if c.startswith(("best_", "ref_best_", "not_worse_"))]:
        rows[flag] = rows[flag].fillna(False).astype(bool)
    return DatasetTable(dataset=str(datasets[0]), rows=rows.reset_index(), reference=reference,
                        notes=list(notes or []))


def _oracle_row(runs: pd.DataFrame) -> Optional[pd.DataFrame]:
    """The true probabilities' AUC/LogLoss, from the runs that report them. Every run of a
    dataset sees the same test split, so the spread is zero unless data settings differed."""
    if ORACLE_AUC not in runs or ORACLE_LOGLOSS not in runs:
        return None
    oracle = runs[[ORACLE_AUC, ORACLE_LOGLOSS]].dropna()
    if oracle.empty:
        return None
    spread = oracle.std(ddof=1).where(lambda std: std > 1e-9)  # rounding-level spread: a single value
    return pd.DataFrame({"model": ORACLE_KEY, "seeds": pd.NA,
                         "auc_mean": oracle[ORACLE_AUC].mean(), "auc_std": spread[ORACLE_AUC],
                         "logloss_mean": oracle[ORACLE_LOGLOSS].mean(), "logloss_std": spread[ORACLE_LOGLOSS]},
                        index=pd.Index([ORACLE_LABEL], name="label"))


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
        out.append(pd.DataFrame({"model": CEILING_KEY, "family": family, "seeds": pd.NA,
                                 "auc_mean": values[columns[0]].mean(), "logloss_mean": values[columns[1]].mean()},
                                index=pd.Index([label], name="label")))
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


def _load_predictions(run_dir: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    files = [Path(run_dir) / name for name in PREDICTIONS]
    if not all(f.is_file() for f in files):
        return None
    return np.load(files[0]).astype(np.float64), np.load(files[1])


SavedPredictions = dict[str, list[tuple[np.ndarray, np.ndarray]]]


def saved_predictions(runs: pd.DataFrame) -> SavedPredictions:
    """Per model (label) whose every run saved its test predictions: each seed's ``(p, y)``.
    Read once per report, for the significance tests and the reliability diagrams."""
    out = {}
    for label, group in runs.groupby("label", sort=False):
        loaded = [_load_predictions(run_dir) for run_dir in group["run_dir"]]
        if loaded and all(item is not None for item in loaded):
            out[str(label)] = loaded
    return out


def shared_labels(*seed_lists: list[tuple[np.ndarray, np.ndarray]]) -> Optional[np.ndarray]:
    """The test labels every run of ``seed_lists`` scored, or None where they scored different rows
    (then no paired test applies)."""
    labels = seed_lists[0][0][1]
    same = all(np.array_equal(y, labels) for seeds in seed_lists for _, y in seeds)
    return labels if same else None


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
    for metric, best, compare in (("auc", best_auc, stats.compare_auc),
                                  ("logloss", best_logloss, stats.compare_logloss)):
        others = [label for label in scores if label != best]
        raw = [compare(labels, scores[label], scores[best]).p_value for label in others]
        adjusted = stats.holm(raw) if raw else []
        out.loc[best, f"p_{metric}"] = np.nan
        out.loc[others, f"p_{metric}"] = adjusted
        out[f"not_worse_{metric}"] = out[f"p_{metric}"].isna() | (out[f"p_{metric}"] >= SIGNIFICANCE_LEVEL)
    return out


def reliability_curves(predictions: SavedPredictions) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per model with saved predictions: its seeds' test predictions pooled, in equal-mass bins
    (``stats.calibration_bins``)."""
    return {label: stats.calibration_bins(np.concatenate([y for _, y in seeds]).astype(np.float64),
                                          np.concatenate([p for p, _ in seeds]))
            for label, seeds in predictions.items()}


# --- formatting ---------------------------------------------------------------------------------

_DIGITS = {"auc": 4, "logloss": 5}
_DASH = "—"


def _fmt(value, digits: int, sign: bool = False, suffix: str = "") -> str:
    if pd.isna(value):
        return _DASH
    return f"{value:+.{digits}f}{suffix}" if sign else f"{value:.{digits}f}{suffix}"


@dataclass
class _Cell:
    text: str
    bold: bool = False


def _model_cell(row: pd.Series) -> _Cell:
    """A model's name, marked † when its runs were truncated (debug runs)."""
    return _Cell(str(row["label"]) + (" †" if row.get("truncated") else ""))


def _p(value) -> str:
    if pd.isna(value):
        return _DASH
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _count(value, digits: int = 0) -> str:
    return _DASH if pd.isna(value) else f"{value:,.{digits}f}"


def _display_columns(table: DatasetTable) -> list[tuple[str, Callable[[pd.Series], _Cell]]]:
    """(header, row -> cell) for the quality table in md and tex."""
    significance = table.has_significance

    def mean_std(metric: str) -> Callable[[pd.Series], _Cell]:
        def cell(row: pd.Series) -> _Cell:
            text = _fmt(row[f"{metric}_mean"], _DIGITS[metric])
            if not pd.isna(row.get(f"{metric}_std")):
                text += f" ± {_fmt(row[f'{metric}_std'], _DIGITS[metric])}"
            bold = row.get(f"not_worse_{metric}", False) if significance else row.get(f"best_{metric}", False)
            return _Cell(text, bool(bold) and row["model"] not in (ORACLE_KEY, CEILING_KEY))
        return cell

    def plain(column: str, digits: int, sign: bool = False, suffix: str = "", best: Optional[str] = None):
        return lambda row: _Cell(_fmt(row.get(column), digits, sign, suffix), bool(best and row.get(best, False)))

    def percent(column: str):
        return lambda row: _Cell(_DASH if pd.isna(row.get(column)) else f"{100 * row[column]:.1f}%")

    columns = [("Model", _model_cell), ("AUC", mean_std("auc"))]
    if significance:
        columns += [("AUC 95% CI", lambda row: _Cell(_DASH if pd.isna(row.get("auc_ci_low")) else
                                                      f"{row['auc_ci_low']:.4f}–{row['auc_ci_high']:.4f}")),
                    ("p (AUC)", lambda row: _Cell(_p(row.get("p_auc")) if row["model"] not in (ORACLE_KEY, CEILING_KEY)
                                                  and not pd.isna(row.get("auc_ci_low")) else _DASH))]
    columns.append(("LogLoss", mean_std("logloss")))
    if significance:
        columns.append(("p (LogLoss)", lambda row: _Cell(_p(row.get("p_logloss")) if not pd.isna(row.get("auc_ci_low"))
                                                         else _DASH)))
    if "ece" in table.rows:
        def calibration(row: pd.Series) -> _Cell:
            if pd.isna(row.get("mean_prediction")):
                return _Cell(_DASH)
            return _Cell(f"{row['mean_prediction']:.4f} / {row['click_rate']:.4f}")

        columns += [("ECE", plain("ece", 4)), ("Mean p / click rate", calibration)]
    columns.append(("Seeds", lambda row: _Cell(_DASH if pd.isna(row["seeds"]) else str(int(row["seeds"])))))
    if table.has_oracle:
        columns += [("Share of its ceiling's lift", percent("share_of_ceiling")),
                    ("Share of the oracle's lift", percent("share_of_oracle"))]
    if table.reference is not None:
        title = table.reference.title
        columns += [
            (f"{title} AUC", plain("ref_auc", 4, best="ref_best_auc")),
            ("Δ AUC", plain("diff_auc", 4, sign=True)),
            (f"{title} LogLoss", plain("ref_logloss", 5, best="ref_best_logloss")),
            ("Δ LogLoss", plain("diff_logloss", 5, sign=True)),
        ]
    columns += [
        ("DeepFM rel. impr. AUC", plain("deepfm_rel_impr_auc_pct", 2, sign=True, suffix="%")),
        ("DeepFM rel. impr. LogLoss", plain("deepfm_rel_impr_logloss_pct", 2, sign=True, suffix="%")),
    ]
    return columns


def _cost_columns() -> list[tuple[str, Callable[[pd.Series], _Cell]]]:
    return [("Model", _model_cell),
            ("Parameters", lambda row: _Cell(_count(row.get("params")))),
            ("Train s/epoch", lambda row: _Cell(_fmt(row.get("seconds_per_epoch"), 1))),
            ("Epochs to best", lambda row: _Cell(_fmt(row.get("epochs_to_best"), 1))),
            ("Train samples/s", lambda row: _Cell(_count(row.get("train_samples_per_s")))),
            ("Inference samples/s", lambda row: _Cell(_count(row.get("inference_samples_per_s")))),
            ("Peak RSS MiB", lambda row: _Cell(_count(row.get("peak_rss_mib"))))]


def _cells(table: DatasetTable, columns=None,
           rows: Optional[pd.DataFrame] = None) -> tuple[list[str], list[list[_Cell]]]:
    columns = columns or _display_columns(table)
    rows = table.rows if rows is None else rows
    body = [[cell(row) for _, cell in columns] for _, row in rows.iterrows()]  # one per model
    return [header for header, _ in columns], body


def explanation(table: DatasetTable) -> list[str]:
    """The sentences a reader needs to read the tables, shared by md and tex."""
    if table.has_significance:
        lines = ["Test AUC and LogLoss: mean ± sample standard deviation over seeds; **bold: the best model and every "
                 f"model not significantly worse than it** (Holm-adjusted p ≥ {SIGNIFICANCE_LEVEL}).",
                 "Significance: each model against the best on the same test rows. AUC: the difference of seed-mean "
                 "AUCs, its variance DeLong's covariance of the AUCs over the test rows (DeLong et al. 1988, fast "
                 "algorithm of Sun & Xu 2014) plus each model's variance across seeds over the number of seeds; a "
                 "two-sided normal test. LogLoss: the mean over test rows of the paired per-row differences of "
                 "seed-averaged log loss, its variance that of those differences over the rows plus the seeds'. "
                 "p-values are adjusted with Holm's method for the comparisons with the best; 95% CI: the seed-mean "
                 "AUC ± 1.96 times the square root of the same variance."]
    else:
        lines = ["Test AUC and LogLoss: mean ± sample standard deviation over seeds (a single seed shows no spread); "
                 "bold: best value per column, the oracle excluded. No significance test: not every run saved its "
                 "test predictions."]
    if "ece" in table.rows:
        lines.append(f"ECE: expected calibration error, sum over {stats.CALIBRATION_BINS} equal-mass bins of the "
                     "predictions of (rows in bin / rows) × |mean predicted − observed click rate|; beside it the mean "
                     "predicted probability and the observed click rate of the test split.")
    if table.reference is not None:
        lines.append(f"{table.reference.title}: {table.reference.source} ({table.reference.setting}). "
                     f"Δ = ours − reference.")
    lines.append("DeepFM rel. impr.: the relative improvement of DeepFM over each model, as in the paper: "
                 "(AUC_DeepFM − AUC_m) / AUC_m and (LogLoss_m − LogLoss_DeepFM) / LogLoss_m.")
    if table.has_oracle:
        lines.append(f"{ORACLE_LABEL}: AUC and LogLoss of the data's true click probabilities, "
                     "the ceiling any model can reach.")
    if table.has_ceilings:
        lines.append("Ceilings: the true logit restricted to what a model family can represent (first-order effects: "
                     "LR's; first-order and pairwise: FM's and FFM's), recalibrated (see datamodules/sources/"
                     "synthetic.py). Share of its ceiling's lift: (AUC − 0.5) / (ceiling − 0.5) against the model's "
                     "family's ceiling (the oracle for deep models); share of the oracle's lift: the same against the "
                     "oracle.")
    if table.truncated:
        lines.append("†: debug run, not comparable (it saw only part of its data: "
                     + "; ".join(sorted(set(table.models.loc[table.models["truncated"].astype(bool), "truncated"])))
                     + ").")
    return lines


def cost_explanation() -> str:
    return ("Cost, means over seeds: parameters; training seconds per epoch (validation excluded); epochs to the "
            "best epoch (the one tested); training and inference (test split) samples per second; peak resident "
            "memory of the run (runs whose metrics.json lacks `peak_rss_scope` recorded their process's peak "
            "instead, which in a multirun, whose jobs share one process, includes the runs before them).")


def _markdown_table(headers: list[str], body: list[list[_Cell]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(headers), "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    return out + [line([f"**{c.text}**" if c.bold else c.text for c in row]) for row in body]


def to_markdown(table: DatasetTable) -> str:
    out = _markdown_table(*_cells(table))
    out += [""] + [f"- {note}" for note in explanation(table) + table.notes]
    if "params" in table.rows:
        out += ["", *_markdown_table(*_cells(table, _cost_columns(), table.models)), "", f"- {cost_explanation()}"]
    return "\n".join(out) + "\n"


_TEX_ESCAPES = str.maketrans({"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                              "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                              "±": r"$\pm$", "Δ": r"$\Delta$", "−": "--", "—": "---"})


def _tex(text: str) -> str:
    return text.translate(_TEX_ESCAPES)


def _latex_table(caption: str, label: str, headers: list[str], body: list[list[_Cell]],
                 rules_before: Sequence[int] = ()) -> list[str]:
    out = [r"\begin{table}[t]", r"\centering", r"\caption{" + _tex(caption) + "}", r"\label{" + label + "}",
           r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
           " & ".join(_tex(h) for h in headers) + r" \\", r"\midrule"]
    for index, cells in enumerate(body):
        if index in rules_before:
            out.append(r"\midrule")
        out.append(" & ".join(r"\textbf{" + _tex(c.text) + "}" if c.bold else _tex(c.text) for c in cells) + r" \\")
    return out + [r"\bottomrule", r"\end{tabular}", r"\end{table}"]


def to_latex(table: DatasetTable) -> str:
    """booktabs ``table`` environments (quality, then cost); the oracle and ceilings below a rule."""
    headers, body = _cells(table)
    slug = "".join(ch if ch.isalnum() else "-" for ch in table.dataset)
    first_bound = [i for i, model in enumerate(table.rows["model"]) if model in (ORACLE_KEY, CEILING_KEY)][:1]
    out = [r"% Generated by python -m experiments.report; needs \usepackage{booktabs}."]
    out += _latex_table(f"Results on {table.dataset}. " + " ".join(explanation(table)), f"tab:results-{slug}",
                        headers, body, first_bound)
    if "params" in table.rows:
        out += _latex_table(f"Cost on {table.dataset}. {cost_explanation()}", f"tab:cost-{slug}",
                            *_cells(table, _cost_columns(), table.models))
    return "\n".join(out) + "\n"


def write_table(table: DatasetTable, folder: Path) -> list[Path]:
    """table.md, table.csv, table.tex in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "table.md", folder / "table.csv", folder / "table.tex"]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    table.rows.to_csv(paths[1], index=False, float_format="%.8g")
    paths[2].write_text(to_latex(table), encoding="utf-8")
    return paths
