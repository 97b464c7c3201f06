"""The published numbers of ``references.yaml``, loaded and checked.

``load_references() -> list[Reference]``; ``reference_for(dataset)`` picks the one column a
results table is compared against (or None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml

from experiments.report.naming import KNOWN_LABELS

REFERENCES_FILE = Path(__file__).with_name("references.yaml")


class ReferenceFileError(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    key: str
    title: str  # short name for table headers, e.g. "DeepFM paper"
    dataset: Optional[str]  # results dataset compared against it; None: never compared
    setting: str
    source: str  # citation
    scores: pd.DataFrame  # index: model label; columns: auc, logloss
    board: Optional[str] = None  # the experiment whose runs its board report shows (experiments.report.board)
    selection: Optional[str] = None  # how the publisher picked each row (which run, which trial)

    def __repr__(self) -> str:
        return f"Reference({self.key!r}, dataset={self.dataset!r}, models={list(self.scores.index)})"


class _LineLoader(yaml.SafeLoader):
    """Safe YAML loader whose mappings remember the line they start on (1-based), so that a
    wrong value is reported with its line."""


def _construct_mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = _LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


class _LineDict(dict):
    line: int = 0


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_with_line)

_REQUIRED_KEYS = ("key", "title", "dataset", "setting", "source", "models")


def load_references(path: Path | str = REFERENCES_FILE) -> list[Reference]:
    """Parse and validate the reference file; errors name the file and line."""
    path = Path(path)
    try:
        entries = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise ReferenceFileError(f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML: {err.problem}") from err
    if not isinstance(entries, list):
        raise ReferenceFileError(f"{path}:1: expected a list of reference columns")

    def fail(line: int, message: str):
        raise ReferenceFileError(f"{path}:{line}: {message}")

    references: list[Reference] = []
    for entry in entries:
        line = getattr(entry, "line", 0)
        if not isinstance(entry, dict):
            fail(line, "each reference must be a mapping")
        missing = [k for k in _REQUIRED_KEYS if k not in entry]
        if missing:
            fail(line, f"reference is missing {', '.join(missing)}")
        models = entry["models"]
        if not isinstance(models, dict) or not models:
            fail(line, f"{entry['key']}: 'models' must map model names to {{auc, logloss}}")
        rows = {}
        for label, score in models.items():
            score_line = getattr(score, "line", line)
            if label not in KNOWN_LABELS:
                # a misspelt name would silently never meet a results row
                fail(score_line, f"{entry['key']}: unknown model name {label!r}; use one of {', '.join(KNOWN_LABELS)}")
            if not isinstance(score, dict) or set(score) != {"auc", "logloss"}:
                fail(score_line, f"{entry['key']}/{label}: expected exactly {{auc: ..., logloss: ...}}")
            for metric, value in score.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    fail(score_line, f"{entry['key']}/{label}: {metric} = {value!r} is not a finite number")
            if not 0.0 <= score["auc"] <= 1.0 or score["logloss"] < 0.0:
                fail(score_line, f"{entry['key']}/{label}: AUC must lie in [0, 1] and LogLoss be >= 0")
            rows[str(label)] = (float(score["auc"]), float(score["logloss"]))
        dataset = entry["dataset"]
        if dataset is not None and any(r.dataset == dataset for r in references):
            fail(line, f"two references are compared against dataset {dataset!r}; keep one")
        references.append(
            Reference(
                key=str(entry["key"]),
                title=str(entry["title"]),
                dataset=None if dataset is None else str(dataset),
                setting=str(entry["setting"]),
                source=str(entry["source"]),
                scores=pd.DataFrame.from_dict(rows, orient="index", columns=["auc", "logloss"]),
                board=None if entry.get("board") is None else str(entry["board"]),
                selection=None if entry.get("selection") is None else str(entry["selection"]),
            )
        )
    return references


def reference_for(dataset: str, references: Optional[list[Reference]] = None) -> Optional[Reference]:
    """The column a dataset's table is compared against: exact dataset-name match only."""
    for reference in load_references() if references is None else references:
        if reference.dataset is not None and reference.dataset == dataset:
            return reference
    return None
