"""Seaborn figures beside the tables, each saved as PNG (``save_figure`` can add SVG).

- ``plot_scores``: test AUC and LogLoss per model, one dot per seed, mean with 95% CI over seeds,
  the reference's number as a cross and the oracle as a dashed line.
- ``plot_learning_curves``: validation AUC (and LogLoss) per epoch, mean and 95% CI over seeds.
- ``plot_cost``: test AUC against training seconds per epoch (log scale), each model's seeds and
  mean, and the Pareto front: the models no other beats on both.
- ``plot_reliability``: each model's reliability diagram, observed click rate against mean
  predicted probability in equal-mass bins of its test predictions (seeds pooled).
- ``plot_study``: an Optuna study's optimisation history and hyperparameter importances.

A model has the same colour in every figure (``model_color``).
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display, safe in sweeps and CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from experiments.report.collect import TEST_AUC, TEST_LOGLOSS
from experiments.report.naming import KNOWN_LABELS
from experiments.report.tables import ORACLE_KEY, DatasetTable

# Fixed so that a model keeps its colour from one report to the next; DeepFM, the paper's subject,
# gets the red that stands out, the baseline LR a neutral grey.
_FIXED_COLORS = {
    "LR": "#7f7f7f",
    "FM": "#1f77b4",
    "FNN": "#17becf",
    "IPNN": "#9467bd",
    "OPNN": "#8c564b",
    "PNN*": "#e377c2",
    "LR&DNN": "#bcbd22",
    "FM&DNN": "#ff7f0e",
    "DeepFM": "#d62728",
    "FFM": "#aec7e8",
    "DNN": "#2ca02c",
    "Wide&Deep": "#98df8a",
    "DCN": "#1b9e77",
    "xDeepFM": "#7570b3",
    "CrossNet-V2": "#66a61e",
    "DCN-V2": "#e7298a",
    "AutoInt": "#e6ab02",
    "AutoInt+": "#a6761d",
    "FiBiNET": "#b15928",
    "DLRM": "#6a3d9a",
    "MaskNet": "#fb9a99",
    "FinalMLP": "#cab2d6",
    "FinalNet": "#ffff99",
    "AOANet": "#393b79",
    "DeepIM": "#637939",
    "EDCN": "#08519c",
    "DESTINE": "#a50f15",
    "NFM": "#4d9221",
    "AFM": "#c51b7d",
    "FwFM": "#f1b6da",
    "FmFM": "#b8e186",
    "HOFM": "#8e0152",
    "FiGNN": "#3f007d",
    "AFN": "#fdae6b",
    "AFN+": "#e6550d",
    "SAM": "#54278f",
    "CrossNet": "#4daf4a",
    "CIN": "#984ea3",
    "HFM": "#f781bf",
    "HFM+": "#a65628",
    "DSSM": "#e41a1c",
}
assert set(_FIXED_COLORS) == set(KNOWN_LABELS), "every known model needs its fixed colour"
_HASHED_HUES = sns.husl_palette(36, l=0.5).as_hex()

CI = ("ci", 95)
BOOTSTRAP = {"n_boot": 1000, "seed": 0}  # fixed so that re-running the report redraws the same bars
# PNG alone by default: every browser and GitHub shows it, and a second copy of each figure only
# doubled the committed files; pass formats=("png", "svg") for vector copies.
FIGURE_FORMATS = ("png",)
# no timestamps or tool versions inside, so that an unchanged figure is saved byte for byte the same
_SAVE_OPTIONS = {"png": {"dpi": 150, "metadata": {"Software": None}}, "svg": {"metadata": {"Date": None}}}


def model_color(label: str) -> str:
    """A model's colour in every figure: fixed for the suite's models, derived from the name's
    hash for any other, so that it is also stable across reports."""
    return _FIXED_COLORS.get(label) or _HASHED_HUES[zlib.crc32(label.encode("utf-8")) % len(_HASHED_HUES)]


def model_palette(labels) -> dict[str, str]:
    return {label: model_color(label) for label in labels}


@contextmanager
def _style():
    # a fixed SVG id salt keeps regenerated SVGs byte-identical (clean diffs of committed results)
    with (
        sns.axes_style("whitegrid"),
        sns.plotting_context("notebook", font_scale=0.9),
        plt.rc_context({"svg.hashsalt": "ctr-bench"}),
    ):
        yield


def save_figure(
    fig: plt.Figure, stem: Path, note: Optional[str] = None, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """``stem`` + one file per format, with ``note`` as a footnote under the figure; a copy in
    another format left by an older report is removed, so that it cannot outlive this figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if note:
        fig.text(0.0, 0.0, note, ha="left", va="top", fontsize=9, color="firebrick", wrap=True)
    paths = [stem.with_suffix(f".{fmt}") for fmt in formats]
    for path, fmt in zip(paths, formats):
        fig.savefig(path, bbox_inches="tight", **_SAVE_OPTIONS[fmt])
    plt.close(fig)
    for fmt in set(_SAVE_OPTIONS) - set(formats):
        stem.with_suffix(f".{fmt}").unlink(missing_ok=True)
    return paths


