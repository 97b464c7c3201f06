"""The results collector: run folders -> <out>/<dataset>/table.{md,csv,tex} + figures + README.md.

    python -m experiments.report multirun/2026-11-24/12-00-00 [more folders] [--out results/tables [--replace]]
        [--command "what you ran"] [--study-storage sqlite:///sweeps.db [--study-name NAME]]

Without ``--out`` the report goes next to the runs (``<first folder>/results``). Into an existing
results folder it adds or refreshes datasets, and refuses, saying what would be lost, to replace
a dataset's table with one of fewer models, seeds or another configuration (``--replace`` does).

Per dataset: finished runs are grouped by model, one configuration per model is kept
(``collect.select_configurations``), seeds are averaged (``tables.build_table``), figures are drawn
(``plots``) and a ``provenance.json`` records how (commands, dates, hardware, versions).
``<out>/README.md`` is then rebuilt from every dataset and study folder under the output root
(``readme.write_readme``), so a report on one dataset keeps the others' sections.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence, TextIO

import pandas as pd

from experiments.report.board import BOARD_FILES, board_reference, write_board
from experiments.report.collect import (
    RunCollection,
    collect_runs,
    load_histories,
    reconstruct_commands,
    select_configurations,
)
from experiments.report.layout import PROVENANCE_FILE, STUDIES_DIR, TABLES
from experiments.report.naming import shown_storage
from experiments.report.predictions import reliability_curves, saved_predictions
from experiments.report.readme import BEST_PARAMS_FILE, DATASET_FIGURES, MAX_LISTED, STUDY_FIGURES, write_readme
from experiments.report.references import load_references, reference_for
from experiments.report.render import write_table
from experiments.report.tables import build_table
from measures import environment
from measures.environment import git_commit

LIBRARIES = (
    "torch",
    "pytorch-lightning",
    "hydra-core",
    "hydra-optuna-sweeper",
    "optuna",
    "pandas",
    "numpy",
    "seaborn",
    "matplotlib",
)
# every format a report has saved figures in (SVG beside PNG until reports wrote PNG alone)
_FIGURE_SUFFIXES = (".png", ".svg")


def _figure_files(stems: Sequence[str]) -> tuple[str, ...]:
    return tuple(stem + suffix for stem in stems for suffix in _FIGURE_SUFFIXES)


# Everything a dataset folder gets, removed before rewriting so that no figure of an older
# report survives beside newer tables.
_DATASET_OUTPUTS = (
    "table.md",
    "table.csv",
    "table.tex",
    *_figure_files(DATASET_FIGURES),
    PROVENANCE_FILE,
    BEST_PARAMS_FILE,
    "best_params.csv",
    *BOARD_FILES,
)
_STUDY_OUTPUTS = (*_figure_files(STUDY_FIGURES), PROVENANCE_FILE)


@dataclass
class ReportOutcome:
    datasets: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def folder_name(name: str) -> str:
    """A dataset or study name as one safe path component."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return safe or "unnamed"


def _holds_any(root: Path, run_dirs) -> bool:
    """Whether any of ``run_dirs`` lies under the folder ``root``."""
    resolved = root.resolve()
    return any(Path(run_dir).is_relative_to(resolved) for run_dir in run_dirs)


def _display_path(path: Path | str) -> str:
    """Paths under the working directory are recorded relative to it, so that committed results
    do not carry one machine's absolute paths."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _local_time(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).astimezone().isoformat(timespec="seconds")


def describe_hardware() -> dict:
    """CPU model, logical CPUs, cores and GPUs of this machine, and torch's threads where this process
    has torch loaded already (the Hydra callback after its runs): a report never loads torch itself."""
    counts = environment.cpu_counts()
    hardware = {
        "cpu": environment.cpu_name(),
        "logical_cpus": counts["logical"],
        "physical_cores": counts["physical"],
        "os": platform.platform(),
        "gpus": environment.gpu_names(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        hardware["torch_threads"] = torch.get_num_threads()
    return hardware


def library_versions() -> dict:
    return {"python": platform.python_version(), **environment.library_versions(LIBRARIES)}


def _clear(folder: Path, names: Sequence[str]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)


def _environment(command_note: Optional[str], note: Optional[str] = None) -> dict:
    return {
        "generated_at": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "command_note": command_note,
        "note": note,
        "git": git_commit(),
        "hardware": describe_hardware(),
        "versions": library_versions(),
    }


def record_provenance(folder: Path, command: Optional[str], note: Optional[str] = None) -> Path:
    """``folder/provenance.json`` of a report that is not a dataset's table (``ab``, ``scaling``): the
    command, when, at which commit and on what machine, for the results index."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PROVENANCE_FILE
    path.write_text(json.dumps(_environment(command, note), indent=2) + "\n", encoding="utf-8")
    return path


class OverwriteError(ValueError):
    """A report would replace results with fewer runs, fewer models or another configuration."""


def _run_keys(rows: pd.DataFrame) -> dict[str, tuple[str, set[str]]]:
    """label -> (configuration, seeds) of a table's rows that hold runs (not references, not the oracle)."""
    held = rows[rows["seeds"].fillna(0).astype(int) > 0]
    return {
        str(r.label): (str(r.configuration) if not pd.isna(r.configuration) else "", set(str(r.seed_list).split()))
        for r in held.itertuples()
    }


