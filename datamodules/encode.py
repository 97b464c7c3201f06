"""Encoding fitted on the training rows only: raw values -> one global id per sparse field.

Per sparse field the local ids are ``0`` = out of vocabulary (rarer than ``min_count`` in the
training rows, or never seen there), ``1`` = missing, ``2..`` = the kept values, most frequent
first. Global id = field offset + local id (see ``Schema``). Numeric fields are either bucketized
with ``log_square`` (then they are sparse fields like the categorical ones) or kept ``dense``:
signed log, standardised with the training mean and std, 0 when missing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from datamodules.schema import Schema
from datamodules.sources.base import CategoricalColumn, RawChunk, Source
from datamodules.sources.columns import categorical_from_integers

OOV_ID, MISSING_ID, FIRST_VALUE_ID = 0, 1, 2
NUMERIC_MODES = ("log_square", "dense")


@dataclass(frozen=True)
class EncodingConfig:
    """min_count: training occurrences a value needs to get its own id; numeric: ``log_square``
    (bucketize) or ``dense``."""

    min_count: int = 1
    numeric: str = "log_square"

    def __post_init__(self):
        if self.min_count < 1 or self.numeric not in NUMERIC_MODES:
            raise ValueError(f"encoding: min_count must be >= 1 and numeric one of {NUMERIC_MODES}; got "
                             f"min_count={self.min_count}, numeric={self.numeric!r}")

    @classmethod
    def from_any(cls, value: "EncodingConfig | Mapping[str, Any] | None") -> "EncodingConfig":
        if isinstance(value, cls):
            return value
        return cls(**dict(value or {}))

    def to_dict(self) -> dict:
        return asdict(self)


def log_square(values: np.ndarray) -> np.ndarray:
    """float64 ``[N]`` -> int64 ``[N]`` buckets: floor(ln(x)^2) for x > 2, else int(x) (truncated).
    The transform of the Criteo competition winners and BARS Criteo_x4; NaN gives 0 (callers mask
    missing values separately)."""
    values = np.nan_to_num(values)
    logged = np.floor(np.log(np.maximum(values, 2.0)) ** 2)
    return np.where(values > 2, logged, np.trunc(values)).astype(np.int64)


def signed_log(values: np.ndarray) -> np.ndarray:
    """Compress heavy tails, keeping sign: ``[N] -> [N]``."""
    return np.sign(values) * np.log1p(np.abs(values))


class ValueCounter:
    """Occurrences of int64 keys, accumulated chunk by chunk in bounded memory.

    Chunk counts wait in a list and are merged (sort + segment sum) only once they outnumber the
    merged table, so a key-heavy field costs O(total log total) rather than a merge per chunk."""

    def __init__(self):
        self._keys = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """keys: int64 ``[U]`` distinct; counts: int64 ``[U]``."""
        self._pending.append((keys, counts))
        self._pending_size += len(keys)
        if self._pending_size > max(len(self._keys), 1 << 20):
            self._merge()

    def _merge(self) -> None:
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._pending, self._pending_size = [], 0
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else np.empty(0, int)
        self._keys = keys[starts]
        self._counts = np.add.reduceat(counts, starts) if len(keys) else counts

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (int64 ``[V]`` sorted distinct keys, int64 ``[V]`` their counts)."""
        self._merge()
        return self._keys, self._counts


@dataclass
class Vocabulary:
    """One sparse field's kept values. keys: int64 ``[V]`` sorted; ids: int32 ``[V]`` local ids."""

    keys: np.ndarray
    ids: np.ndarray

    @property
    def size(self) -> int:
        """Local ids the field owns: OOV, missing and the kept values."""
        return len(self.keys) + FIRST_VALUE_ID

    @classmethod
    def fit(cls, keys: np.ndarray, counts: np.ndarray, min_count: int) -> "Vocabulary":
        """Keep keys seen at least ``min_count`` times; number them by count (desc), then key."""
        kept = counts >= min_count
        keys, counts = keys[kept], counts[kept]
        ids = np.empty(len(keys), dtype=np.int32)
        ids[np.lexsort((keys, -counts))] = np.arange(FIRST_VALUE_ID, FIRST_VALUE_ID + len(keys), dtype=np.int32)
        return cls(keys, ids)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """int64 ``[U]`` -> int32 ``[U]`` local ids, ``OOV_ID`` for keys not kept."""
        if len(self.keys) == 0:
            return np.full(len(keys), OOV_ID, dtype=np.int32)
        position = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[position] == keys, self.ids[position], OOV_ID).astype(np.int32)


