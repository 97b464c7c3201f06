"""Vectorised parsing shared by the file formats: text blocks -> typed, validated columns.

Nothing here loops over rows in Python except on the error path (describing a bad row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as arrow_csv

from datamodules.errors import BadInputError, RejectLog, RowChecks
from datamodules.sources.base import CategoricalColumn, LineBlock, RawChunk, contains_byte

# Slow-path syntax of what pyarrow's string->int64/float64 casts accept (fast path: the cast itself).
INTEGER_PATTERN = r"^-?([0-9]+|0x[0-9a-fA-F]+)$"
FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def _as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def string_keys(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit keys of non-null strings: ``[U] -> int64 [U]``.

    Strings of at most 8 bytes (Criteo/Avazu hex ids, small integers) are packed into the key
    byte for byte, so they never collide; longer ones get their 64-bit FNV-1a hash (collisions are
    ~1e-5 likely even among 30M distinct long strings).
    """
    strings = _as_array(strings)
    data, offsets = _string_buffers(strings)
    starts, lengths = offsets[:-1].astype(np.int64), np.diff(offsets).astype(np.int64)
    uniform = _uniform_width_keys(data, offsets, lengths)
    if uniform is not None:
        return uniform
    if data.size == 0:  # only empty strings: give the gathers below a byte to point at
        data = np.zeros(1, np.uint8)
    keys = np.empty(len(strings), dtype=np.uint64)

    short = lengths <= 8
    width = np.arange(8)
    positions = starts[short, None] + width
    in_string = width < lengths[short, None]
    packed = np.where(in_string, data[np.where(in_string, positions, 0)], 0).astype(np.uint8)
    keys[short] = np.ascontiguousarray(packed).view("<u8").ravel()

    long = np.flatnonzero(~short)
    if len(long):
        hashes = np.full(len(long), FNV_OFFSET, dtype=np.uint64)
        long_starts, long_lengths = starts[long], lengths[long]
        for i in range(int(long_lengths.max())):
            live = long_lengths > i
            byte = data[np.where(live, long_starts + i, 0)].astype(np.uint64)
            hashes = np.where(live, (hashes ^ byte) * FNV_PRIME, hashes)
        keys[long] = hashes
    return keys.view(np.int64)


