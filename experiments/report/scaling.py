"""The data-scaling report: test AUC against training rows per model, beside the ceilings.

    python -m experiments.report.scaling multirun/<date>/<time> --out results/tables/data_scaling

From the runs of ``experiment=data_scaling`` (one dataset, models x ``data.source.rows``): a table
of each model's test AUC and its share of its family's ceiling per training-set size, and a plot of
test AUC against training rows (log scale) with the oracle and the two ceilings as lines. Every
size has its own test split, so the ceilings are drawn per size too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from experiments.report.collect import TEST_AUC, collect_runs
from experiments.report.naming import CEILING_LABELS, ORACLE_LABEL, family_of, label_sort_key
from experiments.report.writer import record_provenance

ORACLE_COLUMN = "oracle/test/auc"


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, training rows): seeds, test AUC mean and sd, its ceiling, the share."""
    ceilings = {"full": ORACLE_COLUMN, **{family: f"ceiling/{family}/test/auc" for family in CEILING_LABELS}}
    rows = []
    for (label, model, train_rows), group in runs.groupby(["label", "model", "train_rows"]):
        ceiling = group[ceilings[family_of(str(model))]].mean()
        auc = group[TEST_AUC].mean()
        rows.append(
            {
                "model": label,
                "train_rows": int(train_rows),
                "seeds": len(group),
                "test_auc": auc,
                "test_auc_sd": group[TEST_AUC].std(ddof=1),
                "ceiling_auc": ceiling,
                "share_of_ceiling": (auc - 0.5) / (ceiling - 0.5),
                "share_of_oracle": (auc - 0.5) / (group[ORACLE_COLUMN].mean() - 0.5),
                "epochs": group["epochs"].mean(),
                "train_seconds": group["train_time_s"].mean(),
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values(["model", "train_rows"], key=lambda c: c.map(label_sort_key) if c.name == "model" else c)


def ceilings_by_size(runs: pd.DataFrame) -> pd.DataFrame:
    columns = {ORACLE_COLUMN: ORACLE_LABEL, **{f"ceiling/{f}/test/auc": label for f, label in CEILING_LABELS.items()}}
    present = [c for c in columns if c in runs]
    return runs.groupby("train_rows")[present].mean().rename(columns=columns)


def to_markdown(table: pd.DataFrame, ceilings: pd.DataFrame, command: Optional[str]) -> str:
    lines = ["# Data scaling: how close each family gets to its ceiling", ""]
    if command:
        lines += [f"Generated from the runs of `{command}`.", ""]
    lines += [
        "| model | training rows | seeds | test AUC | its ceiling | share of its ceiling's lift | "
        "share of the oracle's lift | epochs | training s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.itertuples():
        sd = "" if pd.isna(r.test_auc_sd) else f" ± {r.test_auc_sd:.4f}"
        lines.append(
            f"| {r.model} | {r.train_rows:,} | {r.seeds} | {r.test_auc:.4f}{sd} | {r.ceiling_auc:.4f} | "
            f"{100 * r.share_of_ceiling:.1f}% | {100 * r.share_of_oracle:.1f}% | {r.epochs:.1f} | "
            f"{r.train_seconds:.0f} |"
        )
    lines += [
        "",
        "Ceilings on each size's test split:",
        "",
        "| training rows | " + " | ".join(ceilings.columns) + " |",
        "|---:|" + "---:|" * len(ceilings.columns),
    ]
    lines += [f"| {size:,} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for size, row in ceilings.iterrows()]
    lines += [
        "",
        "- Its ceiling: LR's is the first-order ceiling, FM's the first-order + pairwise one, the deep "
        "models' the oracle (see datamodules/sources/synthetic.py). Share of a lift: (AUC − 0.5) / (ceiling − 0.5).",
        "- Every size has its own random 80/10/10 split of its rows, so each has its own test split.",
    ]
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, ceilings: pd.DataFrame, stem: Path) -> list[Path]:
    from experiments.report import plots

    plt, sns = plots.plt, plots.sns
    with plots._style():
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        for model, group in table.groupby("model", sort=False):
            ax.errorbar(
                group["train_rows"],
                group["test_auc"],
                yerr=group["test_auc_sd"].fillna(0),
                marker="o",
                color=plots.model_color(model),
                label=model,
                capsize=2,
            )
        for (name, values), style in zip(ceilings.items(), ("-", "--", ":")):
            ax.plot(values.index, values.to_numpy(), color="dimgray", linestyle=style, linewidth=1, label=name)
        ax.set_xscale("log")
        ax.set(title="Test AUC against training rows", xlabel="training rows (log scale)", ylabel="test AUC")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        sns.despine(ax=ax)
        return plots.save_figure(fig, stem)


def write_scaling_report(paths: Sequence[Path], out_dir: Path, command: Optional[str] = None) -> list[Path]:
    runs = collect_runs(paths).runs
    if runs.empty:
        raise ValueError(f"no finished run under {', '.join(map(str, paths))}")
    if "train_rows" not in runs:
        raise ValueError("these runs do not record their training rows (metrics.json train_rows): rerun them")
    table, ceilings = scaling_table(runs), ceilings_by_size(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(to_markdown(table, ceilings, command), encoding="utf-8")
    table.to_csv(out_dir / "table.csv", index=False, float_format="%.6g")
    return [
        out_dir / "table.md",
        out_dir / "table.csv",
        *plot(table, ceilings, out_dir / "scaling"),
        record_provenance(out_dir, command),
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="the sweep folder(s) of experiment=data_scaling")
    parser.add_argument("--out", type=Path, help="default: <first folder>/results/data_scaling")
    parser.add_argument("--command", help="the command that made the runs, recorded in table.md")
    args = parser.parse_args(argv)
    try:
        written = write_scaling_report(args.paths, args.out or args.paths[0] / "results" / "data_scaling", args.command)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
