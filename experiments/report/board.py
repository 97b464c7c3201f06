"""A leaderboard's rows beside ours: ``board.md`` and ``board.csv`` of a dataset whose runs were made
with an experiment that a reference names as its board (``board:`` in references.yaml, e.g. BARS's
Frappe_x1 board for ``experiment=bars_frappe_x1``), on the board's data or on any other.

Rows in the board's order (its AUC, best first; models it lacks after it), each with the published
AUC and LogLoss, ours (mean ± sample sd over seeds), the difference where the data are the board's
own, the 95% interval of our AUC, whether the model is significantly worse than our best (Holm), and
its groups: models that share a letter cannot be told apart by an all-pairs test (``stats``), a
compact letter display (Piepho 2004, insert and absorb).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from experiments.report import stats
from experiments.report.predictions import SavedPredictions, shared_labels
from experiments.report.references import Reference
from experiments.report.significance import SIGNIFICANCE_LEVEL
from experiments.report.tables import DatasetTable

BOARD_FILES = ("board.md", "board.csv")


def _ran(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of models with runs (not the board's alone, the oracle or the ceilings)."""
    return rows[rows["seeds"].fillna(0) > 0]


def board_reference(runs: pd.DataFrame, references: Sequence[Reference]) -> Optional[Reference]:
    """The reference whose board every run's experiment is, if any."""
    experiments = set(runs["experiment"].dropna()) if "experiment" in runs else set()
    if len(experiments) != 1 or runs["experiment"].isna().any():
        return None
    (experiment,) = experiments
    return next((r for r in references if r.board == experiment), None)


def letter_groups(order: Sequence[str], different: Sequence[tuple[str, str]]) -> list[list[str]]:
    """The groups of a compact letter display of the models of ``order`` (best first): no group holds
    a pair of ``different``, every other pair shares a group, and no group lies inside another.
    Insert and absorb: start from one group of all; split each group holding a different pair into
    the group without one and the group without the other; drop the groups inside others."""
    groups: list[frozenset[str]] = [frozenset(order)]
    for a, b in different:
        split = []
        for group in groups:
            split += [group - {a}, group - {b}] if a in group and b in group else [group]
        unique = list(dict.fromkeys(split))
        groups = [g for g in unique if g and not any(g < h for h in unique)]
    rank = {name: i for i, name in enumerate(order)}
    return [sorted(g, key=rank.__getitem__) for g in sorted(groups, key=lambda g: sorted(rank[n] for n in g))]


