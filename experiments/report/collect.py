"""Run folders -> one DataFrame of finished runs (and a list of the runs left out, with reasons).

A run folder is what run.py leaves in a Hydra run dir: ``.hydra/{config,overrides,hydra}.yaml``,
``metrics.json`` once the run finished, ``history.csv`` with one row per epoch. A sweep folder
holds numbered run folders and ``multirun.yaml``; any folder may be nested deeper.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd
import yaml

from experiments.report.naming import label_sort_key, model_label

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
HYDRA_DIR = ".hydra"
SWEEP_FILE = "multirun.yaml"
TEST_AUC, TEST_LOGLOSS = "test/auc", "test/logloss"
VAL_AUC = "val/auc"
ORACLE_AUC, ORACLE_LOGLOSS = "oracle/test/auc", "oracle/test/logloss"
HISTORY_COLUMNS = ("epoch", "val/auc")

# Reasons a run is left out of the tables (keys of RunCollection.ignored["reason"]).
NO_METRICS = "no metrics.json (unfinished)"
FAILED = "failed"
FAILURE_FILE = "failure.txt"  # what experiments.run writes into a run folder whose run failed
BAD_METRICS = "unreadable metrics.json"
NON_FINITE = "non-finite metrics"
BAD_CONFIG = "unreadable .hydra config"
UNIDENTIFIED = "model, dataset or seed unknown"
DUPLICATE = "same configuration and seed as a later run"

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Ignored(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class RunCollection:
    """``runs``: one row per finished run. Columns: run_dir, sweep_dir (or None), dataset, model
    (config name), label (printed name), seed, configuration (the run's overrides without the
    seed), finished_at (epoch seconds), then every key of metrics.json verbatim ("test/auc", ...).
    ``ignored``: one row per run left out: run_dir, dataset (None where unknown), reason, detail."""

    runs: pd.DataFrame
    ignored: pd.DataFrame
    roots: list[Path] = field(default_factory=list)

    def ignored_counts(self, dataset: Optional[str] = None) -> dict[str, int]:
        ignored = self.ignored if dataset is None else self.ignored[self.ignored["dataset"] == dataset]
        return {str(k): int(v) for k, v in ignored["reason"].value_counts(sort=True).items()}


def find_run_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Every folder under ``paths`` holding a ``metrics.json`` or a ``.hydra/config.yaml``."""
    found: dict[Path, None] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: expected a run, sweep or outputs folder")
        for folder, subdirs, files in os.walk(root):
            here = Path(folder)
            if METRICS_FILE in files or (here / HYDRA_DIR / "config.yaml").is_file():
                found[here.resolve()] = None
                subdirs.clear()  # a run folder holds checkpoints and logs, never another run
            else:
                subdirs[:] = sorted(d for d in subdirs if d != HYDRA_DIR)
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> tuple:
    """Sweep job folders sort numerically (2 before 10)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts)


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_YAML_LOADER)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        raise _Ignored(BAD_CONFIG, f"{path}:{line}: {err.problem}") from err


def _read_optional_yaml(path: Path) -> Any:
    return _read_yaml(path) if path.is_file() else None


def _dig(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _hydra_choices(run_dir: Path) -> dict:
    return _dig(_read_optional_yaml(run_dir / HYDRA_DIR / "hydra.yaml"), "hydra", "runtime", "choices") or {}


# Overrides that are not part of a configuration: the seed (what results average over) and the
# keys that change how a run executes, not what it trains.
NOT_CONFIGURATION = (
    "seed",
    "threads",
    "trainer.enable_progress_bar",
    "data.cache_dir",
    "data.num_workers",
    "data.prefetch",
    "save_predictions",
    "logger",
)


def _is_configuration_override(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] not in NOT_CONFIGURATION


def _configuration(run_dir: Path) -> str:
    """The run's command-line overrides minus the seed and execution settings: runs that share it
    differ only by seed."""
    overrides = _read_optional_yaml(run_dir / HYDRA_DIR / "overrides.yaml") or []
    return " ".join(sorted(str(o) for o in overrides if _is_configuration_override(str(o))))


def _read_metrics(path: Path) -> dict:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise _Ignored(BAD_METRICS, f"{path}:{err.lineno}: {err.msg}") from err
    except UnicodeDecodeError as err:
        raise _Ignored(BAD_METRICS, f"{path}: not UTF-8 text ({err.reason})") from err
    if not isinstance(metrics, dict):
        raise _Ignored(BAD_METRICS, f"{path}:1: expected a JSON object, found {type(metrics).__name__}")
    for key in (TEST_AUC, TEST_LOGLOSS):
        if key not in metrics:
            raise _Ignored(BAD_METRICS, f"{path}: no {key!r}")
    scores = {k: v for k, v in metrics.items() if "auc" in k or "logloss" in k}
    bad = [
        f"{k}={v!r}"
        for k, v in scores.items()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
    ]
    if bad:
        raise _Ignored(NON_FINITE, f"{path}: {', '.join(bad)}")
    return metrics


def find_sweep_dir(run_dir: Path, max_depth: int = 2) -> Optional[Path]:
    """The sweep folder (holding multirun.yaml) a run belongs to, if any."""
    for parent in list(run_dir.parents)[:max_depth]:
        if (parent / SWEEP_FILE).is_file():
            return parent
    return None


def _read_run(run_dir: Path) -> dict:
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        failure = run_dir / FAILURE_FILE
        if failure.is_file():
            reason = failure.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["(no reason)"]
            raise _Ignored(FAILED, f"{run_dir}: {reason[0]}")
        raise _Ignored(NO_METRICS, str(run_dir))
    metrics = _read_metrics(metrics_path)
    config = _read_optional_yaml(run_dir / HYDRA_DIR / "config.yaml") or {}
    choices = _hydra_choices(run_dir)
    model = metrics.get("model") or choices.get("model")
    dataset = metrics.get("dataset") or _dig(config, "data", "name") or choices.get("data")
    seed = metrics.get("seed", _dig(config, "seed"))
    if model is None or dataset is None or seed is None:
        raise _Ignored(
            UNIDENTIFIED,
            f"{metrics_path}: model={model!r} dataset={dataset!r} seed={seed!r} (not in metrics.json nor .hydra)",
        )
    sweep_dir = find_sweep_dir(run_dir)
    return {
        **metrics,
        "run_dir": str(run_dir),
        "sweep_dir": None if sweep_dir is None else str(sweep_dir),
        "dataset": str(dataset),
        "model": str(model),
        "label": model_label(str(model)),
        "seed": seed,
        "experiment": choices.get("experiment"),
        "configuration": _configuration(run_dir),
        "finished_at": metrics_path.stat().st_mtime,
    }


def _dataset_of_unfinished(run_dir: Path) -> Optional[str]:
    try:
        config = _read_optional_yaml(run_dir / HYDRA_DIR / "config.yaml") or {}
        return _dig(config, "data", "name") or _hydra_choices(run_dir).get("data")
    except _Ignored:
        return None


_RUN_META = ["run_dir", "sweep_dir", "dataset", "model", "label", "seed", "configuration", "finished_at"]


def collect_runs(paths: Iterable[Path | str]) -> RunCollection:
    """Read every run under ``paths``; keep the finished ones, count the others by reason."""
    roots = [Path(p) for p in paths]
    rows, ignored = [], []
    for run_dir in find_run_dirs(roots):
        try:
            rows.append(_read_run(run_dir))
        except _Ignored as skip:
            ignored.append(
                {
                    "run_dir": str(run_dir),
                    "dataset": _dataset_of_unfinished(run_dir),
                    "reason": skip.reason,
                    "detail": skip.detail,
                }
            )
    runs = pd.DataFrame(rows, columns=None if rows else _RUN_META)
    runs, duplicates = _drop_superseded(runs)
    ignored_frame = pd.DataFrame(ignored, columns=["run_dir", "dataset", "reason", "detail"])
    return RunCollection(runs=runs, ignored=pd.concat([ignored_frame, duplicates], ignore_index=True), roots=roots)


def _drop_superseded(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A configuration re-run with the same seed counts once: the latest run wins."""
    key = ["dataset", "label", "configuration", "seed"]
    runs = runs.sort_values("finished_at", kind="stable")
    superseded = runs.duplicated(key, keep="last")
    dropped = runs.loc[superseded, ["run_dir", "dataset"]].assign(
        reason=DUPLICATE, detail=runs.loc[superseded, "run_dir"]
    )
    return runs.loc[~superseded].reset_index(drop=True), dropped


