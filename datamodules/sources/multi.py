"""Multi-valued columns (genres, tags, recent items): their options and their lists, read vectorised.

A CSV/TSV cell holds the tokens separated by ``sep`` (an empty cell is an empty list); a Parquet
column is either such text or a list of strings or integers, read as it is. Tokens are stripped of
surrounding whitespace and empty tokens dropped. A list longer than ``max_len`` keeps its first
(``keep: first``) or last ``max_len`` tokens, and is counted. Nothing here loops over rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datamodules.errors import BadInputError
from datamodules.sources.values import categorical_from_column

POOLINGS = ("mean", "sum", "max")
KEEPS = ("first", "last")


@dataclass(frozen=True)
class MultiValued:
    """One multi-valued column's options: sep, the token separator in text cells; max_len, the
    tokens kept per row; pooling, how a model makes one vector of them; keep, which end of a longer
    list is kept."""

    sep: str = "|"
    max_len: int = 20
    pooling: str = "mean"
    keep: str = "first"

    def __post_init__(self):
        if not self.sep or self.max_len < 1 or self.pooling not in POOLINGS or self.keep not in KEEPS:
            raise BadInputError(
                f"multi_valued options: sep must be non-empty, max_len >= 1, pooling one of {POOLINGS}, "
                f"keep one of {KEEPS}; got {asdict(self)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def multi_valued_options(value: Optional[Sequence[str] | Mapping[str, Any]]) -> dict[str, MultiValued]:
    """``data.source.multi_valued`` -> ``{column: MultiValued}``: a list of column names (default
    options) or a mapping from column name to options (null for the defaults)."""
    if not value:
        return {}
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Mapping):
        return {str(name): MultiValued() for name in value}
    options = {}
    for name, given in value.items():
        given = dict(given or {})
        unknown = sorted(set(given) - {"sep", "max_len", "pooling", "keep"})
        if unknown:
            raise BadInputError(
                f"multi_valued column {name!r}: unknown option(s) {unknown}; use sep, max_len, pooling, keep"
            )
        options[str(name)] = MultiValued(**given)
    return options


class MultiColumn(NamedTuple):
    """One multi-valued field of a chunk, factorised: row ``i``'s tokens are ``uniques[codes[i, :]]``.

    codes: int32 ``[N, max_len]``, -1 where the list has no token (padding); uniques: int64 ``[U]``
    distinct keys (as ``CategoricalColumn``'s); text: whether the keys are text; lengths: int32
    ``[N]`` tokens each row held before truncation."""

    codes: np.ndarray
    uniques: np.ndarray
    text: bool
    lengths: np.ndarray

    def take(self, rows: np.ndarray) -> "MultiColumn":
        return MultiColumn(self.codes[rows], self.uniques, self.text, self.lengths[rows])


def check_multi_type(kind: pa.DataType, where: str, name: str) -> None:
    """A Parquet column declared multi-valued must be text (split at ``sep``) or a list of strings or
    integers; ``where`` names the file and row group."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        value = kind.value_type
        if pa.types.is_string(value) or pa.types.is_large_string(value) or pa.types.is_integer(value):
            return
        raise BadInputError(
            f"{where}, column {name!r}: a list of {value}; a multi-valued Parquet column must be a list of "
            f"strings or integers"
        )
    raise BadInputError(
        f"{where}, column {name!r}: holds {kind} values, not text with separators nor a list; declare it "
        f"numeric or categorical, not multi_valued"
    )


def multi_column(column: pa.Array | pa.ChunkedArray, options: MultiValued) -> MultiColumn:
    """A column of separated text or of lists ``[N]`` -> its rows' tokens, truncated to ``max_len``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.split_pattern(column, options.sep)
    tokens = pc.list_flatten(column)  # a null list has no tokens, like an empty one
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    parent = np.repeat(np.arange(len(column)), lengths)
    tokens, dropped = _cleaned(tokens)
    if dropped is not None:  # empty or null tokens are no tokens: the lists shrink
        tokens, parent = tokens.filter(pa.array(~dropped)), parent[~dropped]
        lengths = np.bincount(parent, minlength=len(column))
    position = np.arange(len(parent)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if options.keep == "first":
        slot = position
    else:  # the last max_len tokens, moved to the front
        slot = position - np.repeat(np.maximum(lengths - options.max_len, 0), lengths)
    kept = None if lengths.max(initial=0) <= options.max_len else (slot >= 0) & (slot < options.max_len)
    if kept is not None:
        tokens, parent, slot = tokens.filter(pa.array(kept)), parent[kept], slot[kept]
    factorised = categorical_from_column(tokens)
    codes = np.full((len(column), options.max_len), -1, dtype=np.int32)
    codes.reshape(-1)[parent * options.max_len + slot] = factorised.codes
    return MultiColumn(codes, factorised.uniques, factorised.text, lengths.astype(np.int32))


def _cleaned(tokens: pa.Array) -> tuple[pa.Array, Optional[np.ndarray]]:
    """``(the tokens stripped of surrounding whitespace, bool [T] the null or empty ones or None)``;
    None, the usual case, when no token is dropped. Text whose bytes cannot be whitespace is left
    as it is, without a pass that copies it."""
    if pa.types.is_integer(tokens.type):
        return tokens, tokens.is_null().to_numpy(zero_copy_only=False) if tokens.null_count else None
    if _may_have_spaces(tokens) or tokens.null_count:
        tokens = pc.utf8_trim_whitespace(tokens)
    dropped = pc.fill_null(pc.equal(pc.binary_length(tokens), 0), True)
    return tokens, dropped.to_numpy(zero_copy_only=False) if pc.any(dropped).as_py() else None


def _may_have_spaces(tokens: pa.Array) -> bool:
    """Whether a byte of the tokens' text is ASCII whitespace or control (<= 32) or not ASCII (a
    multi-byte character may be a Unicode space): only then can stripping change a token."""
    data = tokens.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool(((raw <= 32) | (raw >= 128)).any())


class LengthStats:
    """The distribution of multi-valued fields' list lengths (before truncation), accumulated per
    chunk as a histogram, which stays as small as the longest list."""

    def __init__(self, options: Mapping[str, MultiValued]):
        self.options = dict(options)
        self.histograms = {name: np.zeros(1, dtype=np.int64) for name in options}

    def add(self, columns: Sequence[MultiColumn]) -> None:
        for name, column in zip(self.options, columns):
            counts = np.bincount(column.lengths)
            total = self.histograms[name]
            if len(counts) > len(total):
                total = np.concatenate([total, np.zeros(len(counts) - len(total), dtype=np.int64)])
            total[: len(counts)] += counts
            self.histograms[name] = total

    def summary(self) -> dict:
        """Per field: rows, mean, p50, p99 and max of the lengths, lists truncated, and the options."""
        result = {}
        for name, histogram in self.histograms.items():
            rows, lengths = int(histogram.sum()), np.arange(len(histogram))
            # the q-quantile: the shortest length that at least a share q of the rows do not exceed
            p50, p99 = (int(np.searchsorted(np.cumsum(histogram), q * rows)) for q in (0.5, 0.99))
            result[name] = {
                "rows": rows,
                "mean": round(float((histogram * lengths).sum() / max(rows, 1)), 4),
                "p50": p50,
                "p99": p99,
                "max": int(np.flatnonzero(histogram).max()) if rows else 0,
                "empty": int(histogram[0]),
                "truncated": int(histogram[self.options[name].max_len + 1 :].sum()),
                **self.options[name].to_dict(),
            }
        return result
