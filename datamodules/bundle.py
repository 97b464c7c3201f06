"""The fitted encoding as a readable folder that scoring needs and nothing else: no cache, no training file.

A run writes it to ``<run>/encoding/``; ``python -m experiments.export`` copies it beside the graph.

- ``encoding.json``: ``format``; ``encoding`` (min_count, numeric, convention); the numeric transform
  (``log_square`` buckets, or ``dense``: signed log ``sign(x) ln(1 + |x|)``, then ``(x - mean) / std`` with
  the training rows' mean and std, 0 when missing); ``fields``: the model's input columns in order,
  each sparse field with its offset (first global id), vocab_size, the local ids of out-of-vocabulary
  (``oov_id``) and missing (``missing_id``) values and its vocabulary file; a multi-valued field
  (after the single-valued ones) adds ``multi``: how a raw cell becomes its ids (``sep``, ``max_len``,
  ``keep``: which end of a longer list is kept) and ``pooling``; its ``missing_id`` is the padding
  that fills a short list (an empty cell is an empty list); each dense field with its mean and std;
  ``source``: the reader of raw rows (its ``_target_`` and options, input files left out) and
  ``scoring`` (on_bad_line, block_bytes, the evaluation batch size, precision).
- ``vocab/<NN>_<field>.csv``: ``id,key,value`` per kept value, by id: the local id (global id =
  offset + id), the 64-bit key the reader makes of the raw value and the value as text. A key is the
  integer itself for integer values (bucket numbers of bucketized numeric fields, integer columns),
  else the text's bytes packed little-endian into 8 bytes (text of at most 8 bytes; ``value`` is that
  text), or the 64-bit FNV-1a hash of longer text (then ``value`` is empty, or, rarely, the hash's
  bytes where they happen to read as text).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as arrow_csv

from datamodules.encode import Encoding, EncodingConfig, Vocabulary
from datamodules.errors import BadInputError
from datamodules.schema import Schema
from datamodules.sources.multi import multi_valued_options

FORMAT = "ctr-bench-encoding/1"
ENCODING_DIR = "encoding"
ENCODING_FILE = "encoding.json"
# options a source takes that name or explain input files: what scoring replaces with its own input
FILE_OPTIONS = ("path", "files", "how_to_get")


def vocab_file(index: int, name: str) -> str:
    return f"vocab/{index:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.csv"


def _values(keys: np.ndarray, text: bool) -> pa.Array:
    """int64 ``[V]`` keys -> their readable values: the integer, or the packed text; empty where
    the key's bytes are no printable text (the hash of a longer text)."""
    if not text:
        return pa.array(keys.astype(str))
    packed = pd.Series(keys.astype("<i8").view("S8"))  # numpy drops the zero padding of S8
    decoded = packed.str.decode("utf-8", errors="replace")
    unreadable = decoded.str.contains("[\x00-\x1f\x7f\ufffd]")
    return pa.array(decoded.where(~unreadable, ""), pa.string())


