"""A ``DatasetTable`` as text: table.md and table.tex (the quality table, then the cost table), with
the sentences a reader needs to read them; table.csv holds the unrounded numbers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from experiments.report import stats
from experiments.report.naming import ORACLE_LABEL
from experiments.report.significance import SIGNIFICANCE_LEVEL
from experiments.report.tables import CEILING_KEY, ORACLE_KEY, DatasetTable

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
    """A model's name, marked † when its runs were truncated (debug runs), ↑ when some ended still improving."""
    improving = row.get("still_improving")
    return _Cell(
        str(row["label"]) + (" †" if row.get("truncated") else "") + (" ↑" if improving and improving > 0 else "")
    )


def _p(value) -> str:
    if pd.isna(value):
        return _DASH
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _count(value, digits: int = 0) -> str:
    return _DASH if pd.isna(value) else f"{value:,.{digits}f}"


def _mean_std(metric: str, significance: bool) -> Callable[[pd.Series], _Cell]:
    """Mean ± std over seeds; bold: with significance every model not significantly worse than the best,
    without it the best; never the oracle or a ceiling."""

    def cell(row: pd.Series) -> _Cell:
        text = _fmt(row[f"{metric}_mean"], _DIGITS[metric])
        if not pd.isna(row.get(f"{metric}_std")):
            text += f" ± {_fmt(row[f'{metric}_std'], _DIGITS[metric])}"
        bold = row.get(f"not_worse_{metric}", False) if significance else row.get(f"best_{metric}", False)
        return _Cell(text, bool(bold) and row["model"] not in (ORACLE_KEY, CEILING_KEY))

    return cell


def _plain(
    column: str, digits: int, sign: bool = False, suffix: str = "", best: Optional[str] = None
) -> Callable[[pd.Series], _Cell]:
    return lambda row: _Cell(_fmt(row.get(column), digits, sign, suffix), bool(best and row.get(best, False)))


def _percent(column: str) -> Callable[[pd.Series], _Cell]:
    return lambda row: _Cell(_DASH if pd.isna(row.get(column)) else f"{100 * row[column]:.1f}%")


def _auc_interval(row: pd.Series) -> _Cell:
    return _Cell(_DASH if pd.isna(row.get("auc_ci_low")) else f"{row['auc_ci_low']:.4f}–{row['auc_ci_high']:.4f}")


def _p_auc(row: pd.Series) -> _Cell:
    tested = row["model"] not in (ORACLE_KEY, CEILING_KEY) and not pd.isna(row.get("auc_ci_low"))
    return _Cell(_p(row.get("p_auc")) if tested else _DASH)


def _p_logloss(row: pd.Series) -> _Cell:
    return _Cell(_p(row.get("p_logloss")) if not pd.isna(row.get("auc_ci_low")) else _DASH)


def _calibration(row: pd.Series) -> _Cell:
    if pd.isna(row.get("mean_prediction")):
        return _Cell(_DASH)
    return _Cell(f"{row['mean_prediction']:.4f} / {row['click_rate']:.4f}")


def _seeds(row: pd.Series) -> _Cell:
    return _Cell(_DASH if pd.isna(row["seeds"]) else str(int(row["seeds"])))


def _reference_columns(title: str) -> list[tuple[str, Callable[[pd.Series], _Cell]]]:
    return [
        (f"{title} AUC", _plain("ref_auc", 4, best="ref_best_auc")),
        ("Δ AUC", _plain("diff_auc", 4, sign=True)),
        (f"{title} LogLoss", _plain("ref_logloss", 5, best="ref_best_logloss")),
        ("Δ LogLoss", _plain("diff_logloss", 5, sign=True)),
    ]


