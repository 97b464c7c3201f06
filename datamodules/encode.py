"""Encoding fitted on the training rows only: raw values -> one global id per sparse field.

A value is kept when it occurs at least ``min_count`` times in the training rows; the others, and
values never seen there, are out of vocabulary (OOV). Global id = field offset + local id (see
``Schema``). Numeric fields are either bucketized with ``log_square`` (then they are sparse fields
like the categorical ones) or kept ``dense``: signed log, standardised with the training mean and
std, 0 when missing. Two conventions number the local ids of a field with ``V`` kept values:

- ``ctr_bench`` (default): ``0`` = OOV, ``1`` = missing, ``2..V+1`` = the kept values, most
  frequent first (ties by key). Missing is a value of its own: in Criteo an empty integer field
  is not a zero, and LR alone tells them apart (0.7716 against 0.7460 AUC on a Criteo-shaped file).
- ``fuxictr``: FuxiCTR's ``FeatureProcessor`` and ``Tokenizer`` (the preprocessing of BARS's
  Criteo_x4 and Frappe_x1): ``0`` = padding (never produced), ``1..V`` = the kept values -- text
  fields most frequent first, ties in text order; integer and bucketized fields by value,
  ascending --, ``V+1`` = OOV, which missing categorical values share; a missing numeric value is
  filled with 0 before bucketing, so it shares bucket 0 with a real 0. Text longer than 8 bytes
  is keyed by a 64-bit hash, so its ties are ordered by hash instead.

Both give a field ``V + 2`` local ids. A multi-valued field's tokens are counted one by one (a
token twice in a list counts twice) and numbered the same way; its "missing" id is the padding that
fills a short list (``ctr_bench``: ``1``; ``fuxictr``: ``0``, FuxiCTR's padding, apart from OOV).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from datamodules.schema import Schema
from datamodules.sources.base import CategoricalColumn, RawChunk, Source

OOV_ID, MISSING_ID, FIRST_VALUE_ID = 0, 1, 2
NUMERIC_MODES = ("log_square", "dense")
CONVENTIONS = ("ctr_bench", "fuxictr")


@dataclass(frozen=True)
class EncodingConfig:
    """min_count: training occurrences a value needs to get its own id; numeric: ``log_square``
    (bucketize) or ``dense``; convention: how ids are numbered and missing values treated
    (``ctr_bench`` or ``fuxictr``, see the module docstring)."""

    min_count: int = 1
    numeric: str = "log_square"
    convention: str = "ctr_bench"

    def __post_init__(self):
        if self.min_count < 1 or self.numeric not in NUMERIC_MODES or self.convention not in CONVENTIONS:
            raise ValueError(
                f"encoding: min_count must be >= 1, numeric one of {NUMERIC_MODES} and convention one "
                f"of {CONVENTIONS}; got min_count={self.min_count}, numeric={self.numeric!r}, "
                f"convention={self.convention!r}"
            )

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


def text_order(keys: np.ndarray) -> np.ndarray:
    """Sort keys of packed text (``values.string_keys``: up to 8 bytes, little-endian, zero-padded)
    -> uint64 values that order as the texts do: the bytes read big-endian."""
    return keys.view(np.uint64).byteswap()


@dataclass
class Vocabulary:
    """One sparse field's kept values. keys: int64 ``[V]`` sorted; ids: int32 ``[V]`` local ids;
    oov_id / missing_id: the local ids of values not kept and of missing values."""

    keys: np.ndarray
    ids: np.ndarray
    oov_id: int = OOV_ID
    missing_id: int = MISSING_ID
    _index: Optional[pd.Index] = field(default=None, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        """Local ids the field owns: the kept values and two more (see the module docstring)."""
        return len(self.keys) + 2

    @classmethod
    def fit(
        cls,
        keys: np.ndarray,
        counts: np.ndarray,
        min_count: int,
        convention: str = "ctr_bench",
        text: bool = False,
        multi: bool = False,
    ) -> "Vocabulary":
        """Keep keys seen at least ``min_count`` times and number them as ``convention`` says;
        ``text``: the keys are packed text (their order is the text's); ``multi``: a multi-valued
        field, whose missing id is its padding."""
        kept = counts >= min_count
        keys, counts = keys[kept], counts[kept]
        ids = np.empty(len(keys), dtype=np.int32)
        if convention == "ctr_bench":
            ids[np.lexsort((keys, -counts))] = np.arange(FIRST_VALUE_ID, FIRST_VALUE_ID + len(keys), dtype=np.int32)
            return cls(keys, ids)
        order = np.lexsort((text_order(keys), -counts)) if text else np.argsort(keys, kind="stable")
        ids[order] = np.arange(1, len(keys) + 1, dtype=np.int32)
        oov = len(keys) + 1
        return cls(keys, ids, oov_id=oov, missing_id=0 if multi else oov)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """int64 ``[U]`` -> int32 ``[U]`` local ids, ``OOV_ID`` for keys not kept.

        A hash lookup: chunks bring tens of thousands of distinct keys per field, and a binary
        search into a large vocabulary costs a cache miss per step where a hash costs one or two."""
        if len(self.keys) == 0:
            return np.full(len(keys), self.oov_id, dtype=np.int32)
        if self._index is None:
            self._index = pd.Index(self.keys)
        position = self._index.get_indexer(keys)
        return np.where(position >= 0, self.ids[position], self.oov_id).astype(np.int32)


@dataclass
class ChunkFeatures:
    """A chunk's sparse and dense features, before the vocabularies are known.

    uniques: per sparse field, in schema order (bucketized numeric fields, then categorical), the
    distinct int64 keys ``[U_j]`` this chunk holds, then those of the multi-valued fields. ids:
    int32 ``[N, S]`` provisional ids, i.e. positions in the chunk's ``Encoding.lookup_table``:
    field ``j`` owns the slots
    ``base_j .. base_j + U_j``, with ``base_j = sum_{i<j} (U_i + 1)``; a missing value is
    ``base_j`` and key ``uniques[j][c]`` is ``base_j + 1 + c``, so that the factorised code ``c``
    (-1 = missing) becomes an id by one addition, and one gather ``table[ids]`` encodes the whole
    chunk. dense: float64 ``[N, D]`` signed logs of the numeric fields kept dense (NaN =
    missing), or None. text: per field of ``uniques``, whether its keys are packed text.
    multi_ids: int32 ``[N, T]`` the multi-valued fields' provisional ids (padding where 'missing'
    is), their ``max_len`` columns each, or None.
    """

    uniques: list[np.ndarray]
    ids: np.ndarray
    dense: Optional[np.ndarray]
    text: list[bool]
    multi_ids: Optional[np.ndarray] = None

    @classmethod
    def of(cls, chunk: RawChunk, bucketize_numeric: bool, fill_missing_numeric: bool = False) -> "ChunkFeatures":
        """``fill_missing_numeric``: bucketize a missing number as 0 (the ``fuxictr`` convention)."""
        if bucketize_numeric:
            numeric = np.nan_to_num(chunk.numeric, nan=0.0) if fill_missing_numeric else chunk.numeric
            columns = [log_square_buckets(numeric[:, j]) for j in range(numeric.shape[1])]
            columns += chunk.categorical
            dense = None
        else:
            columns, dense = list(chunk.categorical), signed_log(chunk.numeric)
        every = columns + chunk.multi
        ids, multi_ids = provisional_ids(columns, chunk.num_rows, chunk.multi)
        return cls([c.uniques for c in every], ids, dense, [c.text for c in every], multi_ids)

    @property
    def table_size(self) -> int:
        return sum(len(keys) + 1 for keys in self.uniques)


def log_square_buckets(values: np.ndarray) -> CategoricalColumn:
    """float64 ``[N]`` numbers (NaN = missing) -> factorised ``log_square`` buckets.

    Factorised first and bucketized per distinct value: a numeric field has a few thousand
    distinct values per chunk, so the logarithms cost nothing next to the rows."""
    codes, values_seen = pd.factorize(values)  # NaN -> -1
    bucket_codes, buckets = pd.factorize(log_square(values_seen))
    missing_stays_missing = np.append(bucket_codes, -1).astype(np.int32)  # index -1 picks the appended -1
    return CategoricalColumn(missing_stays_missing[codes], np.asarray(buckets, dtype=np.int64))


def provisional_ids(
    columns: list[CategoricalColumn], num_rows: int, multi: list = ()
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Factorised sparse fields (and ``MultiColumn`` multi-valued ones after them) -> (int32
    ``[N, S]`` provisional ids, int32 ``[N, T]`` those of the multi-valued fields or None); see
    ``ChunkFeatures``."""
    sizes = np.array([len(c.uniques) + 1 for c in [*columns, *multi]], dtype=np.int64)
    if sizes.sum() >= np.iinfo(np.int32).max:
        raise ValueError(f"a chunk with {sizes.sum():,} distinct values overflows int32 ids; lower block_bytes")
    first_key_slots = (np.cumsum(sizes) - sizes + 1).astype(np.int32)
    ids = np.empty((num_rows, len(columns)), dtype=np.int32)
    for j, column in enumerate(columns):
        np.add(column.codes, first_key_slots[j], out=ids[:, j])
    if not multi:
        return ids, None
    slots = first_key_slots[len(columns) :]
    return ids, np.concatenate([m.codes + slot for m, slot in zip(multi, slots)], axis=1).astype(np.int32)


