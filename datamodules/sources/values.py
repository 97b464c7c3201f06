"""Vectorised conversion of one column's values, text or already typed: categorical keys and numbers.

Nothing here loops over rows in Python except on the error path (a value out of range).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from datamodules.sources.base import CategoricalColumn

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


def parse_labels(column: pa.Array | pa.ChunkedArray, allowed: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Label text ``[N]`` -> (float32 ``[N]`` 1 for the largest allowed value else 0, bool ``[N]`` bad).
    Missing and unparseable labels are bad, as are values outside ``allowed``."""
    values, _ = parse_numbers(column, integer=False)
    bad = ~np.isin(values, allowed)
    return (values == max(allowed)).astype(np.float32), bad