def letters(groups: Sequence[Sequence[str]]) -> list[str]:
    """A name per group: a, b, ..., z, then aa, ab, ..."""
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return [alphabet[i] if i < 26 else alphabet[i // 26 - 1] + alphabet[i % 26] for i in range(len(groups))]


def indistinguishable(table: DatasetTable, predictions: SavedPredictions) -> tuple[list[list[str]], int]:
    """The groups of the models that saved predictions of the same test rows, and the number of pairs
    tested; none where any model saved none."""
    rows = _ran(table.rows).sort_values("auc_mean", ascending=False)
    names = [str(label) for label in rows["label"]]
    if len(names) < 2 or not set(names) <= set(predictions):
        return [], 0
    labels = shared_labels(*(predictions[name] for name in names))
    if labels is None:
        return [], 0
    pairs = stats.all_pairs_auc(labels, {name: [p for p, _ in predictions[name]] for name in names})
    adjusted = stats.holm([comparison.p_value for _, _, comparison in pairs])
    different = [(a, b) for (a, b, _), p in zip(pairs, adjusted) if p < SIGNIFICANCE_LEVEL]
    return letter_groups(names, different), len(pairs)


def build_board(table: DatasetTable, board: Reference, groups: Sequence[Sequence[str]]) -> pd.DataFrame:
    """One row per model of the board or of our runs, in the board's order."""
    ours = _ran(table.rows).set_index("label")
    published = board.scores.sort_values(["auc", "logloss"], ascending=[False, True])
    extra = [label for label in ours.sort_values("auc_mean", ascending=False).index if label not in published.index]
    out = pd.DataFrame(index=pd.Index([*published.index, *extra], name="model"))
    out["board_rank"] = pd.Series(np.arange(1, len(published) + 1), index=published.index)
    out["board_auc"], out["board_logloss"] = published["auc"], published["logloss"]
    for column in ("seeds", "auc_mean", "auc_std", "logloss_mean", "logloss_std", "auc_ci_low", "auc_ci_high"):
        out[column] = ours[column] if column in ours else np.nan
    if board.dataset == table.dataset:
        out["diff_auc"] = out["auc_mean"] - out["board_auc"]
        out["diff_logloss"] = out["logloss_mean"] - out["board_logloss"]
    out["p_worse_than_best"] = ours["p_auc"] if "p_auc" in ours else np.nan
    names = letters(groups)
    separator = "" if len(groups) <= 26 else ","
    out["group"] = pd.Series(
        {model: separator.join(n for n, g in zip(names, groups) if model in g) for model in ours.index}, dtype=object
    )
    return out.reset_index()


def _number(value, digits: int, sign: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _worse(p) -> str:
    if p is None or pd.isna(p):
        return "best" if p is not None else "–"
    return f"{'yes' if p < SIGNIFICANCE_LEVEL else 'no'} (p {p:.2g})"


def _row_cells(row: pd.Series, compared: bool, best: Optional[str]) -> list[str]:
    run = row["seeds"] > 0 if not pd.isna(row["seeds"]) else False
    cells = [
        "" if pd.isna(row["board_rank"]) else str(int(row["board_rank"])),
        str(row["model"]),
        _number(row["board_auc"], 4),
        _number(row["board_logloss"], 4),
    ]
    if not run:
        return cells + ["not run"] + [""] * (5 + 2 * compared)
    cells += [
        f"{row['auc_mean']:.4f} ± {_number(row['auc_std'], 4)}",
        f"{row['logloss_mean']:.4f} ± {_number(row['logloss_std'], 4)}",
    ]
    if compared:
        cells += [_number(row["diff_auc"], 4, sign=True), _number(row["diff_logloss"], 4, sign=True)]
    interval = "–" if pd.isna(row["auc_ci_low"]) else f"[{row['auc_ci_low']:.4f}, {row['auc_ci_high']:.4f}]"
    worse = "best" if row["model"] == best else _worse(row["p_worse_than_best"])
    return cells + [
        interval,
        worse,
        str(row["group"]) if isinstance(row["group"], str) else "–",
        str(int(row["seeds"])),
    ]


def board_markdown(
    board_rows: pd.DataFrame, board: Reference, table: DatasetTable, groups: Sequence[Sequence[str]], pairs: int
) -> str:
    """The board as markdown: its table, its groups, and how both sides picked their rows."""
    compared = "diff_auc" in board_rows
    ran = _ran(board_rows)
    best = None if ran.empty else str(ran.loc[ran["auc_mean"].idxmax(), "model"])
    headers = ["#", "model", f"{board.title} AUC", f"{board.title} LogLoss", "AUC", "LogLoss"]
    headers += ["Δ AUC", "Δ LogLoss"] if compared else []
    headers += ["95% interval of AUC", "worse than the best (Holm)", "group", "seeds"]
    lines = [
        f"# {board.title}'s board on `{table.dataset}`",
        "",
        f"{board.setting}. Source: {board.source}.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(_row_cells(row, compared, best)) + " |" for _, row in board_rows.iterrows()]
    lines += ["", *_explanation(board_rows, board, table, compared, groups, pairs)]
    return "\n".join(lines) + "\n"


def _explanation(board_rows, board: Reference, table: DatasetTable, compared: bool, groups, pairs: int):
    ran = _ran(board_rows)
    if not compared:
        yield (
            f"These runs are on `{table.dataset}`, not on {board.title}'s data: its numbers give the board's "
            "order and are not compared (no Δ)."
        )
        yield ""
    yield (
        "AUC and LogLoss: test scores, mean ± sample standard deviation over seeds. The interval and the "
        "tests use the saved test predictions: the variance of a seed mean adds the test rows' (DeLong's "
        "covariance) and the spread across seeds. *Worse than the best*: this model's seed-mean AUC against "
        f"the best one's, Holm-adjusted over the {max(len(ran) - 1, 0)} comparisons, level {SIGNIFICANCE_LEVEL}."
    )
    yield ""
    if groups:
        yield (
            f"Groups: models that share a letter cannot be told apart (all {pairs} pairs tested as above, "
            f"Holm-adjusted over all of them, level {SIGNIFICANCE_LEVEL}; letters by Piepho's insert-and-absorb)."
        )
        yield ""
        for name, members in zip(letters(groups), groups):
            yield f"- **{name}**: {', '.join(members)}"
        yield ""
    if board.selection:
        yield f"How {board.title} picked its rows: {board.selection}."
        yield ""
    yield (
        "How ctr-bench picked its rows: every model at its published settings (one preset, the same for "
        "every seed, no search on these data), each run's best epoch by validation AUC (the test split "
        "scored once, at that epoch), and every seed reported."
    )


def write_board(table: DatasetTable, board: Reference, predictions: SavedPredictions, folder: Path) -> list[Path]:
    """``board.md`` and ``board.csv`` in ``folder``."""
    groups, pairs = indistinguishable(table, predictions)
    rows = build_board(table, board, groups)
    (folder / "board.md").write_text(board_markdown(rows, board, table, groups, pairs), encoding="utf-8")
    rows.to_csv(folder / "board.csv", index=False)
    return [folder / name for name in BOARD_FILES]