def _display_columns(table: DatasetTable) -> list[tuple[str, Callable[[pd.Series], _Cell]]]:
    """(header, row -> cell) for the quality table in md and tex."""
    significance = table.has_significance
    columns = [("Model", _model_cell), ("AUC", _mean_std("auc", significance))]
    if significance:
        columns += [("AUC 95% CI", _auc_interval), ("p (AUC)", _p_auc)]
    columns.append(("LogLoss", _mean_std("logloss", significance)))
    if significance:
        columns.append(("p (LogLoss)", _p_logloss))
    if "ece" in table.rows:
        columns += [("ECE", _plain("ece", 4)), ("Mean p / click rate", _calibration)]
    columns.append(("Seeds", _seeds))
    if table.has_oracle:
        columns += [
            ("Share of its ceiling's lift", _percent("share_of_ceiling")),
            ("Share of the oracle's lift", _percent("share_of_oracle")),
        ]
    if table.reference is not None:
        columns += _reference_columns(table.reference.title)
    columns += [
        ("DeepFM rel. impr. AUC", _plain("deepfm_rel_impr_auc_pct", 2, sign=True, suffix="%")),
        ("DeepFM rel. impr. LogLoss", _plain("deepfm_rel_impr_logloss_pct", 2, sign=True, suffix="%")),
    ]
    return columns


def _cost_columns() -> list[tuple[str, Callable[[pd.Series], _Cell]]]:
    return [
        ("Model", _model_cell),
        ("Parameters", lambda row: _Cell(_count(row.get("params")))),
        ("Train s/epoch", lambda row: _Cell(_fmt(row.get("seconds_per_epoch"), 1))),
        ("Epochs to best", lambda row: _Cell(_fmt(row.get("epochs_to_best"), 1))),
        ("Train samples/s", lambda row: _Cell(_count(row.get("train_samples_per_s")))),
        ("Inference samples/s", lambda row: _Cell(_count(row.get("inference_samples_per_s")))),
        ("1-row p99 ms", lambda row: _Cell(_fmt(row.get("one_row_p99_ms"), 2))),
        ("Peak RSS MiB", lambda row: _Cell(_count(row.get("peak_rss_mib")))),
    ]


def _cells(
    table: DatasetTable, columns=None, rows: Optional[pd.DataFrame] = None
) -> tuple[list[str], list[list[_Cell]]]:
    columns = columns or _display_columns(table)
    rows = table.rows if rows is None else rows
    body = [[cell(row) for _, cell in columns] for _, row in rows.iterrows()]  # one per model
    return [header for header, _ in columns], body


