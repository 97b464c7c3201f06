"""The benchmark's multi-valued rows (issue 35): encoding a table with a list column, and training on
batches that carry one.

- ``write_genres_csv``: label, two 8-hex-digit categorical columns and a ``genres`` column of 0 to
  ``2 * max_len`` ``|``-separated tokens of ``TOKENS`` (Zipf-distributed), so that some lists are cut;
- ``datamodule``: that file as ``data=table`` reads it (genres multi-valued, ``max_len``), which
  ``experiments.benchmark.data``'s ``encode_multi`` step times in a fresh process (rows/s, peak RSS);
- ``with_multi_field`` / ``multi_rows``: the training workload's schema and id rows with one such
  field, for ``python -m experiments.benchmark --multi-models deepfm --multi-len 20``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as arrow_csv

from datamodules.schema import Schema

TOKENS = 1000  # distinct tokens of the list column
ZIPF_EXPONENT = 1.2
DEFAULT_MAX_LEN = 20
BATCH_SIZE = 4096
WRITE_ROWS = 1 << 18  # rows generated and written at a time


def _hex8(values: np.ndarray) -> pa.Array:
    return pa.array(np.char.mod("%08x", values))


def _lists(rng: np.random.Generator, rows: int, max_len: int) -> pa.Array:
    """``rows`` lists of 0 to ``2 * max_len`` tokens, ``|``-joined, built as one flat array."""
    lengths = rng.integers(0, 2 * max_len + 1, rows)
    tokens = (rng.zipf(ZIPF_EXPONENT, int(lengths.sum())) - 1) % TOKENS
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.char.mod("t%d", tokens)))
    return pc.binary_join(lists, "|")


def write_genres_csv(path: Path, rows: int, max_len: int = DEFAULT_MAX_LEN, seed: int = 0) -> None:
    """A CSV of ``rows`` rows with a list column, generated and written in blocks."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("label", pa.int64()), ("user", pa.string()), ("item", pa.string()), ("genres", pa.string())])
    with arrow_csv.CSVWriter(str(path), schema) as writer:
        for start in range(0, rows, WRITE_ROWS):
            n = min(WRITE_ROWS, rows - start)
            block = {
                "label": pa.array((rng.random(n) < 0.25).astype(np.int64)),
                "user": _hex8(rng.zipf(ZIPF_EXPONENT, n) % 100_000),
                "item": _hex8(rng.zipf(ZIPF_EXPONENT, n) % 10_000),
                "genres": _lists(rng, n, max_len),
            }
            writer.write_table(pa.table(block, schema=schema))


def datamodule(path: Path, cache_dir: Path, max_len: int = DEFAULT_MAX_LEN):
    from datamodules import CTRDataModule, TableSource

    source = TableSource(
        label="label", categorical=["user", "item"], path=str(path), multi_valued={"genres": {"max_len": max_len}}
    )
    return CTRDataModule(
        source,
        split={"kind": "random", "ratios": [0.8, 0.1, 0.1]},
        name="bench_multi",
        cache_dir=str(cache_dir),
        batch_size=BATCH_SIZE,
        progress=False,
    )


def with_multi_field(schema: Schema, max_len: int) -> Schema:
    """``schema`` and one mean-pooled multi-valued field of ``TOKENS`` tokens (and OOV, padding) after it."""
    sparse = [(f.name, f.kind, f.vocab_size) for f in schema.sparse_fields]
    return Schema.build(sparse, multi=[("genres", TOKENS + 2, max_len, "mean", 1)])


def multi_rows(schema: Schema, rows: int, seed: int) -> np.ndarray:
    """int32 ``[rows, max_len]`` global ids of the schema's one multi-valued field: 0 to ``max_len``
    Zipf-distributed tokens per row (local ids from 2), padded."""
    (field,) = schema.multi_fields
    rng = np.random.default_rng(seed + 1)
    tokens = 2 + (rng.zipf(ZIPF_EXPONENT, (rows, field.max_len)) - 1) % (field.vocab_size - 2)
    lengths = rng.integers(0, field.max_len + 1, (rows, 1))
    local = np.where(np.arange(field.max_len) < lengths, tokens, field.padding_id)
    return (local + field.offset).astype(np.int32)