class EncodingFitter:
    """Pass 1: sees every chunk, learns from the rows marked as training rows."""

    def __init__(self, source: Source, config: EncodingConfig):
        self.config = config
        self.bucketize = config.numeric == "log_square"
        self.numeric_fields = source.numeric_fields
        self.categorical_fields = source.categorical_fields
        self.multi_valued = dict(source.multi_valued)
        sparse = len(self.categorical_fields) + (len(self.numeric_fields) if self.bucketize else 0)
        sparse += len(self.multi_valued)
        self.counters = [ValueCounter() for _ in range(sparse)]
        self.text = [False] * sparse  # per sparse field: its keys are packed text
        dense = 0 if self.bucketize else len(self.numeric_fields)
        self.dense_sum, self.dense_sq, self.dense_n = np.zeros(dense), np.zeros(dense), np.zeros(dense)

    def features(self, chunk: RawChunk) -> ChunkFeatures:
        return ChunkFeatures.of(chunk, self.bucketize, fill_missing_numeric=self.config.convention == "fuxictr")

    def observe(
        self,
        features: ChunkFeatures,
        train_ids: np.ndarray,
        train_dense: Optional[np.ndarray],
        train_multi: Optional[np.ndarray] = None,
    ) -> None:
        """Count the training rows of a chunk: train_ids int32 ``[T, S]`` (rows of
        ``features.ids``), train_dense float64 ``[T, D]`` or None, train_multi int32 ``[T, L]``
        (rows of ``features.multi_ids``) or None."""
        self.text = [seen or now for seen, now in zip(self.text, features.text)]
        if len(train_ids) == 0:
            return
        ids = train_ids.ravel() if train_multi is None else np.concatenate([train_ids.ravel(), train_multi.ravel()])
        counts = np.bincount(ids, minlength=features.table_size)  # every field at once
        missing_slot = 0
        for counter, keys in zip(self.counters, features.uniques):
            field_counts = counts[missing_slot + 1 : missing_slot + 1 + len(keys)]
            seen = np.flatnonzero(field_counts)
            counter.add(keys[seen], field_counts[seen])
            missing_slot += len(keys) + 1
        if train_dense is not None:
            present = ~np.isnan(train_dense)
            self.dense_sum += np.where(present, train_dense, 0).sum(axis=0)
            self.dense_sq += np.where(present, train_dense**2, 0).sum(axis=0)
            self.dense_n += present.sum(axis=0)

    def finish(self) -> "Encoding":
        single = len(self.counters) - len(self.multi_valued)
        vocabularies = [
            Vocabulary.fit(*counter.result(), self.config.min_count, self.config.convention, text, j >= single)
            for j, (counter, text) in enumerate(zip(self.counters, self.text))
        ]
        names = ([(n, "numeric") for n in self.numeric_fields] if self.bucketize else []) + [
            (n, "categorical") for n in self.categorical_fields
        ]
        multi = [
            (name, vocab.size, options.max_len, options.pooling, vocab.missing_id)
            for (name, options), vocab in zip(self.multi_valued.items(), vocabularies[single:])
        ]
        schema = Schema.build(
            [(name, kind, vocab.size) for (name, kind), vocab in zip(names, vocabularies)],
            dense=[] if self.bucketize else list(self.numeric_fields),
            multi=multi,
        )
        count = np.maximum(self.dense_n, 1)
        mean = self.dense_sum / count
        std = np.sqrt(np.maximum(self.dense_sq / count - mean**2, 0))
        return Encoding(schema, vocabularies, mean, np.where(std > 0, std, 1.0), self.bucketize, list(self.text))


