"""Which split each data row goes to.

Rows are assigned by their position among a part's data rows (bad rows included), so the
assignment is fixed before any row is read and does not move when a row is rejected:

- ``random``: exact sizes ``round(ratio * rows)`` from a seeded permutation (the paper: 90/10 with
  validation carved from train, i.e. ratios ``[0.81, 0.09, 0.10]``; BARS x4: ``[0.8, 0.1, 0.1]``);
- ``sequential``: the first rows train, the next val, the last test (the Criteo file is in time order);
- ``predefined``: one file per split; ``val_from_train`` carves a random validation share out of the
  train file when there is no val file;
- ``auto``: ``predefined`` when the source has per-split files, else ``random``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from datamodules.errors import BadInputError
from datamodules.sources.base import SPLITS, WHOLE

SPLIT_KINDS = ("auto", "random", "sequential", "predefined")
TRAIN, VAL, TEST = range(3)


@dataclass(frozen=True)
class SplitConfig:
    kind: str = "auto"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    val_from_train: float = 0.0

    def __post_init__(self):
        if self.kind not in SPLIT_KINDS:
            raise ValueError(f"split.kind must be one of {SPLIT_KINDS}, got {self.kind!r}")
        if len(self.ratios) != 3 or min(self.ratios) < 0 or sum(self.ratios) <= 0:
            raise ValueError(f"split.ratios must be three non-negative numbers [train, val, test], got {self.ratios}")
        if not 0 <= self.val_from_train < 1:
            raise ValueError(f"split.val_from_train must be in [0, 1), got {self.val_from_train}")

    @classmethod
    def from_any(cls, value: "SplitConfig | Mapping[str, Any] | None") -> "SplitConfig":
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        ratios = value.get("ratios")
        if isinstance(ratios, Mapping):
            value["ratios"] = tuple(float(ratios.get(s, 0.0)) for s in SPLITS)
        elif ratios is not None:
            value["ratios"] = tuple(float(r) for r in ratios)
        return cls(**value)

    def resolved(self, parts: Sequence[str]) -> "SplitConfig":
        """This config with ``auto`` replaced and the fields that do not apply reset (so that the
        cache key only depends on what matters)."""
        predefined = tuple(parts) != (WHOLE,)
        kind = ("predefined" if predefined else "random") if self.kind == "auto" else self.kind
        if predefined != (kind == "predefined"):
            needs = "per-split `files`" if kind == "predefined" else "a single `path`"
            raise BadInputError(f"split.kind={kind!r} needs {needs}; the source has parts {list(parts)}")
        if kind == "predefined":
            if "val" in parts and self.val_from_train > 0:
                raise BadInputError(
                    "split.val_from_train carves validation rows out of the train file, but there "
                    "is a val file too; use one or the other"
                )
            missing = [s for s in SPLITS if s not in parts and not (s == "val" and self.val_from_train > 0)]
            if missing:
                raise BadInputError(
                    f"predefined split: no {' / '.join(missing)} file"
                    + (
                        " (or set split.val_from_train to carve validation rows out of train)"
                        if "val" in missing
                        else ""
                    )
                )
            carve = self.val_from_train
            return SplitConfig("predefined", (1.0 - carve, carve, 0.0), self.seed if carve else 0, carve)
        total = sum(self.ratios)
        ratios = tuple(r / total for r in self.ratios)
        return SplitConfig(kind, ratios, self.seed if kind == "random" else 0, 0.0)

    def needs_row_count(self, part: str) -> bool:
        return part == WHOLE or (part == "train" and self.val_from_train > 0)

    def assign(self, part: str, rows: Optional[int]) -> np.ndarray | int:
        """Split of each data row of ``part``: uint8 ``[rows]`` (0 train, 1 val, 2 test), or one
        split for the whole part. Call on a ``resolved`` config (for a carved train file its ratios
        are ``[1 - val_from_train, val_from_train, 0]``)."""
        if part != WHOLE and not self.needs_row_count(part):
            return SPLITS.index(part)
        sizes = np.round(np.array(self.ratios) * rows).astype(np.int64)
        sizes[TRAIN] = max(rows - sizes[VAL] - sizes[TEST], 0)
        sizes[TEST] = rows - sizes[TRAIN] - sizes[VAL]
        ordered = np.repeat(np.arange(3, dtype=np.uint8), sizes)
        if self.kind == "sequential":
            return ordered
        shuffled = np.empty(rows, dtype=np.uint8)
        shuffled[np.random.default_rng([self.seed, 3]).permutation(rows)] = ordered
        return shuffled

    def to_dict(self) -> dict:
        return asdict(self)