def select_configurations(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Keep one configuration per (dataset, model): the one run with the most seeds, then the best
    mean validation AUC (never test: choosing on test would flatter the table), then the latest.
    An Optuna sweep leaves one configuration per trial; seeds are averaged within one only.
    Returns the kept runs and, per dataset, a note for each model that had several."""
    if runs.empty:
        return runs, {}
    val_auc = runs[VAL_AUC] if VAL_AUC in runs else pd.Series(float("nan"), index=runs.index)
    per_configuration = (
        runs.assign(_val_auc=val_auc)
        .groupby(["dataset", "label", "configuration"], sort=False)
        .agg(seeds=("seed", "nunique"), val_auc=("_val_auc", "mean"), last=("finished_at", "max"))
        .reset_index()
        .sort_values(["seeds", "val_auc", "last"], ascending=False, na_position="last", kind="stable")
    )
    counts = per_configuration.groupby(["dataset", "label"]).size().rename("configurations").reset_index()
    chosen = per_configuration.drop_duplicates(["dataset", "label"], keep="first").merge(counts)
    kept = runs.merge(chosen[["dataset", "label", "configuration"]], on=["dataset", "label", "configuration"])

    notes: dict[str, list[str]] = {}
    several = chosen[chosen["configurations"] > 1]
    for choice in sorted(several.itertuples(), key=lambda c: label_sort_key(c.label)):
        validation = "no validation AUC" if math.isnan(choice.val_auc) else f"mean validation AUC {choice.val_auc:.4f}"
        notes.setdefault(choice.dataset, []).append(
            f"{choice.label}: {choice.configurations} configurations found; shown: "
            f"`{choice.configuration or '(defaults)'}` ({choice.seeds} seed{'s' * (choice.seeds != 1)}, {validation}), "
            f"chosen for the most seeds, then the best validation AUC"
        )
    return kept.sort_values(["dataset", "label", "seed"], kind="stable").reset_index(drop=True), notes


def _history_problem(history: pd.DataFrame) -> Optional[str]:
    """``"line: what"`` for the first defect of a parsed history.csv, or None."""
    if not history.index.equals(pd.RangeIndex(len(history))):  # pandas took a surplus first column as index
        return "2: more fields than the header"
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        return f"1: header lacks {', '.join(missing)}"
    for column in history.columns.intersection(["epoch", "train/loss", "val/auc", "val/logloss"]):
        bad = pd.to_numeric(history[column], errors="coerce").isna() & history[column].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            return f"{row + 2}: {column} = {history[column].iloc[row]!r} is not a number"
    return None


def load_histories(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Every run's history.csv stacked into one long frame (columns of the file + dataset, label,
    seed, run_dir). Missing or malformed files are skipped and reported, never fatal."""
    frames, problems = [], []
    for run in runs[["run_dir", "dataset", "label", "seed"]].itertuples(index=False):
        path = Path(run.run_dir) / HISTORY_FILE
        if not path.is_file():
            problems.append(f"{path}: missing (no learning curve for this run)")
            continue
        try:
            history = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            problems.append(f"{path}: {err}".strip())
            continue
        problem = _history_problem(history)
        if problem:
            problems.append(f"{path}:{problem}")
            continue
        frames.append(history.assign(dataset=run.dataset, label=run.label, seed=run.seed, run_dir=run.run_dir))
    histories = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*HISTORY_COLUMNS, "dataset", "label", "seed", "run_dir"])
    )
    return histories, problems