def _sparse_columns(chunk: RawChunk, bucketize_numeric: bool) -> list[CategoricalColumn]:
    """The chunk's sparse fields in schema order: bucketized numeric fields, then categorical."""
    columns = []
    if bucketize_numeric:
        for j in range(chunk.numeric.shape[1]):
            values = chunk.numeric[:, j]
            columns.append(categorical_from_integers(log_square(values), missing=np.isnan(values)))
    return columns + list(chunk.categorical)


class EncodingFitter:
    """Pass 1: sees every chunk, learns from the rows marked as training rows."""

    def __init__(self, source: Source, config: EncodingConfig):
        self.config = config
        self.bucketize = config.numeric == "log_square"
        self.numeric_fields = source.numeric_fields
        self.categorical_fields = source.categorical_fields
        sparse = len(self.categorical_fields) + (len(self.numeric_fields) if self.bucketize else 0)
        self.counters = [ValueCounter() for _ in range(sparse)]
        dense = 0 if self.bucketize else len(self.numeric_fields)
        self.dense_sum, self.dense_sq, self.dense_n = np.zeros(dense), np.zeros(dense), np.zeros(dense)

    def observe(self, chunk: RawChunk, train: np.ndarray) -> None:
        """train: bool ``[N]`` rows of the chunk that belong to the training split."""
        if not train.any():
            return
        for counter, column in zip(self.counters, _sparse_columns(chunk, self.bucketize)):
            codes = column.codes[train]
            counts = np.bincount(codes[codes >= 0], minlength=len(column.uniques))
            seen = np.flatnonzero(counts)
            counter.add(column.uniques[seen], counts[seen].astype(np.int64))
        if not self.bucketize:
            values = signed_log(chunk.numeric[train])
            present = ~np.isnan(values)
            self.dense_sum += np.where(present, values, 0).sum(axis=0)
            self.dense_sq += np.where(present, values ** 2, 0).sum(axis=0)
            self.dense_n += present.sum(axis=0)

    def finish(self) -> "Encoding":
        vocabularies = [Vocabulary.fit(*counter.result(), self.config.min_count) for counter in self.counters]
        names = ([(n, "numeric") for n in self.numeric_fields] if self.bucketize else []) + \
                [(n, "categorical") for n in self.categorical_fields]
        schema = Schema.build([(name, kind, vocab.size) for (name, kind), vocab in zip(names, vocabularies)],
                              dense=[] if self.bucketize else list(self.numeric_fields))
        count = np.maximum(self.dense_n, 1)
        mean = self.dense_sum / count
        std = np.sqrt(np.maximum(self.dense_sq / count - mean ** 2, 0))
        return Encoding(schema, vocabularies, mean, np.where(std > 0, std, 1.0), self.bucketize)


@dataclass
class Encoding:
    """The fitted encoding. vocabularies: one per sparse field (schema order); dense_mean /
    dense_std: float64 ``[D]`` of the signed-log numeric values on the training rows."""

    schema: Schema
    vocabularies: list[Vocabulary]
    dense_mean: np.ndarray
    dense_std: np.ndarray
    bucketize: bool

    def encode(self, chunk: RawChunk) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """-> (int32 ``[N, S]`` global ids, float32 ``[N, D]`` dense values or ``None``)."""
        columns = _sparse_columns(chunk, self.bucketize)
        x = np.empty((chunk.num_rows, len(columns)), dtype=np.int32)
        for j, (field, vocab, column) in enumerate(zip(self.schema.sparse_fields, self.vocabularies, columns)):
            unique_ids = vocab.lookup(column.uniques) + field.offset
            x[:, j] = np.where(column.codes >= 0, unique_ids[np.maximum(column.codes, 0)] if len(unique_ids)
                               else 0, field.offset + MISSING_ID)
        if self.bucketize:
            return x, None
        dense = (signed_log(chunk.numeric) - self.dense_mean) / self.dense_std
        return x, np.nan_to_num(dense, nan=0.0).astype(np.float32)

    def save(self, path: Path) -> None:
        arrays = {f"keys_{i}": v.keys for i, v in enumerate(self.vocabularies)}
        arrays |= {f"ids_{i}": v.ids for i, v in enumerate(self.vocabularies)}
        meta = json.dumps({"schema": self.schema.to_json(), "bucketize": self.bucketize})
        np.savez(path, dense_mean=self.dense_mean, dense_std=self.dense_std, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: Path) -> "Encoding":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            schema = Schema.from_json(meta["schema"])
            vocabularies = [Vocabulary(data[f"keys_{i}"], data[f"ids_{i}"]) for i in range(schema.num_sparse)]
            return cls(schema, vocabularies, data["dense_mean"], data["dense_std"], meta["bucketize"])