def debug_note(table: DatasetTable) -> Optional[str]:
    """The footnote of every figure of a table with debug runs: they are not comparable."""
    if not table.truncated:
        return None
    return (
        f"† debug runs, not comparable with full ones (they saw only part of their data): {', '.join(table.truncated)}"
    )


def plot_scores(runs: pd.DataFrame, table: DatasetTable, stem: Path) -> list[Path]:
    """Runs of one dataset (columns label, test/auc, test/logloss) -> ``stem``.png."""
    order = runs.groupby("label")[TEST_AUC].mean().sort_values(ascending=False).index.tolist()
    summary = table.rows.set_index("label")
    # Each seed a little off its model's row, the same offset in both panels; computed rather than
    # seaborn's random jitter so that a regenerated figure is byte-identical.
    seed_rank = runs.groupby("label")["seed"].rank(method="first")
    seeds_per_model = runs.groupby("label")["seed"].transform("size")
    seed_rows = runs["label"].map({label: row for row, label in enumerate(order)}) + 0.36 * (
        seed_rank / seeds_per_model - 0.5 - 0.5 / seeds_per_model
    )
    oracle = table.rows[table.rows["model"] == ORACLE_KEY]
    with _style():
        fig, axes = plt.subplots(1, 2, sharey=True, figsize=(10, 1.6 + 0.42 * len(order)), layout="constrained")
        for ax, (column, metric, title) in zip(
            axes,
            [
                (TEST_AUC, "auc", "Test AUC (higher is better)"),
                (TEST_LOGLOSS, "logloss", "Test LogLoss (lower is better)"),
            ],
        ):
            ax.scatter(
                runs[column], seed_rows, c=runs["label"].map(model_color), s=30, alpha=0.75, linewidths=0, zorder=2
            )
            sns.pointplot(
                data=runs,
                x=column,
                y="label",
                order=order,
                errorbar=CI,
                **BOOTSTRAP,
                color="black",
                markers="D",
                markersize=4,
                linestyle="none",
                err_kws={"linewidth": 1.5},
                ax=ax,
                label="mean, 95% CI",
            )
            if table.reference is not None:
                reference = summary[f"ref_{metric}"].reindex(order)
                ax.scatter(
                    reference.to_numpy(),
                    range(len(order)),
                    marker="x",
                    s=50,
                    color="black",
                    zorder=5,
                    label=table.reference.title,
                )
            if not oracle.empty:
                ax.axvline(float(oracle[f"{metric}_mean"].iloc[0]), color="dimgray", linestyle="--", label="oracle")
            ax.set(title=title, xlabel="", ylabel="")
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        axes[0].get_legend().remove()  # one legend, beside the right panel
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        fig.suptitle(f"{table.dataset}: one dot per seed")
        return save_figure(fig, stem, debug_note(table))


def plot_learning_curves(histories: pd.DataFrame, stem: Path, note: Optional[str] = None) -> list[Path]:
    """history.csv rows of one dataset (columns label, seed, epoch, val/auc[, val/logloss])
    -> ``stem``.png; the legend lists models by their last-epoch mean validation AUC."""
    final_epoch = histories.loc[histories.groupby(["label", "seed"])["epoch"].idxmax()]
    order = final_epoch.groupby("label")["val/auc"].mean().sort_values(ascending=False).index.tolist()
    panels = [("val/auc", "Validation AUC")] + (
        [("val/logloss", "Validation LogLoss")] if "val/logloss" in histories else []
    )
    with _style():
        fig, axes = plt.subplots(
            1, len(panels), figsize=(5.5 * len(panels) + 1.5, 4.5), squeeze=False, layout="constrained"
        )
        for ax, (column, title) in zip(axes[0], panels):
            sns.lineplot(
                data=histories,
                x="epoch",
                y=column,
                hue="label",
                hue_order=order,
                palette=model_palette(order),
                errorbar=CI,
                **BOOTSTRAP,
                marker="o",
                ax=ax,
                legend=ax is axes[0][-1],
            )
            ax.set(title=title, xlabel="epoch", ylabel="")
            ax.xaxis.get_major_locator().set_params(integer=True)
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="model")
        fig.suptitle(f"{histories['dataset'].iloc[0]}: learning curves (mean, 95% CI over seeds)")
        return save_figure(fig, stem, note)


def pareto_front(points: pd.DataFrame, cost: str, score: str) -> pd.DataFrame:
    """The rows no other row beats on both: lower (or equal) ``cost`` and higher ``score``; by cost."""
    ordered = points.sort_values([cost, score], ascending=[True, False])
    return ordered[ordered[score] > ordered[score].cummax().shift(fill_value=-np.inf)]


