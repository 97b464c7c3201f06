"""Score raw rows with an exported ctr-bench model, stand-alone: onnxruntime and numpy (pyarrow for Parquet).

    python examples/score_onnx.py BUNDLE_DIR INPUT --out OUTPUT.csv [--id-column C]

BUNDLE_DIR is what ``python -m experiments.export RUN_DIR --format onnx --out BUNDLE_DIR`` wrote:
``model.onnx``, ``export.json`` and ``encoding/`` (``encoding.json`` and one vocabulary file per
field). This file encodes rows from that description alone, as ctr-bench's reader does, for
inputs of two of its sources: tables (CSV with a header, or Parquet; the label column optional)
and Criteo's TSV (with or without the label). Each raw value becomes a 64-bit key (an integer is
its own key; text of at most 8 bytes is packed into the key little-endian; longer text gets its
64-bit FNV-1a hash), the key its field's id (``offset`` plus the vocabulary's id; out-of-vocabulary
and missing values their own ids), numbers are bucketized (``log_square``) or standardised. A
multi-valued field (genres, tags: a text cell of tokens separated by its ``sep``, or a Parquet list)
has its tokens stripped of whitespace (empty ones dropped), keyed the same way, cut to the first or
last ``max_len`` (its ``keep``) and padded with its padding id (``missing_id``) to ``max_len``. A row
that cannot be read is an error naming its line, or is skipped and counted, as the run's
``on_bad_line`` says. The output has ``[id column,] [label,] probability``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime

# What ctr-bench's reader (pyarrow's CSV reader) reads as a missing value.
NULLS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "N/A", "NA", "NULL"]
    + ["NaN", "n/a", "nan", "null"]
)
CHUNK_ROWS, BATCH_ROWS = 1 << 16, 4096
FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1
CRITEO_FIELDS = [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


class BadRow(ValueError):
    pass


def text_key(text: str) -> int:
    """The 64-bit key of a text value: its bytes packed little-endian (at most 8), else their FNV-1a hash."""
    data = text.encode("utf-8")
    if len(data) <= 8:
        value = int.from_bytes(data.ljust(8, b"\0"), "little")
    else:
        value = FNV_OFFSET
        for byte in data:
            value = ((value ^ byte) * FNV_PRIME) & MASK
    return value - (1 << 64) if value >= 1 << 63 else value


def log_square(values: np.ndarray) -> np.ndarray:
    """floor(ln(x)^2) for x > 2, else x truncated."""
    logged = np.floor(np.log(np.maximum(values, 2.0)) ** 2)
    return np.where(values > 2, logged, np.trunc(values)).astype(np.int64)


def numbers(values: np.ndarray, missing: np.ndarray, integer: bool, name: str) -> np.ndarray:
    """Text ``[N]`` -> float64 ``[N]``, NaN where missing; raises ``BadRow`` (row index, why) for a bad value."""
    out = np.full(len(values), np.nan)
    present = np.flatnonzero(~missing)
    try:
        parsed = values[present].astype(np.int64 if integer else np.float64).astype(np.float64)
        if np.isfinite(parsed).all():
            out[present] = parsed
            return out
    except (ValueError, OverflowError):
        pass
    for row in present:  # only a chunk with a bad value is looked at row by row, to name the row
        try:
            number = float(int(values[row])) if integer else float(values[row])
        except (ValueError, OverflowError):
            number = math.nan
        if not math.isfinite(number):
            raise BadRow(int(row), f"{name}={str(values[row])!r} is not a valid {'integer' if integer else 'number'}")
        out[row] = number
    return out


class Field:
    """One sparse field of ``encoding.json``: raw keys -> global ids through its sorted vocabulary."""

    def __init__(self, spec: dict, folder: Path):
        vocab = folder / spec["vocab"]
        table = np.loadtxt(vocab, delimiter=",", quotechar='"', skiprows=1, usecols=(0, 1), dtype=np.int64, ndmin=2)
        order = np.argsort(table[:, 1])
        self.keys, self.ids = table[order, 1], table[order, 0]
        self.name, self.offset = spec["name"], spec["offset"]
        self.oov, self.missing_id = spec["oov_id"], spec["missing_id"]

    def ids_of(self, keys: np.ndarray, missing: np.ndarray) -> np.ndarray:
        position = np.clip(np.searchsorted(self.keys, keys), 0, max(len(self.keys) - 1, 0))
        found = (self.keys[position] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        local = np.where(found, self.ids[position] if len(self.ids) else 0, self.oov)
        return self.offset + np.where(missing, self.missing_id, local)


class MultiField(Field):
    """A multi-valued field: a column of lists -> int64 ``[N, max_len]`` ids, padded."""

    def __init__(self, spec: dict, folder: Path):
        super().__init__(spec, folder)
        self.sep, self.max_len, self.keep = spec["multi"]["sep"], spec["multi"]["max_len"], spec["multi"]["keep"]

    def tokens(self, values, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A column -> (its tokens ``[M]``, the row of each ``[M]``, ascending): a Parquet list column
        comes as that pair already; text cells are split at ``sep`` (all at once: the cells joined)."""
        if isinstance(values, tuple):
            tokens, parent = values
        else:
            cells = np.where(missing, "", values).astype(str)
            tokens = np.array(self.sep.join(cells).split(self.sep))
            parent = np.repeat(np.arange(len(cells)), np.char.count(cells, self.sep) + 1)
        if tokens.dtype.kind in "iu":
            return tokens.astype(np.int64), parent
        tokens = np.char.strip(tokens.astype(str))
        return tokens[tokens != ""], parent[tokens != ""]

    def list_ids(self, values, missing: np.ndarray) -> np.ndarray:
        tokens, parent = self.tokens(values, missing)
        lengths = np.bincount(parent, minlength=len(missing))
        position = np.arange(len(parent)) - (np.cumsum(lengths) - lengths)[parent]
        if self.keep == "last":
            position -= np.maximum(lengths - self.max_len, 0)[parent]
        kept = (position >= 0) & (position < self.max_len)
        tokens, parent, position = tokens[kept], parent[kept], position[kept]
        if tokens.dtype.kind == "i":
            keys = tokens
        else:
            distinct, inverse = np.unique(tokens, return_inverse=True)
            keys = np.array([text_key(v) for v in distinct], dtype=np.int64)[inverse.reshape(-1)]
        ids = np.full((len(missing), self.max_len), self.offset + self.missing_id, dtype=np.int64)
        ids[parent, position] = self.ids_of(keys, np.zeros(len(keys), bool))
        return ids