def explanation(table: DatasetTable) -> list[str]:
    """The sentences a reader needs to read the tables, shared by md and tex."""
    if table.has_significance:
        lines = [
            "Test AUC and LogLoss: mean ± sample standard deviation over seeds; **bold: the best model and every "
            f"model not significantly worse than it** (Holm-adjusted p ≥ {SIGNIFICANCE_LEVEL}).",
            "Significance: each model against the best on the same test rows. AUC: the difference of seed-mean "
            "AUCs, its variance DeLong's covariance of the AUCs over the test rows (DeLong et al. 1988, fast "
            "algorithm of Sun & Xu 2014) plus each model's variance across seeds over the number of seeds; a "
            "two-sided normal test. LogLoss: the mean over test rows of the paired per-row differences of "
            "seed-averaged log loss, its variance that of those differences over the rows plus the seeds'. "
            "p-values are adjusted with Holm's method for the comparisons with the best; 95% CI: the seed-mean "
            "AUC ± 1.96 times the square root of the same variance.",
        ]
    else:
        lines = [
            "Test AUC and LogLoss: mean ± sample standard deviation over seeds (a single seed shows no spread); "
            "bold: best value per column, the oracle excluded. No significance test: not every run saved its "
            "test predictions."
        ]
    if "ece" in table.rows:
        lines.append(
            f"ECE: expected calibration error, sum over {stats.CALIBRATION_BINS} equal-mass bins of the "
            "predictions of (rows in bin / rows) × |mean predicted − observed click rate|; beside it the mean "
            "predicted probability and the observed click rate of the test split."
        )
    if table.reference is not None:
        lines.append(
            f"{table.reference.title}: {table.reference.source} ({table.reference.setting}). Δ = ours − reference."
        )
    lines.append(
        "DeepFM rel. impr.: the relative improvement of DeepFM over each model, as in the paper: "
        "(AUC_DeepFM − AUC_m) / AUC_m and (LogLoss_m − LogLoss_DeepFM) / LogLoss_m."
    )
    if table.has_oracle:
        lines.append(
            f"{ORACLE_LABEL}: AUC and LogLoss of the data's true click probabilities, the ceiling any model can reach."
        )
    if table.has_ceilings:
        lines.append(
            "Ceilings: the true logit restricted to what a model family can represent (first-order effects: "
            "LR's; first-order and pairwise: FM's and FFM's), recalibrated (see datamodules/sources/"
            "synthetic.py). Share of its ceiling's lift: (AUC − 0.5) / (ceiling − 0.5) against the model's "
            "family's ceiling (the oracle for deep models); share of the oracle's lift: the same against the "
            "oracle."
        )
    if table.still_improving:
        lines.append(
            "↑: runs whose best epoch was their last, still improving when trainer.max_epochs ended them (more "
            "epochs might score higher): "
            + ", ".join(f"{row['label']} {row['still_improving']} of {row['seeds']}" for _, row in _improving(table))
            + "."
        )
    if table.truncated:
        lines.append(
            "†: debug run, not comparable (it saw only part of its data: "
            + "; ".join(sorted(set(table.models.loc[table.models["truncated"].astype(bool), "truncated"])))
            + ")."
        )
    return lines


def _improving(table):
    models = table.models
    return models[models["still_improving"] > 0].iterrows()


def cost_explanation() -> str:
    return (
        "Cost, means over seeds: parameters; training seconds per epoch (validation excluded); epochs to the "
        "best epoch (the one tested); training and inference (test split) samples per second; the p99 latency "
        "of scoring one row (best weights, one thread, torch eager; `python -m experiments.benchmark.serving` "
        "times exported graphs and larger batches); peak resident "
        "memory of the run (runs whose metrics.json lacks `peak_rss_scope` recorded their process's peak "
        "instead, which in a multirun, whose jobs share one process, includes the runs before them)."
    )


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


_TEX_ESCAPES = str.maketrans(
    {
        "&": r"\&",
        "%": r"\%",
        "_": r"\_",
        "#": r"\#",
        "$": r"\$",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "\\": r"\textbackslash{}",
        "±": r"$\pm$",
        "Δ": r"$\Delta$",
        "−": "--",
        "—": "---",
    }
)


def _tex(text: str) -> str:
    return text.translate(_TEX_ESCAPES)


def _latex_table(
    caption: str, label: str, headers: list[str], body: list[list[_Cell]], rules_before: Sequence[int] = ()
) -> list[str]:
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _tex(caption) + "}",
        r"\label{" + label + "}",
        r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
        r"\toprule",
        " & ".join(_tex(h) for h in headers) + r" \\",
        r"\midrule",
    ]
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
    out += _latex_table(
        f"Results on {table.dataset}. " + " ".join(explanation(table)),
        f"tab:results-{slug}",
        headers,
        body,
        first_bound,
    )
    if "params" in table.rows:
        out += _latex_table(
            f"Cost on {table.dataset}. {cost_explanation()}",
            f"tab:cost-{slug}",
            *_cells(table, _cost_columns(), table.models),
        )
    return "\n".join(out) + "\n"


def write_table(table: DatasetTable, folder: Path) -> list[Path]:
    """table.md, table.csv, table.tex in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "table.md", folder / "table.csv", folder / "table.tex"]
    paths[0].write_text(to_markdown(table), encoding="utf-8")
    table.rows.to_csv(paths[1], index=False, float_format="%.8g")
    paths[2].write_text(to_latex(table), encoding="utf-8")
    return paths