def plot_cost(runs: pd.DataFrame, table: DatasetTable, stem: Path) -> list[Path]:
    """Test AUC against training seconds per epoch (log x): dots per seed, a mean with its seed
    spread per model, the Pareto front through the means -> ``stem``.png."""
    runs = runs.dropna(subset=["train_seconds_per_epoch", TEST_AUC])
    means = (
        runs.groupby("label")
        .agg(
            cost=("train_seconds_per_epoch", "mean"),
            cost_sd=("train_seconds_per_epoch", "std"),
            auc=(TEST_AUC, "mean"),
            auc_sd=(TEST_AUC, "std"),
        )
        .fillna({"cost_sd": 0, "auc_sd": 0})
    )
    with _style():
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        ax.scatter(
            runs["train_seconds_per_epoch"],
            runs[TEST_AUC],
            c=runs["label"].map(model_color),
            s=14,
            alpha=0.45,
            linewidths=0,
        )
        for label, row in means.iterrows():
            ax.errorbar(
                row["cost"],
                row["auc"],
                xerr=row["cost_sd"],
                yerr=row["auc_sd"],
                fmt="o",
                ms=7,
                color=model_color(label),
                capsize=2,
                label=label,
            )
        front = pareto_front(means.reset_index(), "cost", "auc")
        ax.step(
            front["cost"], front["auc"], where="post", color="black", linewidth=1, linestyle=":", label="Pareto front"
        )
        ax.set_xscale("log")
        ax.set(
            title=f"{table.dataset}: quality against cost (mean ± sd over seeds)",
            xlabel="training seconds per epoch (log scale)",
            ylabel="test AUC",
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        return save_figure(fig, stem, debug_note(table))


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], dataset: str, stem: Path, note: Optional[str] = None
) -> list[Path]:
    """``{label: (mean predicted [B], observed rate [B], rows [B])}`` -> ``stem``.png: one
    panel per model, the diagonal of perfect calibration, each bin's rows in the title."""
    labels = sorted(curves, key=lambda label: KNOWN_LABELS.index(label) if label in KNOWN_LABELS else len(KNOWN_LABELS))
    columns = min(4, len(labels))
    grid_rows = -(-len(labels) // columns)
    top = max(max(np.max(p), np.max(o)) for p, o, _ in curves.values()) * 1.05
    with _style():
        fig, axes = plt.subplots(
            grid_rows,
            columns,
            figsize=(3.2 * columns, 3.0 * grid_rows),
            squeeze=False,
            sharex=True,
            sharey=True,
            layout="constrained",
        )
        for ax in axes.flat[len(labels) :]:
            ax.set_visible(False)
        for ax, label in zip(axes.flat, labels):
            predicted, observed, rows = curves[label]
            ax.plot([0, top], [0, top], color="dimgray", linestyle="--", linewidth=1)
            ax.plot(predicted, observed, marker="o", ms=3.5, color=model_color(label))
            ax.set(title=f"{label} ({len(rows)} bins of ~{int(np.median(rows)):,} rows)", xlim=(0, top), ylim=(0, top))
            ax.title.set_fontsize(9)
        for ax in axes[-1]:
            ax.set_xlabel("mean predicted probability")
        for ax in axes[:, 0]:
            ax.set_ylabel("observed click rate")
        fig.suptitle(f"{dataset}: reliability of the test predictions (equal-mass bins, seeds pooled)")
        return save_figure(fig, stem, note)


def plot_study(study, folder: Path) -> tuple[list[Path], list[str]]:
    """An ``optuna.Study`` -> optimization_history.png and param_importances.png in
    ``folder``; returns the files and notes on what could not be drawn."""
    import optuna

    notes: list[str] = []
    if len(study.directions) != 1:
        return [], [f"{study.study_name}: multi-objective study; history and importances not drawn"]
    # from the trials themselves: trials_dataframe names the value column after the metric once set
    complete = pd.DataFrame(
        [{"number": t.number, "value": t.value} for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE],
        columns=["number", "value"],
    )
    if complete.empty:
        return [], [f"{study.study_name}: no completed trial"]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    objective = (study.metric_names or ["objective"])[0]
    best_so_far = complete["value"].cummax() if maximize else complete["value"].cummin()
    paths: list[Path] = []
    with _style():
        fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        sns.scatterplot(data=complete, x="number", y="value", color="#1f77b4", label="trial", ax=ax)
        ax.step(complete["number"], best_so_far, where="post", color="#d62728", label="best so far")
        ax.set(
            title=f"{study.study_name}: optimisation history ({'max' if maximize else 'min'}imize)",
            xlabel="trial",
            ylabel=objective,
        )
        ax.legend(frameon=False)
        paths += save_figure(fig, folder / "optimization_history")

        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as err:  # too few trials or no varying parameter
            importances = {}
            notes.append(f"{study.study_name}: no hyperparameter importances ({err})")
        if importances:
            frame = pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())})
            fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(frame)), layout="constrained")
            sns.barplot(data=frame, x="importance", y="parameter", color="#1f77b4", ax=ax)
            ax.set(title=f"{study.study_name}: hyperparameter importance", xlabel="importance (sums to 1)", ylabel="")
            paths += save_figure(fig, folder / "param_importances")
    return paths, notes