@contextlib.contextmanager
def replacing_folder(folder: str | Path) -> Iterator[Path]:
    """Yields a temporary folder beside ``folder`` to fill; on success it takes ``folder``'s place
    (the old one renamed away first, then deleted), so a reader never finds a half-written folder."""
    folder = Path(folder)
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    old = temporary.with_suffix(".old")
    temporary.mkdir(parents=True)
    try:
        yield temporary
        if folder.exists():
            os.replace(folder, old)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_encoding(folder: Path, encoding: Encoding, config: EncodingConfig, source: dict, scoring: dict) -> None:
    """Write ``folder`` (replaced whole, see ``replacing_folder``). source: the source's config
    (``_target_`` and options); scoring: how the run read and scored rows."""
    with replacing_folder(folder) as temporary:
        (temporary / "vocab").mkdir()
        fields = []
        text = encoding.text or [None] * len(encoding.schema.id_fields)
        options = multi_valued_options(source.get("multi_valued"))
        for i, (field, vocab) in enumerate(zip(encoding.schema.id_fields, encoding.vocabularies)):
            order = np.argsort(vocab.ids, kind="stable")
            table = pa.table(
                {"id": vocab.ids[order], "key": vocab.keys[order], "value": _values(vocab.keys[order], bool(text[i]))}
            )
            arrow_csv.write_csv(table, temporary / vocab_file(i, field.name))
            fields.append(
                {
                    "name": field.name,
                    "kind": field.kind,
                    "offset": field.offset,
                    "vocab_size": field.vocab_size,
                    "oov_id": int(vocab.oov_id),
                    "missing_id": int(vocab.missing_id),
                    "text": text[i],
                    "vocab": vocab_file(i, field.name),
                    **({"multi": {**options[field.name].to_dict(), "max_len": field.max_len}} if field.multi else {}),
                }
            )
        for field, mean, std in zip(encoding.schema.dense_fields, encoding.dense_mean, encoding.dense_std):
            fields.append(dict(name=field.name, kind="numeric", dense=True, mean=float(mean), std=float(std)))
        meta = {
            "format": FORMAT,
            "encoding": config.to_dict(),
            "numeric_transform": "log_square" if encoding.bucketize else "signed_log_standardized",
            "num_ids": encoding.schema.num_ids,
            "fields": fields,
            "source": {k: v for k, v in source.items() if k not in FILE_OPTIONS},
            "scoring": scoring,
        }
        (temporary / ENCODING_FILE).write_text(json.dumps(meta, indent=2))


class SavedEncoding:
    """A folder written by ``write_encoding``, read back: ``encoding`` (the ``Encoding`` that encodes
    raw chunks as the run's cache did), ``config``, ``source`` and ``scoring`` (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / ENCODING_FILE
        if not path.is_file():
            raise BadInputError(
                f"{path} does not exist: this run folder has no saved encoding (runs write it from this version on)"
            )
        self.meta = json.loads(path.read_text())
        if self.meta.get("format") != FORMAT:
            raise BadInputError(f"{path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.config = EncodingConfig.from_any(self.meta["encoding"])
        self.source: dict = self.meta["source"]
        self.scoring: dict = self.meta["scoring"]
        self.encoding = self._encoding()

    def _encoding(self) -> Encoding:
        sparse = [f for f in self.meta["fields"] if not f.get("dense")]  # single-valued, then multi-valued
        dense = [f for f in self.meta["fields"] if f.get("dense")]
        multi = [
            (f["name"], f["vocab_size"], f["multi"]["max_len"], f["multi"]["pooling"], f["missing_id"])
            for f in sparse
            if "multi" in f
        ]
        schema = Schema.build(
            [(f["name"], f["kind"], f["vocab_size"]) for f in sparse if "multi" not in f],
            [f["name"] for f in dense],
            multi,
        )
        vocabularies = []
        for f in sparse:
            table = arrow_csv.read_csv(
                self.folder / f["vocab"],
                convert_options=arrow_csv.ConvertOptions(
                    column_types={"id": pa.int32(), "key": pa.int64()}, include_columns=["id", "key"]
                ),
            )
            ids, keys = table["id"].to_numpy(), table["key"].to_numpy()
            vocabularies.append(Vocabulary(keys, ids, f["oov_id"], f["missing_id"]))
        texts = [f["text"] for f in sparse]
        return Encoding(
            schema,
            vocabularies,
            np.array([f["mean"] for f in dense], dtype=np.float64),
            np.array([f["std"] for f in dense], dtype=np.float64),
            self.meta["numeric_transform"] == "log_square",
            None if None in texts else texts,
        )

    @property
    def fill_missing_numeric(self) -> bool:
        return self.config.convention == "fuxictr"

    def schema_matches(self, schema: Schema) -> Optional[str]:
        """None when ``schema`` (a checkpoint's) is this encoding's, else what differs."""
        if schema == self.encoding.schema:
            return None
        return f"the checkpoint's schema {schema.to_json()} is not the encoding's {self.encoding.schema.to_json()}"