# What Hydra and our sweeper add to a job's overrides, which a user never types.
INTERNAL_OVERRIDES = ("hydra.mode=", "hydra.sweep.subdir=", "++hydra.job.env_set.CTR_BENCH_")


def command_from_hydra(hydra: dict, multirun: bool) -> Optional[str]:
    """``hydra`` (the ``hydra`` node of hydra.yaml or multirun.yaml) -> the shell command line."""
    overrides = _dig(hydra, "overrides") or {}
    if not overrides:
        return None
    launcher_overrides = [o for o in overrides.get("hydra") or [] if not str(o).startswith(INTERNAL_OVERRIDES)]
    script = f"{_dig(hydra, 'job', 'name') or 'run'}.py"
    # --config-dir and --config-name are flags, not overrides: Hydra records them elsewhere
    config_dirs = [
        source.get("path")
        for source in _dig(hydra, "runtime", "config_sources") or []
        if isinstance(source, dict) and source.get("provider") == "command-line"
    ]
    config_name = _dig(hydra, "job", "config_name")
    words = [
        "python",
        script,
        *(["-m"] if multirun else []),
        *(word for path in config_dirs for word in ("--config-dir", str(path))),
        *(["--config-name", str(config_name)] if config_name not in (None, "config") else []),
        *map(str, launcher_overrides),
        *map(str, overrides.get("task") or []),
    ]
    return " ".join(shlex.quote(w) for w in words)


def reconstruct_commands(run_dirs: Iterable[Path | str]) -> list[str]:
    """The command lines that produced the runs: one per sweep (from its multirun.yaml), one per
    stand-alone run (from its .hydra/hydra.yaml, else .hydra/overrides.yaml)."""
    commands: dict[str, None] = {}
    for run_dir in map(Path, run_dirs):
        sweep_dir = find_sweep_dir(run_dir)
        try:
            if sweep_dir is not None:
                command = command_from_hydra(_dig(_read_yaml(sweep_dir / SWEEP_FILE), "hydra"), multirun=True)
            else:
                hydra = _dig(_read_optional_yaml(run_dir / HYDRA_DIR / "hydra.yaml"), "hydra")
                command = command_from_hydra(hydra, multirun=False) if hydra else None
                if command is None:
                    overrides = _read_optional_yaml(run_dir / HYDRA_DIR / "overrides.yaml") or []
                    command = " ".join(shlex.quote(w) for w in ["python", "run.py", *map(str, overrides)])
        except _Ignored as err:
            command = f"# command unknown: {err.detail}"
        commands[command] = None
    return list(commands)
