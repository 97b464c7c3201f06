"""Bad input: one exception type, and the ledger of rejected rows that ``on_bad_line`` drives.

Sources validate whole chunks with vectorised masks and hand the rows that failed to a
``RejectLog``. Under ``on_bad_line="error"`` the log raises for the earliest bad row, naming file,
line and what is wrong; under ``"skip"`` it counts rows per reason and keeps a few examples, so
that ``rows read == rows kept + rows rejected`` always holds and nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Literal, Sequence

import numpy as np

OnBadLine = Literal["error", "skip"]
MAX_EXAMPLES = 10  # rejected rows described in the manifest; enough to diagnose, cheap to compute


class BadInputError(ValueError):
    """Input that cannot be read as configured (missing/empty file, malformed row, bad config)."""


def check_on_bad_line(mode: str) -> OnBadLine:
    if mode not in ("error", "skip"):
        raise ValueError(f"on_bad_line must be 'error' or 'skip', got {mode!r}")
    return mode  # type: ignore[return-value]


class RejectLog:
    """Counts rejected rows by reason (``skip``) or raises on the first one (``error``)."""

    def __init__(self, mode: str):
        self.mode = check_on_bad_line(mode)
        self.by_reason: Counter[str] = Counter()
        self.examples: list[dict] = []
        self._file_rank: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def reject(
        self,
        path: str,
        positions: np.ndarray,
        codes: np.ndarray,
        reasons: Sequence[str],
        describe: Callable[[int], str],
        unit: str = "line",
    ) -> None:
        """Record bad rows of one chunk.

        positions: int64 ``[R]`` 1-based line (or row) numbers in ``path``; codes: int ``[R]``
        indexes into ``reasons``; ``describe(i)`` explains row ``i`` of these ``R`` rows. It is
        only called for the rows that are reported, so it may be slow.
        """
        if len(positions) == 0:
            return
        if self.mode == "error":
            first = int(np.argmin(positions))
            raise BadInputError(
                f"{path}, {unit} {positions[first]}: {reasons[codes[first]]}: "
                f"{describe(first)} (set on_bad_line=skip to drop such rows and count them)"
            )
        counts = np.bincount(codes, minlength=len(reasons))
        self.by_reason.update({reasons[c]: int(n) for c, n in enumerate(counts) if n})
        # Keep the first MAX_EXAMPLES rows in file order, whatever order the checks reported them in.
        self._file_rank.setdefault(path, len(self._file_rank))
        order = lambda e: (self._file_rank[e["file"]], e[unit])  # noqa: E731
        for i in np.argsort(positions, kind="stable")[:MAX_EXAMPLES]:
            example = {"file": path, unit: int(positions[i]), "reason": reasons[codes[i]]}
            if len(self.examples) == MAX_EXAMPLES and order(example) > order(self.examples[-1]):
                break
            self.examples.append({**example, "detail": describe(int(i))})
            self.examples.sort(key=order)
            del self.examples[MAX_EXAMPLES:]

    def summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in self.by_reason.most_common()) or "none"


class RowChecks:
    """Per-row validation of one chunk: each row gets the first reason it fails, in check order.

    ``fail(mask, reason, describe)`` marks rows where ``mask`` is true and no earlier check failed;
    ``describe(row)`` explains row ``row`` of the chunk (called only for reported rows).
    """

    def __init__(self, num_rows: int):
        self.code = np.full(num_rows, -1, dtype=np.int16)
        self.reasons: list[str] = []
        self._describers: list[Callable[[int], str]] = []

    def fail(self, mask: np.ndarray, reason: str, describe: Callable[[int], str]) -> None:
        fresh = mask & (self.code < 0)
        if fresh.any():
            self.code[fresh] = len(self.reasons)
            self.reasons.append(reason)
            self._describers.append(describe)

    @property
    def ok(self) -> np.ndarray:
        """bool ``[N]``: rows that passed every check."""
        return self.code < 0

    def report(self, rejects: RejectLog, path: str, positions: np.ndarray, unit: str = "line") -> int:
        """Hand the failed rows to ``rejects``; ``positions`` int64 ``[N]`` are all rows' line
        numbers. Returns the number of rejected rows."""
        bad = np.flatnonzero(self.code >= 0)
        if len(bad):
            codes = self.code[bad]
            rejects.reject(
                path, positions[bad], codes, self.reasons, lambda i: self._describers[codes[i]](int(bad[i])), unit=unit
            )
        return len(bad)
