"""One dataset's runs -> the paper's Table 2 layout, written as table.md, table.csv and table.tex.

``build_table`` computes every number once (mean and sample standard deviation over seeds,
reference and difference, DeepFM's relative improvement, best-per-column flags) into one frame;
the three writers only format it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from experiments.report.collect import ORACLE_AUC, ORACLE_LOGLOSS, TEST_AUC, TEST_LOGLOSS, VAL_AUC
from experiments.report.naming import DEEPFM_LABEL, MODEL_LABELS, ORACLE_LABEL, label_sort_key
from experiments.report.references import Reference

ORACLE_KEY = "oracle"
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


def build_table(runs: pd.DataFrame, reference: Optional[Reference] = None,
                notes: Optional[list[str]] = None) -> DatasetTable:
    """Runs of one dataset (one configuration per model, see ``collect.select_configurations``)
    -> ``DatasetTable``. Models of the reference that were not run get a row with its numbers."""
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
        "configuration": by_model["configuration"].first(),
    })
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
        rows = pd.concat([rows, oracle])
    rows["seeds"] = rows["seeds"].astype("Int64")
    for flag in [c for c in rows if c.startswith(("best_", "ref_best_"))]:
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


def _display_columns(table: DatasetTable) -> list[tuple[str, Callable[[pd.Series], _Cell]]]:
    """(header, row -> cell) for the columns shown in md and tex."""
    def mean_std(metric: str) -> Callable[[pd.Series], _Cell]:
        def cell(row: pd.Series) -> _Cell:
            text = _fmt(row[f"{metric}_mean"], _DIGITS[metric])
            if not pd.isna(row[f"{metric}_std"]):
                text += f" ± {_fmt(row[f'{metric}_std'], _DIGITS[metric])}"
            return _Cell(text, bool(row.get(f"best_{metric}", False)))
        return cell

    def plain(column: str, digits: int, sign: bool = False, suffix: str = "", best: Optional[str] = None):
        return lambda row: _Cell(_fmt(row[column], digits, sign, suffix), bool(best and row.get(best, False)))

    columns = [
        ("Model", lambda row: _Cell(str(row["label"]))),
        ("AUC", mean_std("auc")),
        ("LogLoss", mean_std("logloss")),
        ("Seeds", lambda row: _Cell(_DASH if pd.isna(row["seeds"]) else str(int(row["seeds"])))),
    ]
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


def _cells(table: DatasetTable) -> tuple[list[str], list[list[_Cell]]]:
    columns = _display_columns(table)
    body = [[cell(row) for _, cell in columns] for _, row in table.rows.iterrows()]  # one per model
    return [header for header, _ in columns], body


def explanation(table: DatasetTable) -> list[str]:
    """The sentences a reader needs to read the table, shared by md and tex."""
    lines = ["Test AUC and LogLoss: mean ± sample standard deviation over seeds (a single seed "
             "shows no spread); bold: best value per column, the oracle excluded."]
    if table.reference is not None:
        lines.append(f"{table.reference.title}: {table.reference.source} ({table.reference.setting}). "
                     f"Δ = ours − reference.")
    lines.append("DeepFM rel. impr.: the relative improvement of DeepFM over each model, as in the paper: "
                 "(AUC_DeepFM − AUC_m) / AUC_m and (LogLoss_m − LogLoss_DeepFM) / LogLoss_m.")
    if table.has_oracle:
        lines.append(f"{ORACLE_LABEL}: AUC and LogLoss of the data's true click probabilities, "
                     "the ceiling any model can reach.")
    return lines


def to_markdown(table: DatasetTable) -> str:
    headers, body = _cells(table)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(headers), "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    out += [line([f"**{c.text}**" if c.bold else c.text for c in row]) for row in body]
    out += [""] + [f"- {note}" for note in explanation(table) + table.notes]
    return "\n".join(out) + "\n"


_TEX_ESCAPES = str.maketrans({"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                              "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                              "±": r"$\pm$", "Δ": r"$\Delta$", "−": "--", "—": "---"})


def _tex(text: str) -> str:
    return text.translate(_TEX_ESCAPES)


def to_latex(table: DatasetTable) -> str:
    """A booktabs ``table`` environment; the oracle row sits below a rule of its own."""
    headers, body = _cells(table)
    rows = table.rows
    out = [r"% Generated by python -m experiments.report; needs \usepackage{booktabs}.",
           r"\begin{table}[t]", r"\centering",
           r"\caption{" + _tex(f"Results on {table.dataset}. " + " ".join(explanation(table))) + "}",
           r"\label{tab:results-" + "".join(ch if ch.isalnum() else "-" for ch in table.dataset) + "}",
           r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
           " & ".join(_tex(h) for h in headers) + r" \\", r"\midrule"]
    for (_, row), cells in zip(rows.iterrows(), body):
        if row["model"] == ORACLE_KEY:
            out.append(r"\midrule")
        out.append(" & ".join(r"\textbf{" + _tex(c.text) + "}" if c.bold else _tex(c.text) for c in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def write_table(table: DatasetTable, folder: Path) -> list[Path]:
    """table.md, table.csv, table.tex in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "table.md", folder / "table.csv", folder / "table.tex"]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    table.rows.to_csv(paths[1], index=False, float_format="%.8g")
    paths[2].write_text(to_latex(table), encoding="utf-8")
    return paths