def _string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A (large) string/binary array's bytes, uint8, and its offsets ``[N + 1]``, zero-copy."""
    large = pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type)
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if large else np.int32)
    offsets = offsets[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    return data, offsets


def _uniform_width_keys(data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> Optional[np.ndarray]:
    """The packed keys ``int64 [N]`` when every string is empty or exactly ``w <= 8`` bytes long
    (Criteo's 8-hex-digit categories), else None.

    Then the non-empty strings lie back to back in ``data``, so packing them is a reshape rather
    than the byte-by-byte gather of the general case: the same keys, several times faster.
    """
    width = int(lengths.max()) if len(lengths) else 0
    if width == 0 or width > 8:
        return None
    filled = lengths == width
    count = int(np.count_nonzero(filled))
    if count + int(np.count_nonzero(lengths == 0)) != len(lengths):
        return None
    keys = np.zeros(len(lengths), dtype=np.int64)
    keys[filled] = _pack_rows(data[offsets[0] : offsets[0] + count * width].reshape(count, width))
    return keys


def _pack_rows(rows: np.ndarray) -> np.ndarray:
    """uint8 ``[N, w]``, ``w <= 8`` -> int64 ``[N]``: each row's bytes little-endian, zero-padded
    to 8 (the key of a string of those bytes)."""
    if rows.shape[1] == 8:
        return np.ascontiguousarray(rows).view("<i8").ravel()
    packed = np.zeros((len(rows), 8), dtype=np.uint8)
    packed[:, : rows.shape[1]] = rows
    return packed.view("<i8").ravel()


def fixed_width_keys(column: pa.FixedSizeBinaryArray) -> np.ndarray:
    """``binary(w)`` values, ``w <= 8`` ``[N]`` -> int64 ``[N]`` keys, the same as ``string_keys``
    of the same bytes (arbitrary where null)."""
    width, first = column.type.byte_width, column.offset
    raw = np.frombuffer(column.buffers()[1], dtype=np.uint8)[first * width : (first + len(column)) * width]
    return _pack_rows(raw.reshape(len(column), width))


def categorical_from_strings(column: pa.Array | pa.ChunkedArray) -> CategoricalColumn:
    """Text column (null = missing) ``[N]`` -> factorised keys.

    Uniform-width short text is packed row by row and factorised as integers; anything else is
    dictionary-encoded first, so that only its distinct values are packed or hashed."""
    column = _as_array(column)
    data, offsets = _string_buffers(column)
    keys = _uniform_width_keys(data, offsets, np.diff(offsets))
    if keys is not None:
        missing = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
        return categorical_from_integers(keys, missing)._replace(text=True)
    encoded = pc.dictionary_encode(column)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return CategoricalColumn(codes, string_keys(encoded.dictionary), text=True)


def categorical_from_column(column: pa.Array | pa.ChunkedArray) -> CategoricalColumn:
    """Any column ``[N]`` (null = missing) -> factorised keys: integers are their own keys, text
    is packed/hashed, other types (floats, booleans, dates) go through their text form."""
    column = _as_array(column)
    if pa.types.is_fixed_size_binary(column.type) and column.type.byte_width <= 8:
        missing = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
        return categorical_from_integers(fixed_width_keys(column), missing)._replace(text=True)
    if pa.types.is_integer(column.type):
        missing = column.is_null().to_numpy(zero_copy_only=False)
        values = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return categorical_from_integers(values, missing)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return categorical_from_strings(column)


def categorical_from_integers(values: np.ndarray, missing: Optional[np.ndarray] = None) -> CategoricalColumn:
    """int64 ``[N]`` values (``missing`` bool ``[N]`` ignored rows) -> factorised keys. The values
    of missing rows are factorised too (cheaper than leaving them out), so ``uniques`` may hold a
    key that no present row has; counts on the codes never see it."""
    codes, uniques = pd.factorize(values)
    codes = codes.astype(np.int32)
    if missing is not None:
        codes[missing] = -1
    return CategoricalColumn(codes, np.asarray(uniques, dtype=np.int64))


def parse_numbers(column: pa.Array | pa.ChunkedArray, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Column ``[N]`` (text, or already numeric as in Parquet) -> (float64 ``[N]`` values with NaN
    where missing or bad, bool ``[N]`` bad).

    Null (an empty field) is missing, not bad. Integers must be whole numbers; floats must be
    finite. For text the common case is one vectorised cast; only a chunk holding a bad value pays
    for a regex pass.
    """
    column = _as_array(column)
    if pa.types.is_integer(column.type):  # already parsed, and whole by construction
        return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), np.zeros(len(column), dtype=bool)
    present = column.is_valid().to_numpy(zero_copy_only=False)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        bad = present & (~np.isfinite(values) | ((values != np.floor(values)) if integer else False))
        return np.where(bad, np.nan, values), bad
    target = pa.int64() if integer else pa.float64()
    try:
        parsed = pc.cast(column, target)
        bad = np.zeros(len(column), dtype=bool)
    except pa.ArrowInvalid:
        syntax_ok = pc.match_substring_regex(column, INTEGER_PATTERN if integer else FLOAT_PATTERN)
        bad = ~syntax_ok.fill_null(True).to_numpy(zero_copy_only=False)
        try:
            parsed = pc.cast(pc.if_else(syntax_ok, column, pa.scalar(None, column.type)), target)
        except pa.ArrowInvalid:  # right syntax, out of range (e.g. 20-digit integers): rare enough to loop
            parsed, bad = _parse_one_by_one(column, target)
    values = pc.cast(parsed, pa.float64()).to_numpy(zero_copy_only=False)
    bad |= present & ~np.isfinite(values)  # 'nan', 'inf', '1e400' parse, but are not usable numbers
    return np.where(bad, np.nan, values), bad


def _parse_one_by_one(column: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    parsed, bad = [], np.zeros(len(column), dtype=bool)
    for i, text in enumerate(column.to_pylist()):
        try:
            parsed.append(None if text is None else pc.cast(pa.scalar(text), target).as_py())
        except (pa.ArrowInvalid, OverflowError):
            parsed.append(None)
            bad[i] = True
    return pa.array(parsed, type=target), bad


class ParsedBlock(NamedTuple):
    """A ``LineBlock`` parsed into text columns. table: the rows with the right number of fields;
    line_offset: int64 ``[N]`` each table row's 0-based line offset within the block; misshapen:
    ``(line_offset, fields_found, text)`` of each line with a wrong number of fields."""

    table: pa.Table
    line_offset: np.ndarray
    misshapen: list[tuple[int, int, str]]


def parse_delimited(
    block: LineBlock,
    path: Path,
    column_names: list[str],
    delimiter: str,
    quoted: bool,
    include: Optional[list[str]] = None,
) -> ParsedBlock:
    """Parse whole lines into string columns (empty field -> null) with pyarrow's C++ reader.

    The fast path parses with threads and no per-row callback. Lines with a wrong number of fields
    make it fail; then the block is parsed again single-threaded, because only then does pyarrow
    report each bad line's number, which ``on_bad_line`` messages and row positions need.
    """
    read_options = dict(column_names=column_names)
    parse_options = dict(delimiter=delimiter, quote_char='"' if quoted else False, ignore_empty_lines=False)
    convert = arrow_csv.ConvertOptions(
        column_types={c: pa.string() for c in column_names},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        include_columns=include,
    )
    buffer = pa.BufferReader(block.data)
    misshapen: list[tuple[int, int, str]] = []
    try:
        table = arrow_csv.read_csv(
            buffer,
            read_options=arrow_csv.ReadOptions(use_threads=True, **read_options),
            parse_options=arrow_csv.ParseOptions(**parse_options),
            convert_options=convert,
        )
    except pa.ArrowInvalid:

        def record(row) -> str:
            misshapen.append((row.number - 1, row.actual_columns, row.text))
            return "skip"

        try:
            table = arrow_csv.read_csv(
                pa.BufferReader(block.data),
                read_options=arrow_csv.ReadOptions(use_threads=False, **read_options),
                parse_options=arrow_csv.ParseOptions(invalid_row_handler=record, **parse_options),
                convert_options=convert,
            )
        except pa.ArrowInvalid as error:
            raise BadInputError(
                f"{path}, lines {block.first_line}-{block.first_line + block.num_lines - 1}: cannot be parsed: {error}"
            ) from None
    if table.num_rows + len(misshapen) != block.num_lines:
        raise BadInputError(
            f"{path}, lines {block.first_line}-{block.first_line + block.num_lines - 1}: pyarrow "
            f"found {table.num_rows + len(misshapen)} rows in {block.num_lines} lines; are there "
            f"line breaks inside quoted values or bare carriage returns as line ends?"
        )
    line_offset = np.delete(np.arange(block.num_lines, dtype=np.int64), [m[0] for m in misshapen])
    return ParsedBlock(table, line_offset, misshapen)


def parse_typed(
    block: LineBlock, column_names: list[str], delimiter: str, column_types: Mapping[str, pa.DataType]
) -> Optional[ParsedBlock]:
    """The fast path for an unquoted block of well-formed lines: pyarrow converts the columns in
    ``column_types`` itself, in its threads, instead of building text columns to convert later;
    the other columns are text. Supported types: ``int64`` and ``binary(w)`` (every value exactly
    ``w`` bytes). None where the fast path does not apply; then the caller parses the block as
    text with ``parse_delimited``, which finds and explains the bad lines exactly.

    Where it applies it gives what the text path gives. pyarrow's int64 reader accepts what the
    string -> int64 cast accepts, plus surrounding spaces, which the text path rejects: so a block
    with a space anywhere is left to the text path. Empty fields and the null spellings are null
    in both. A ``binary(w)`` value has the key of the same ``w``-byte string (``string_keys``).
    """
    if contains_byte(block.data, ord(" ")):
        return None
    types = {c: column_types.get(c, pa.string()) for c in column_names}
    try:
        table = arrow_csv.read_csv(
            pa.BufferReader(block.data),
            read_options=arrow_csv.ReadOptions(column_names=column_names),
            parse_options=arrow_csv.ParseOptions(delimiter=delimiter, quote_char=False, ignore_empty_lines=False),
            convert_options=arrow_csv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != block.num_lines:
        return None
    return ParsedBlock(table, np.arange(block.num_lines, dtype=np.int64), [])


def reject_misshapen(parsed: ParsedBlock, block: LineBlock, path: Path, expected: str, rejects: RejectLog) -> None:
    """Report ``parsed.misshapen`` lines as 'wrong number of fields'."""
    if parsed.misshapen:
        offsets = np.array([m[0] for m in parsed.misshapen], dtype=np.int64)
        rejects.reject(
            str(path),
            block.first_line + offsets,
            np.zeros(len(offsets), dtype=np.int64),
            ["wrong number of fields"],
            lambda i: f"expected {expected}, found {parsed.misshapen[i][1]}: {_shorten(parsed.misshapen[i][2])}",
        )


def _shorten(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def row_text(table: pa.Table, row: int, delimiter: str, limit: int = 120) -> str:
    """Row ``row`` of a parsed table back as (shortened) text, for error messages."""
    values = ["" if v is None else str(v) for v in table.slice(row, 1).to_pylist()[0].values()]
    return _shorten(delimiter.join(values), limit)


class ConvertedRows(NamedTuple):
    """Typed columns of a parsed text table, all rows (valid or not), plus each row's verdict.

    labels: float32 ``[N]`` (NaN when unlabelled); numeric: float64 ``[N, M]``; categorical: one
    column per categorical field; checks: which rows failed and why."""

    labels: np.ndarray
    numeric: np.ndarray
    categorical: list[CategoricalColumn]
    checks: RowChecks


def parse_labels(column: pa.Array | pa.ChunkedArray, allowed: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Label text ``[N]`` -> (float32 ``[N]`` 1 for the largest allowed value else 0, bool ``[N]`` bad).
    Missing and unparseable labels are bad, as are values outside ``allowed``."""
    values, _ = parse_numbers(column, integer=False)
    bad = ~np.isin(values, allowed)
    return (values == max(allowed)).astype(np.float32), bad


def looks_like_header(table: pa.Table, label: Optional[str], numeric: tuple[str, ...], numeric_bad: np.ndarray) -> bool:
    """Whether row 0 reads like column names: a label that is not a number, or (no label) every
    numeric field present and not a number."""
    if label is not None:
        text = table[label][0].as_py()
        return text is not None and bool(np.isnan(parse_numbers(pa.array([text]), integer=False)[0][0]))
    present = [table[name][0].is_valid for name in numeric]
    return bool(numeric) and all(present) and bool(numeric_bad[0].all())


def convert_columns(
    table: pa.Table,
    label: Optional[str],
    numeric: tuple[str, ...],
    integer: bool,
    categorical: tuple[str, ...],
    at_file_start: bool,
    delimiter: str,
    integer_categorical: tuple[str, ...] = (),
) -> ConvertedRows:
    """Validate and type the columns of ``table`` (all text, null = empty field).

    Checks, first failure wins: an empty line; a header line where none belongs (only if
    ``at_file_start``: the table's first row is the file's first line); a missing label; a label
    outside {0,1}; a numeric field that is not an integer (``integer``) / not a finite number; a
    categorical field of ``integer_categorical`` (whose values are numbers, keyed and ordered as
    such) that is not an integer of at most 2^53 in magnitude.
    """
    rows = table.num_rows
    checks = RowChecks(rows)
    describe_row = lambda r: row_text(table, r, delimiter)  # noqa: E731

    empty = table.column(0).is_null().to_numpy(zero_copy_only=False)
    for column in table.columns[1:]:
        if not empty.any():  # the usual case: decided by the first column alone
            break
        empty &= column.is_null().to_numpy(zero_copy_only=False)
    checks.fail(empty, "empty row", lambda r: "the row has no values")

    number_kind = "integer" if integer else "number"
    numeric_values = np.empty((rows, len(numeric)), dtype=np.float64)
    numeric_bad = np.zeros((rows, len(numeric)), dtype=bool)
    for j, name in enumerate(numeric):
        numeric_values[:, j], numeric_bad[:, j] = parse_numbers(table[name], integer)

    if label is not None:
        labels, label_bad = parse_labels(table[label], (0.0, 1.0))
        label_missing = table[label].is_null().to_numpy(zero_copy_only=False)
    else:
        labels, label_bad = np.full(rows, np.nan, dtype=np.float32), np.zeros(rows, dtype=bool)
        label_missing = label_bad

    if at_file_start and rows:
        header_like = np.zeros(rows, dtype=bool)
        header_like[0] = looks_like_header(table, label, numeric, numeric_bad)
        checks.fail(
            header_like,
            "unexpected header line",
            lambda r: f"this file is configured without a header, but its first line reads {describe_row(r)}",
        )
    checks.fail(label_missing, "missing label", lambda r: f"empty label field in {describe_row(r)}")
    checks.fail(label_bad, "label not in {0,1}", lambda r: f"label {table[label][r].as_py()!r} in {describe_row(r)}")

    # well-formed numbers too large for int64 (or float64) are out of range, not malformed
    out_of_range = np.zeros_like(numeric_bad)
    for j, name in enumerate(numeric):
        text = pa.types.is_string(table[name].type) or pa.types.is_large_string(table[name].type)
        if numeric_bad[:, j].any() and text:
            well_formed = pc.match_substring_regex(table[name], INTEGER_PATTERN if integer else FLOAT_PATTERN)
            out_of_range[:, j] = numeric_bad[:, j] & well_formed.fill_null(False).to_numpy(zero_copy_only=False)
    limit = (
        f"integers must lie within ±{np.iinfo(np.int64).max:,}"
        if integer
        else f"numbers must lie within ±{np.finfo(np.float64).max:.3g}"
    )

    def describe(bad: np.ndarray, what: str):
        def text(r: int) -> str:
            j = int(np.argmax(bad[r]))
            return f"{numeric[j]}={table[numeric[j]][r].as_py()!r} {what}"

        return text

    checks.fail(
        out_of_range.any(axis=1), "numeric field out of range", describe(out_of_range, f"is out of range ({limit})")
    )
    malformed = numeric_bad & ~out_of_range
    checks.fail(
        malformed.any(axis=1),
        f"numeric field not a valid {number_kind}",
        describe(malformed, f"is not a valid {number_kind}"),
    )
    columns = []
    for name in categorical:
        if name not in integer_categorical:
            columns.append(categorical_from_column(table[name]))
            continue
        values, bad = parse_numbers(table[name], integer=True)
        bad |= np.abs(np.nan_to_num(values)) > 2.0**53
        checks.fail(
            bad,
            "categorical field not an integer",
            lambda r, name=name: (
                f"{name}={table[name][r].as_py()!r} is not an integer (of at most 2^53 in "
                f"magnitude), as this column is declared"
            ),
        )
        columns.append(categorical_from_integers(np.nan_to_num(values).astype(np.int64), np.isnan(values) | bad))
    return ConvertedRows(labels, numeric_values, columns, checks)


def starts_file(block: LineBlock, parsed: ParsedBlock) -> bool:
    """Whether the parsed table's first row is the first line of the file (where a stray header is)."""
    return block.first_row == 0 and len(parsed.line_offset) > 0 and parsed.line_offset[0] == 0


def keep_valid(
    rows: ConvertedRows,
    row_index: np.ndarray,
    positions: np.ndarray,
    path: Path,
    rejects: RejectLog,
    rows_read: int,
    already_rejected: int,
    progress: int,
    unit: str = "line",
) -> RawChunk:
    """Report the rows that failed their checks and keep the rest as a ``RawChunk``.

    row_index / positions: int64 ``[N]`` each converted row's data-row index / 1-based line (or row)
    number; already_rejected: rows of this chunk dropped before conversion (misshapen lines)."""
    rejected = already_rejected + rows.checks.report(rejects, str(path), positions, unit=unit)
    if rejected == already_rejected:  # the usual case: every converted row is kept, no copies needed
        return RawChunk(
            row_index=row_index,
            labels=rows.labels,
            categorical=rows.categorical,
            numeric=rows.numeric,
            rows_read=rows_read,
            rows_rejected=rejected,
            progress=progress,
        )
    ok = rows.checks.ok
    return RawChunk(
        row_index=row_index[ok],
        labels=rows.labels[ok],
        categorical=[column.take(ok) for column in rows.categorical],
        numeric=rows.numeric[ok],
        rows_read=rows_read,
        rows_rejected=rejected,
        progress=progress,
    )


def text_chunk(block: LineBlock, parsed: ParsedBlock, rows: ConvertedRows, path: Path, rejects: RejectLog) -> RawChunk:
    """``keep_valid`` for a parsed text block."""
    return keep_valid(
        rows,
        block.first_row + parsed.line_offset,
        block.first_line + parsed.line_offset,
        path,
        rejects,
        rows_read=block.num_lines,
        already_rejected=len(parsed.misshapen),
        progress=block.progress,
    )