@dataclass
class Encoding:
    """The fitted encoding. vocabularies: one per sparse field (schema order); dense_mean /
    dense_std: float64 ``[D]`` of the signed-log numeric values on the training rows; text: per
    sparse field, whether its keys are packed text (None where a cache of older code lacks it)."""

    schema: Schema
    vocabularies: list[Vocabulary]
    dense_mean: np.ndarray
    dense_std: np.ndarray
    bucketize: bool
    text: Optional[list[bool]] = None

    def encode(
        self, chunk: RawChunk, fill_missing_numeric: bool
    ) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """Raw rows -> (int32 ``[N, S]`` global ids, float32 ``[N, D]`` standardised dense values or
        None, int32 ``[N, T]`` the multi-valued fields' global ids or None): the cache's two passes
        (provisional ids, then one gather) applied to one chunk, so that rows scored later are
        encoded by the very code that encoded the training rows.
        ``fill_missing_numeric``: the ``fuxictr`` convention's (see ``ChunkFeatures.of``)."""
        features = ChunkFeatures.of(chunk, self.bucketize, fill_missing_numeric)
        table = self.lookup_table(features.uniques)
        multi = None if features.multi_ids is None else table[features.multi_ids]
        return table[features.ids], None if features.dense is None else self.standardize(features.dense), multi

    def lookup_table(self, uniques: list[np.ndarray]) -> np.ndarray:
        """A chunk's distinct keys per sparse field (``U_j`` int64 each) -> int32
        ``[sum_j (U_j + 1)]``: per field ``j``, the global id of 'missing', then those of its keys;
        the table that ``ChunkFeatures.ids`` point into."""
        parts = []
        for sparse_field, vocab, keys in zip(self.schema.id_fields, self.vocabularies, uniques):
            parts += [[sparse_field.offset + vocab.missing_id], vocab.lookup(keys) + sparse_field.offset]
        return np.concatenate(parts).astype(np.int32) if parts else np.empty(0, np.int32)

    def standardize(self, dense: np.ndarray) -> np.ndarray:
        """float64 ``[N, D]`` signed logs (NaN = missing) -> float32 ``[N, D]`` standardised, 0 when missing."""
        return np.nan_to_num((dense - self.dense_mean) / self.dense_std, nan=0.0).astype(np.float32)

    def save(self, path: Path) -> None:
        arrays = {f"keys_{i}": v.keys for i, v in enumerate(self.vocabularies)}
        arrays |= {f"ids_{i}": v.ids for i, v in enumerate(self.vocabularies)}
        meta = json.dumps(
            {
                "schema": self.schema.to_json(),
                "bucketize": self.bucketize,
                "special_ids": [[v.oov_id, v.missing_id] for v in self.vocabularies],
                "text": self.text,
            }
        )
        np.savez(path, dense_mean=self.dense_mean, dense_std=self.dense_std, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: Path) -> "Encoding":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            schema = Schema.from_json(meta["schema"])
            fields = len(schema.id_fields)
            special = meta.get("special_ids") or [[OOV_ID, MISSING_ID]] * fields
            vocabularies = [Vocabulary(data[f"keys_{i}"], data[f"ids_{i}"], *special[i]) for i in range(fields)]
            return cls(schema, vocabularies, data["dense_mean"], data["dense_std"], meta["bucketize"], meta.get("text"))