def losses_of_replacing(folder: Path, runs: pd.DataFrame) -> list[str]:
    """What writing ``runs`` into ``folder`` would lose of the table already there: models it
    lacks, seeds it lacks, or a model run in another configuration."""
    old_table = folder / "table.csv"
    if not old_table.is_file():
        return []
    old = _run_keys(
        pd.read_csv(old_table, dtype={"seed_list": str, "configuration": str}, keep_default_na=False, na_values=[""])
    )
    new = {
        label: (str(group["configuration"].iloc[0]), {str(s) for s in group["seed"]})
        for label, group in runs.groupby("label")
    }
    lost = []
    for label, (configuration, seeds) in old.items():
        if label not in new:
            lost.append(f"{label} (seeds {' '.join(sorted(seeds))})")
        elif new[label][0] != configuration:
            lost.append(
                f"{label} run as `{configuration or 'the defaults'}` (this report has "
                f"`{new[label][0] or 'the defaults'}`)"
            )
        elif seeds - new[label][1]:
            lost.append(f"{label} seeds {' '.join(sorted(seeds - new[label][1]))}")
    return lost


def report_dataset(
    collection: RunCollection,
    runs: pd.DataFrame,
    histories: pd.DataFrame,
    dataset: str,
    notes: list[str],
    out_dir: Path,
    environment: dict,
    stream: TextIO,
) -> list[Path]:
    """Tables, figures and provenance of one dataset in ``out_dir/<dataset>/``."""
    from experiments.report import plots  # seaborn/matplotlib load only when something is drawn

    folder = out_dir / folder_name(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    _clear(folder, _DATASET_OUTPUTS)
    predictions = saved_predictions(runs)
    references = load_references()
    table = build_table(runs, reference_for(dataset, references), notes, predictions)
    written = write_table(table, folder)
    board = board_reference(runs, references)
    if board is not None:
        written += write_board(table, board, predictions, folder)
    written += plots.plot_scores(runs, table, folder / "metrics")
    if not histories.empty:
        written += plots.plot_learning_curves(histories, folder / "learning_curves", plots.debug_note(table))
    if "train_seconds_per_epoch" in runs and runs["train_seconds_per_epoch"].notna().any():
        written += plots.plot_cost(runs, table, folder / "cost")
    curves = reliability_curves(predictions)
    if curves:
        written += plots.plot_reliability(curves, dataset, folder / "reliability", plots.debug_note(table))
    provenance = {
        "dataset": dataset,
        **environment,
        "inputs": [_display_path(root) for root in collection.roots if _holds_any(root, runs["run_dir"])],
        "commands": reconstruct_commands(runs.sort_values("finished_at")["run_dir"]),
        "runs_used": int(len(runs)),
        "runs_ignored": collection.ignored_counts(dataset),
        "runs_finished_between": [_local_time(runs["finished_at"].min()), _local_time(runs["finished_at"].max())],
        "reference": None if table.reference is None else table.reference.key,
    }
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    written.append(folder / PROVENANCE_FILE)

    print(f"\n== {dataset}: {_count(len(runs), 'run')}, {_count(runs['label'].nunique(), 'model')} ==", file=stream)
    print((folder / "table.md").read_text(encoding="utf-8"), file=stream)
    if board is not None:
        print((folder / "board.md").read_text(encoding="utf-8"), file=stream)
    return written


def _check_sqlite_file_exists(storage: str) -> None:
    # Optuna would silently create an empty database for a mistyped SQLite path.
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not Path(storage[len(prefix) :]).is_file():
        raise FileNotFoundError(f"{storage}: no such SQLite file")


def report_studies(
    storage: str, study_names: Optional[Sequence[str]], out_dir: Path, environment: dict, stream: TextIO
) -> tuple[list[str], list[Path]]:
    """Figures and a summary of each named study (all studies of ``storage`` when none is named)."""
    import optuna

    from experiments.report import plots

    _check_sqlite_file_exists(storage)
    available = optuna.get_all_study_names(storage)
    names = list(study_names) if study_names else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"no study {', '.join(map(repr, unknown))} in {shown_storage(storage)}; "
            f"it holds: {', '.join(available) or 'none'}"
        )
    written: list[Path] = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        folder = out_dir / STUDIES_DIR / folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        _clear(folder, _STUDY_OUTPUTS)
        paths, notes = plots.plot_study(study, folder)
        states = dict(Counter(trial.state.name.lower() for trial in study.trials))
        single = len(study.directions) == 1 and states.get("complete")
        summary = {
            "study": name,
            "storage": shown_storage(storage),
            **environment,
            "directions": [d.name.lower() for d in study.directions],
            "objective": (study.metric_names or ["objective"])[0],
            "trials": states,
            "best_value": study.best_value if single else None,
            "best_params": study.best_params if single else None,
            "best_trial": study.best_trial.number if single else None,
            "notes": notes,
        }
        (folder / PROVENANCE_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        written += [*paths, folder / PROVENANCE_FILE]
        print(
            f"\n== study {name}: {states}"
            + (f", best {summary['best_value']:.6g} with {summary['best_params']}" if single else "")
            + " ==",
            file=stream,
        )
        for note in notes:
            print(f"note: {note}", file=stream)
    return names, written


def run_report(
    paths: Sequence[Path | str],
    out_dir: Path | str = TABLES,
    command: Optional[str] = None,
    study_storage: Optional[str] = None,
    study_names: Optional[Sequence[str]] = None,
    stream: Optional[TextIO] = None,
    note: Optional[str] = None,
    replace: bool = False,
) -> ReportOutcome:
    """Collect the runs under ``paths`` (and the Optuna studies of ``study_storage``) into
    ``out_dir``; prints the tables, what was ignored and what was written to ``stream`` (stdout).

    A dataset folder already in ``out_dir`` is only replaced by a report that keeps every model,
    seed and configuration it holds (more runs, or the same); otherwise ``OverwriteError`` names
    what would be lost, before anything is written, unless ``replace``."""
    stream = stream or sys.stdout
    out_dir = Path(out_dir)
    outcome = ReportOutcome()
    environment = _environment(command, note)
    if paths:
        _report_runs(paths, out_dir, environment, replace, stream, outcome)
    if study_storage:
        outcome.studies, written = report_studies(study_storage, study_names, out_dir, environment, stream)
        outcome.written += written
    if outcome.datasets or outcome.studies:
        outcome.written.append(write_readme(out_dir))
    print(f"\nwrote {len(outcome.written)} files under {out_dir}:", file=stream)
    for path in outcome.written:
        print(f"  {path}", file=stream)
    return outcome


def _report_runs(
    paths: Sequence[Path | str], out_dir: Path, environment: dict, replace: bool, stream: TextIO, outcome: ReportOutcome
) -> None:
    """Each dataset of the runs under ``paths`` into its folder of ``out_dir``, added to ``outcome``."""
    collection = collect_runs(paths)
    outcome.ignored = collection.ignored_counts()
    selected, notes = select_configurations(collection.runs)
    histories, history_problems = load_histories(selected)
    for problem in history_problems[:MAX_LISTED]:
        print(f"warning: {problem}", file=stream)
    if not replace:
        _refuse_losses(selected, out_dir)
    for dataset, runs in selected.groupby("dataset", sort=True):
        outcome.written += report_dataset(
            collection,
            runs,
            histories[histories["dataset"] == dataset],
            str(dataset),
            notes.get(dataset, []),
            out_dir,
            environment,
            stream,
        )
        outcome.datasets.append(str(dataset))
    _print_ignored(collection, stream)


def _refuse_losses(selected: pd.DataFrame, out_dir: Path) -> None:
    """``OverwriteError`` where writing ``selected`` would lose some of what a dataset folder holds."""
    lost = {
        dataset: losses_of_replacing(out_dir / folder_name(str(dataset)), runs)
        for dataset, runs in selected.groupby("dataset", sort=True)
    }
    lost = {dataset: items for dataset, items in lost.items() if items}
    if lost:
        raise OverwriteError(
            "not replacing results that this report lacks: "
            + "; ".join(f"{out_dir / folder_name(str(d))}: {', '.join(items)}" for d, items in lost.items())
            + ". Report all the runs together, write elsewhere (--out), or pass --replace to drop them."
        )


def _print_ignored(collection: RunCollection, stream: TextIO) -> None:
    total = len(collection.ignored)
    print(
        f"\nignored {_count(total, 'run')}"
        + (": " + "; ".join(f"{n} {reason}" for reason, n in collection.ignored_counts().items()) if total else ""),
        file=stream,
    )
    for detail in collection.ignored["detail"].head(MAX_LISTED):
        print(f"  {detail}", file=stream)
    if total > MAX_LISTED:
        print(f"  ... and {total - MAX_LISTED} more", file=stream)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="run, sweep or outputs folders (searched recursively)")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output root (default: <the first folder>/results, next to its runs; the committed "
        "tables are under results/tables/)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace dataset folders even where this report has fewer runs, models or seeds",
    )
    parser.add_argument("--command", help="the command that produced the runs, recorded in the README")
    parser.add_argument("--note", help="what the data is, shown under the dataset's heading in the README")
    parser.add_argument("--study-storage", metavar="URL", help="Optuna storage URL, e.g. sqlite:///sweeps.db")
    parser.add_argument(
        "--study-name",
        action="append",
        dest="study_names",
        metavar="NAME",
        help="study to plot (repeatable; default: every study in the storage)",
    )
    args = parser.parse_args(argv)
    if not args.paths and not args.study_storage:
        parser.error("give at least one run folder or --study-storage")
    if args.study_names and not args.study_storage:
        parser.error("--study-name needs --study-storage")
    out = args.out or (args.paths[0] / "results" if args.paths else Path("results"))
    try:
        outcome = run_report(
            args.paths, out, args.command, args.study_storage, args.study_names, note=args.note, replace=args.replace
        )
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not outcome.datasets and not outcome.studies:
        print("error: no finished run found (see the ignored runs above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
