"""What every source yields (``RawChunk``), the ``Source`` interface, and reading text files in line blocks.

A source splits its data into *parts*: ``("all",)`` for one file (or one generated table) that a
split plan divides, or a subset of ``("train", "val", "test")`` for predefined files. Reading a part
yields ``RawChunk`` objects: only the rows that passed validation, with each row's position among
the part's data rows (so that split assignment can be done by position, whatever was rejected).
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Optional

import numpy as np

from datamodules.errors import BadInputError, RejectLog

SPLITS = ("train", "val", "test")
WHOLE = "all"  # the part name of a single-file (or generated) source

# Below this size a file is identified by its content hash; above it, hashing on every run would
# cost more than the cache saves, so path + size + mtime + the hash of its first and last MiB do.
CONTENT_HASH_MAX_BYTES = 64 << 20
EDGE_HASH_BYTES = 1 << 20


class CategoricalColumn(NamedTuple):
    """One categorical field of a chunk, factorised: row ``i`` has key ``uniques[codes[i]]``.

    codes: int ``[N]``, -1 where the value is missing; uniques: int64 ``[U]`` distinct keys (a key
    is the integer value itself, or for text the string's bytes packed / hashed into 64 bits).
    """

    codes: np.ndarray
    uniques: np.ndarray

    def take(self, rows: np.ndarray) -> "CategoricalColumn":
        return CategoricalColumn(self.codes[rows], self.uniques)


@dataclass
class RawChunk:
    """Validated rows of one part, before encoding.

    row_index: int64 ``[N]`` position of each row among the part's data rows (rejected rows count);
    labels: float32 ``[N]`` 0/1, NaN when the part has no labels; categorical: one column per
    ``Source.categorical_fields``; numeric: float64 ``[N, M]`` (NaN = missing) in
    ``Source.numeric_fields`` order; true_probability: float32 ``[N]`` (synthetic data only);
    rows_read / rows_rejected: data rows this chunk covered / dropped; progress: work done, in
    ``Source.progress_unit``.
    """

    row_index: np.ndarray
    labels: np.ndarray
    categorical: list[CategoricalColumn]
    numeric: np.ndarray
    rows_read: int
    rows_rejected: int
    progress: int
    true_probability: Optional[np.ndarray] = None

    @property
    def num_rows(self) -> int:
        return len(self.row_index)


class Source(ABC):
    """A dataset's raw rows: field names, parts, identity (for the cache key) and chunked reading."""

    default_name: str = "data"
    progress_unit: str = "B"
    numeric_fields: tuple[str, ...] = ()
    categorical_fields: tuple[str, ...] = ()

    @abstractmethod
    def parts(self) -> tuple[str, ...]:
        """``("all",)`` or the predefined splits present, in ``SPLITS`` order."""

    @abstractmethod
    def identity(self) -> dict:
        """JSON-able description that changes whenever the rows this source yields could change."""

    @abstractmethod
    def count_rows(self, part: str) -> int:
        """Data rows in ``part``, bad ones included (what ``RawChunk.row_index`` ranges over)."""

    @abstractmethod
    def read(self, part: str, rejects: RejectLog, block_bytes: int) -> Iterator[RawChunk]:
        """Stream ``part`` in chunks of roughly ``block_bytes`` of input."""

    def progress_total(self, part: str) -> int:
        """Total work of reading ``part`` in ``progress_unit``."""
        return 0

    @property
    def has_true_probabilities(self) -> bool:
        return False


# --------------------------------------------------------------------------- files


def fingerprint(path: Path) -> dict:
    """Identity of a file for the cache key (see ``CONTENT_HASH_MAX_BYTES`` for the trade-off)."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if stat.st_size <= CONTENT_HASH_MAX_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            return {"size": stat.st_size, "sha256": digest.hexdigest()}
        digest.update(f.read(EDGE_HASH_BYTES))
        f.seek(stat.st_size - EDGE_HASH_BYTES)
        digest.update(f.read(EDGE_HASH_BYTES))
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "edges_sha256": digest.hexdigest()}


class LineBlock(NamedTuple):
    """Whole lines of a text file. first_row: 0-based data-row index of the first line;
    first_line: its 1-based line number in the file; num_lines: lines in ``data``."""

    data: bytes
    first_row: int
    first_line: int
    num_lines: int


def count_lines(data: bytes) -> int:
    """Lines in ``data``; a last line without a newline still counts."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


class FileSource(Source):
    """A source backed by one file (``path``, split later) or predefined ``files`` per split."""

    def __init__(self, path: Optional[str] = None, files: Optional[Mapping[str, str]] = None):
        if (path is None) == (not files):
            raise BadInputError(f"{type(self).__name__}: " + ("both `path` and `files` are set" if path is not None
                                else "no input file is set") + "; give either `path` (one file, divided by the "
                                "split config) or `files` ({train: ..., val: ..., test: ...}: predefined splits)")
        if path is not None:
            self.files = {WHOLE: Path(str(path)).expanduser()}
        else:
            files = dict(files)
            unknown = sorted(set(files) - set(SPLITS))
            if unknown or "train" not in files:
                raise BadInputError(f"{type(self).__name__}: `files` needs a 'train' entry and only the keys "
                                    f"{list(SPLITS)}; got {sorted(files)}")
            self.files = {s: Path(str(files[s])).expanduser() for s in SPLITS if files.get(s)}
        for part, file in self.files.items():
            if not file.is_file():
                raise BadInputError(f"{type(self).__name__}: {part} file {file} does not exist"
                                    if not file.exists() else f"{type(self).__name__}: {file} is not a file")

    def parts(self) -> tuple[str, ...]:
        return tuple(self.files)

    def file_identity(self) -> dict:
        return {part: fingerprint(file) for part, file in self.files.items()}

    def progress_total(self, part: str) -> int:
        return self.files[part].stat().st_size

    def header_lines(self, part: str) -> int:
        """Lines before the first data row of ``part``'s file."""
        return 0

    def count_rows(self, part: str) -> int:
        file, lines = self.files[part], 0
        with file.open("rb") as f:
            tail = b""
            for block in iter(lambda: f.read(64 << 20), b""):
                lines += block.count(b"\n")
                tail = block[-1:]
        lines += 1 if tail not in (b"", b"\n") else 0
        return max(lines - self.header_lines(part), 0)

    def first_line(self, part: str) -> str:
        """The file's first line, without its line ending ('' for an empty file)."""
        with self.files[part].open("rb") as f:
            return f.readline().rstrip(b"\r\n").decode("utf-8", errors="replace")

    def check_not_empty(self, part: str) -> None:
        file = self.files[part]
        if file.stat().st_size == 0:
            raise BadInputError(f"{file}: the file is empty")
        with file.open("rb") as f:
            for _ in range(self.header_lines(part)):
                f.readline()
            if not f.read(1):
                raise BadInputError(f"{file}: the file has a header line but no data rows")

    def line_blocks(self, part: str, block_bytes: int) -> Iterator[LineBlock]:
        """Stream ``part``'s data lines (header skipped) in blocks that end at a line end."""
        header = self.header_lines(part)
        with self.files[part].open("rb") as f:
            for _ in range(header):
                f.readline()
            row, carry = 0, b""
            while True:
                block = f.read(block_bytes)
                data = carry + block
                if not block:  # end of file: whatever is left is the last line(s)
                    if data:
                        yield LineBlock(data, row, header + row + 1, count_lines(data))
                    return
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # a line longer than the block: keep reading until it ends
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
                lines = data.count(b"\n")
                yield LineBlock(data, row, header + row + 1, lines)
                row += lines
