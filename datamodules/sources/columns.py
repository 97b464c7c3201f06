"""Vectorised parsing shared by the file formats: text blocks -> typed, validated columns.

Parsing a block's lines into text columns is here; converting one column's values (keys, numbers)
is in ``datamodules.sources.values``. Nothing here loops over rows in Python except on the error
path (describing a bad row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as arrow_csv

from datamodules.errors import BadInputError, RejectLog, RowChecks
from datamodules.sources.base import CategoricalColumn, LineBlock, RawChunk, contains_byte
from datamodules.sources.values import (
    FLOAT_PATTERN,
    INTEGER_PATTERN,
    categorical_from_column,
    categorical_from_integers,
    parse_labels,
    parse_numbers,
)


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
    multi: tuple = ()  # a ``MultiColumn`` per multi-valued field


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
    checks.fail(_empty_rows(table), "empty row", lambda r: "the row has no values")
    numeric_values, numeric_bad = _parse_numeric_fields(table, numeric, integer)
    labels, label_bad, label_missing = _parse_label_field(table, label)

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
    _check_numeric_fields(checks, table, numeric, integer, numeric_bad)
    columns = _categorical_columns(checks, table, categorical, integer_categorical)
    return ConvertedRows(labels, numeric_values, columns, checks)


def _empty_rows(table: pa.Table) -> np.ndarray:
    """bool ``[N]``: the rows with every field empty (null)."""
    empty = table.column(0).is_null().to_numpy(zero_copy_only=False)
    for column in table.columns[1:]:
        if not empty.any():  # the usual case: decided by the first column alone
            break
        empty &= column.is_null().to_numpy(zero_copy_only=False)
    return empty


def _parse_numeric_fields(table: pa.Table, numeric: tuple[str, ...], integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``numeric`` columns -> (float64 ``[N, M]`` values, NaN where missing or bad; bool ``[N, M]`` bad)."""
    values = np.empty((table.num_rows, len(numeric)), dtype=np.float64)
    bad = np.zeros((table.num_rows, len(numeric)), dtype=bool)
    for j, name in enumerate(numeric):
        values[:, j], bad[:, j] = parse_numbers(table[name], integer)
    return values, bad


def _parse_label_field(table: pa.Table, label: Optional[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (float32 ``[N]`` labels, NaN for all when there is no label column; bool ``[N]`` bad;
    bool ``[N]`` missing). Without a label column no row is bad or missing."""
    rows = table.num_rows
    if label is None:
        labels, label_bad = np.full(rows, np.nan, dtype=np.float32), np.zeros(rows, dtype=bool)
        return labels, label_bad, label_bad
    labels, label_bad = parse_labels(table[label], (0.0, 1.0))
    return labels, label_bad, table[label].is_null().to_numpy(zero_copy_only=False)


def _check_numeric_fields(
    checks: RowChecks, table: pa.Table, numeric: tuple[str, ...], integer: bool, numeric_bad: np.ndarray
) -> None:
    """Fail the rows with a bad numeric field: out of range, else not a valid integer / number."""
    number_kind = "integer" if integer else "number"
    out_of_range = _out_of_range(table, numeric, integer, numeric_bad)
    limit = (
        f"integers must lie within ±{np.iinfo(np.int64).max:,}"
        if integer
        else f"numbers must lie within ±{np.finfo(np.float64).max:.3g}"
    )
    checks.fail(
        out_of_range.any(axis=1),
        "numeric field out of range",
        _describe_field(table, numeric, out_of_range, f"is out of range ({limit})"),
    )
    malformed = numeric_bad & ~out_of_range
    checks.fail(
        malformed.any(axis=1),
        f"numeric field not a valid {number_kind}",
        _describe_field(table, numeric, malformed, f"is not a valid {number_kind}"),
    )


def _out_of_range(table: pa.Table, numeric: tuple[str, ...], integer: bool, numeric_bad: np.ndarray) -> np.ndarray:
    """bool ``[N, M]``: the bad numeric fields that are well-formed numbers, too large for int64
    (or float64), so out of range rather than malformed. Only text columns with a bad value pay
    for the regex pass."""
    out_of_range = np.zeros_like(numeric_bad)
    for j, name in enumerate(numeric):
        text = pa.types.is_string(table[name].type) or pa.types.is_large_string(table[name].type)
        if numeric_bad[:, j].any() and text:
            well_formed = pc.match_substring_regex(table[name], INTEGER_PATTERN if integer else FLOAT_PATTERN)
            out_of_range[:, j] = numeric_bad[:, j] & well_formed.fill_null(False).to_numpy(zero_copy_only=False)
    return out_of_range


def _describe_field(table: pa.Table, numeric: tuple[str, ...], bad: np.ndarray, what: str):
    """A row's message: its first field marked in ``bad`` (bool ``[N, M]``), its value and ``what``."""

    def text(r: int) -> str:
        j = int(np.argmax(bad[r]))
        return f"{numeric[j]}={table[numeric[j]][r].as_py()!r} {what}"

    return text


def _categorical_columns(
    checks: RowChecks, table: pa.Table, categorical: tuple[str, ...], integer_categorical: tuple[str, ...]
) -> list[CategoricalColumn]:
    """The ``categorical`` columns factorised; those of ``integer_categorical`` keyed by their
    integer values, failing the rows where one is not an integer of at most 2^53 in magnitude."""
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
    return columns


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
            multi=list(rows.multi),
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
        multi=[column.take(ok) for column in rows.multi],
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