class Encoder:
    """``encoding.json`` read back: raw columns -> (int64 ``[N, S]`` ids, float32 ``[N, D]`` dense,
    int64 ``[N, T]`` ids of the multi-valued fields)."""

    def __init__(self, folder: Path):
        meta = json.loads((folder / "encoding.json").read_text())
        self.source, self.scoring = meta["source"], meta["scoring"]
        self.bucketize = meta["numeric_transform"] == "log_square"
        self.fill_missing = meta["encoding"]["convention"] == "fuxictr"
        self.sparse = [Field(f, folder) for f in meta["fields"] if not f.get("dense") and "multi" not in f]
        self.multi = [MultiField(f, folder) for f in meta["fields"] if "multi" in f]
        self.dense = [f for f in meta["fields"] if f.get("dense")]
        target = self.source["_target_"].rsplit(".", 1)[-1]
        if target == "CriteoSource":
            self.numeric, self.integer, self.integer_keys = CRITEO_FIELDS[:13], True, set()
        elif target == "TableSource":
            self.numeric, self.integer = list(self.source.get("numeric") or []), False
            self.integer_keys = set(self.source.get("integer_categorical") or [])
        else:
            sys.exit(f"this example reads table and Criteo inputs; the run's source is {target}")

    def keys(self, name: str, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """A categorical column's keys ``[N]`` (arbitrary where missing), one key per distinct value."""
        if values.dtype.kind in "iu":
            return values.astype(np.int64)
        distinct, inverse = np.unique(np.where(missing, "", values.astype(str)), return_inverse=True)
        if name in self.integer_keys:
            as_numbers = numbers(distinct, distinct == "", True, name)
            if np.any(np.abs(np.nan_to_num(as_numbers)) > 2.0**53):
                raise BadRow(
                    int(np.argmax(inverse == np.argmax(np.abs(np.nan_to_num(as_numbers))))), f"{name} too large"
                )
            return np.nan_to_num(as_numbers).astype(np.int64)[inverse]
        return np.array([text_key(v) for v in distinct], dtype=np.int64)[inverse]

    def encode(self, columns: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """columns: name -> (values ``[N]``, missing bool ``[N]``)."""
        parsed = {}
        for name in self.numeric:
            values, missing = columns[name]
            typed = values.dtype.kind in "iuf"  # Parquet's numbers
            parsed[name] = np.where(missing, np.nan, values) if typed else numbers(values, missing, self.integer, name)
        ids = []
        for field in self.sparse:
            if field.name in parsed:  # a bucketized number
                value = parsed[field.name]
                missing = np.isnan(value) & ~self.fill_missing
                ids.append(field.ids_of(log_square(np.nan_to_num(value)), missing))
            else:
                values, missing = columns[field.name]
                ids.append(field.ids_of(self.keys(field.name, values, missing), missing))
        dense = np.zeros((len(ids[0]) if ids else 0, len(self.dense)), dtype=np.float32)
        for j, spec in enumerate(self.dense):
            logged = np.sign(parsed[spec["name"]]) * np.log1p(np.abs(parsed[spec["name"]]))
            dense[:, j] = np.nan_to_num((logged - spec["mean"]) / spec["std"], nan=0.0)
        rows = len(ids[0]) if ids else 0
        multi = [field.list_ids(*columns[field.name]) for field in self.multi]
        return np.stack(ids, axis=1).astype(np.int64), dense, np.concatenate(multi or [np.zeros((rows, 0))], axis=1)


def text_chunks(path: Path, encoder: Encoder):
    """CSV with a header / Criteo TSV -> (line numbers ``[N]``, columns) per chunk of rows."""
    criteo = encoder.source["_target_"].endswith("CriteoSource")
    delimiter = "\t" if criteo else encoder.source.get("delimiter", ",")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if criteo else csv.QUOTE_MINIMAL)
        if criteo:
            first = next(reader)
            names, reader, line = (
                (["label"] if len(first) == 40 else []) + CRITEO_FIELDS,
                itertools.chain([first], reader),
                1,
            )
        else:
            names, line = next(reader), 2
        while rows := list(itertools.islice(reader, CHUNK_ROWS)):
            lines = np.arange(line, line + len(rows))
            line += len(rows)
            shaped = np.array([len(row) == len(names) for row in rows])
            for bad in np.flatnonzero(~shaped):
                yield lines[bad : bad + 1], BadRow(0, f"expected {len(names)} fields, found {len(rows[bad])}")
            if not shaped.all():
                rows, lines = [r for r, ok in zip(rows, shaped) if ok], lines[shaped]
            table = np.array(rows, dtype=object).reshape(len(rows), len(names)).astype(str)
            yield lines, {name: (table[:, j], np.isin(table[:, j], list(NULLS))) for j, name in enumerate(names)}


def list_column(column) -> tuple[np.ndarray, np.ndarray]:
    """A Parquet list column -> (its tokens ``[M]``, null ones left out; the row of each ``[M]``)."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    tokens = pc.list_flatten(column)
    parent = np.repeat(np.arange(len(column)), lengths)
    valid = tokens.is_valid().to_numpy(zero_copy_only=False)
    return tokens.filter(valid).to_numpy(zero_copy_only=False), parent[valid]


def parquet_chunks(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    line = 1
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
        columns = {}
        for name, column in zip(batch.schema.names, batch.columns):
            missing = column.is_null().to_numpy(zero_copy_only=False)
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                columns[name] = (list_column(column), missing)
                continue
            values = column.to_numpy(zero_copy_only=False)
            columns[name] = (np.where(missing, 0, values) if values.dtype.kind in "iuf" else values, missing)
        yield np.arange(line, line + batch.num_rows), columns
        line += batch.num_rows


def labels_of(columns: dict, name: str) -> np.ndarray:
    values, missing = columns[name]
    labels = values.astype(float) if values.dtype.kind in "iuf" else numbers(values, missing, False, name)
    bad = missing | ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        raise BadRow(int(np.argmax(bad)), f"label {str(values[int(np.argmax(bad))])!r} not in {{0,1}}")
    return labels.astype(np.int8)


def reject(encoder: Encoder, path: Path, line: int, why: str, skipped: list) -> None:
    """A bad row: an error naming its line, or (``on_bad_line: skip``) counted in ``skipped``."""
    if encoder.scoring.get("on_bad_line") != "skip":
        raise SystemExit(f"{path}, line {line}: {why}")
    skipped.append(line)


def encoded_rows(encoder: Encoder, path: Path, lines: np.ndarray, columns: dict, skipped: list):
    """-> (ids, dense, multi, labels or None, columns) of the chunk's good rows; a bad row is an error naming
    its line, or (``on_bad_line: skip``) dropped and counted in ``skipped``."""
    label = encoder.scoring.get("label", "label")
    while True:
        try:
            labels = labels_of(columns, label) if label in columns else None
            return (*encoder.encode(columns), labels, columns)
        except BadRow as bad:
            row, why = bad.args
            if encoder.scoring.get("on_bad_line") != "skip":
                raise SystemExit(f"{path}, line {lines[row]}: {why}") from None
            skipped.append(int(lines[row]))
            lines, columns = (
                np.delete(lines, row),
                {n: (without_row(v, row), np.delete(m, row)) for n, (v, m) in columns.items()},
            )


def without_row(values, row: int):
    """A column without row ``row``: values ``[N]``, or a list column's (tokens, row of each)."""
    if not isinstance(values, tuple):
        return np.delete(values, row)
    tokens, parent = values
    kept = parent != row
    return tokens[kept], parent[kept] - (parent[kept] > row)


class Output:
    """The output file, written chunk by chunk under a temporary name and renamed at the end."""

    def __init__(self, path: Path):
        self.path, self.temporary = path, path.with_name(f".{path.name}.tmp")
        self.parquet, self.writer, self.handle = path.suffix.lower() in (".parquet", ".pq"), None, None

    def write(self, table: dict) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrow = pa.table(table)
            self.writer = self.writer or pq.ParquetWriter(self.temporary, arrow.schema)
            self.writer.write_table(arrow)
            return
        if self.writer is None:
            self.handle = open(self.temporary, "w", newline="")  # closed in close()
            self.writer = csv.writer(self.handle)
            self.writer.writerow(list(table))
        formatted = [np.char.mod("%.9g", v) if v.dtype.kind == "f" else v.astype(str) for v in table.values()]
        self.writer.writerows(zip(*formatted))

    def close(self) -> None:
        (self.writer if self.parquet else self.handle).close()
        self.temporary.replace(self.path)


def score(bundle: Path, path: Path, out: Path, id_column: str | None) -> tuple[int, list]:
    encoder = Encoder(bundle / "encoding")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    inputs, label = [i.name for i in session.get_inputs()], encoder.scoring.get("label", "label")
    output, skipped, rows = Output(out), [], 0
    reader = parquet_chunks(path) if path.suffix.lower() in (".parquet", ".pq") else text_chunks(path, encoder)
    for lines, columns in reader:
        if isinstance(columns, BadRow):  # a misshapen line, before the chunk's columns could be made
            reject(encoder, path, int(lines[columns.args[0]]), columns.args[1], skipped)
            continue
        ids, dense, multi, labels, columns = encoded_rows(encoder, path, lines, columns, skipped)
        named = {"ids": ids, "dense": dense, "multi": multi}
        probability = [
            session.run(None, {n: named[n][i : i + BATCH_ROWS] for n in inputs})[0]
            for i in range(0, len(ids), BATCH_ROWS)
        ]
        table = {id_column: columns[id_column][0]} if id_column else {}
        table |= {label: labels} if labels is not None else {}
        output.write(table | {"probability": np.concatenate(probability or [np.empty(0, np.float32)])})
        rows += len(ids)
    output.close()
    return rows, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path, help="the folder python -m experiments.export wrote")
    parser.add_argument("input", type=Path, help="raw rows: CSV with a header, Parquet, or Criteo TSV")
    parser.add_argument("--out", type=Path, required=True, help="OUTPUT.csv or OUTPUT.parquet")
    parser.add_argument("--id-column", default=None, help="an input column copied to the output")
    args = parser.parse_args()
    rows, skipped = score(args.bundle, args.input, args.out, args.id_column)
    print(f"{args.out}: {rows} rows scored, {len(skipped)} skipped" + (f" (lines {skipped[:10]})" if skipped else ""))


if __name__ == "__main__":
    main()
