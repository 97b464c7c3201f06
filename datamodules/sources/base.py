"""What every source yields (``RawChunk``), the ``Source`` interface, and reading text files in line blocks.

A source splits its data into *parts*: ``("all",)`` for one file (or one generated table) that a
split plan divides, or a subset of ``("train", "val", "test")`` for predefined files. Reading a part
yields ``RawChunk`` objects: only the rows that passed validation, with each row's position among
the part's data rows (so that split assignment can be done by position, whatever was rejected).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping, NamedTuple, Optional

import numpy as np

from datamodules.errors import BadInputError, RejectLog

SPLITS = ("train", "val", "test")
WHOLE = "all"  # the part name of a single-file (or generated) source

# Below this size a file is identified by its content hash; above it, hashing on every run would
# cost more than the cache saves, so path + size + mtime + the hash of its first and last MiB do.
CONTENT_HASH_MAX_BYTES = 64 << 20
EDGE_HASH_BYTES = 1 << 20
COUNT_BUFFER_BYTES = 4 << 20
NEWLINE = ord("\n")
SCAN_BYTES = 1 << 18


class CategoricalColumn(NamedTuple):
    """One categorical field of a chunk, factorised: row ``i`` has key ``uniques[codes[i]]``.

    codes: int ``[N]``, -1 where the value is missing; uniques: int64 ``[U]`` distinct keys (a key
    is the integer value itself, or for text the string's bytes packed / hashed into 64 bits);
    text: whether the keys are text (which orders differently from integers).
    """

    codes: np.ndarray
    uniques: np.ndarray
    text: bool = False

    def take(self, rows: np.ndarray) -> "CategoricalColumn":
        return CategoricalColumn(self.codes[rows], self.uniques, self.text)


@dataclass
class RawChunk:
    """Validated rows of one part, before encoding.

    row_index: int64 ``[N]`` position of each row among the part's data rows (rejected rows count);
    labels: float32 ``[N]`` 0/1, NaN when the part has no labels; categorical: one column per
    ``Source.categorical_fields``; numeric: float64 ``[N, M]`` (NaN = missing) in
    ``Source.numeric_fields`` order; true_probability: float32 ``[N]`` (synthetic data only);
    ceiling_probability: float32 ``[N, C]``, the ceilings of ``Source.ceiling_names`` (synthetic only);
    multi: one ``MultiColumn`` per ``Source.multi_valued`` field, in its order; rows_read /
    rows_rejected: data rows this chunk covered / dropped; progress: work done, in
    ``Source.progress_unit``; passthrough: columns a table source was asked to carry along
    unread (an id column for scoring), ``[N]`` each.
    """

    row_index: np.ndarray
    labels: np.ndarray
    categorical: list[CategoricalColumn]
    numeric: np.ndarray
    rows_read: int
    rows_rejected: int
    progress: int
    true_probability: Optional[np.ndarray] = None
    ceiling_probability: Optional[np.ndarray] = None
    multi: list = field(default_factory=list)
    passthrough: Optional[dict] = None

    @property
    def num_rows(self) -> int:
        return len(self.row_index)


class Source(ABC):
    """A dataset's raw rows: field names, parts, identity (for the cache key) and chunked reading."""

    default_name: str = "data"
    progress_unit: str = "B"
    numeric_fields: tuple[str, ...] = ()
    categorical_fields: tuple[str, ...] = ()
    # multi-valued fields: name -> ``datamodules.sources.multi.MultiValued`` options, in field order
    multi_valued: Mapping = {}

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

    # What the true probabilities restricted to a model family are called, when the source knows them.
    ceiling_names: tuple[str, ...] = ()


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
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "edges_sha256": digest.hexdigest(),
    }


class LineBlock(NamedTuple):
    """Whole lines of a text file. data: their bytes (a read-only bytes-like object); first_row:
    0-based data-row index of the first line; first_line: its 1-based line number in the file;
    num_lines: lines in ``data``; progress: bytes of the file on disk this block took (less than
    ``len(data)`` for a compressed file)."""

    data: memoryview
    first_row: int
    first_line: int
    num_lines: int
    progress: int = 0


# Compressed inputs, told by their first bytes (and checked against the name's suffix).
COMPRESSION_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
SNIFF_BYTES = 1 << 16


def compression_of(path: Path) -> Optional[str]:
    """``gzip``, ``bz2``, ``xz``, ``zstd`` or None (plain), from the file's first bytes; a name whose
    suffix promises a compression the bytes do not have is an error, not a guess."""
    with path.open("rb") as f:
        head = f.read(8)
    found = next((name for magic, name in COMPRESSION_MAGIC if head.startswith(magic)), None)
    claimed = COMPRESSION_SUFFIXES.get(path.suffix.lower())
    if claimed and found != claimed:
        raise BadInputError(
            f"{path}: the name says {claimed}-compressed, but the file does not start like {claimed} "
            f"data" + (f" ({found} does)" if found else "") + "; rename or recompress it"
        )
    return found


class _ArrowStream(io.RawIOBase):
    """A pyarrow input stream (zstd) as a raw stream, for ``io.BufferedReader``."""

    def __init__(self, stream):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.stream.readinto(buffer)


@contextlib.contextmanager
def open_decompressed(path: Path, compression: Optional[str]) -> Iterator[tuple[BinaryIO, Callable[[], int]]]:
    """``(a binary reader of the file's text bytes, decompressed as it is read, never copied whole;
    the position reached in the file on disk)``."""
    with path.open("rb") as raw:
        if compression is None:
            yield raw, raw.tell
            return
        if compression == "zstd":
            import pyarrow as pa

            stream = io.BufferedReader(_ArrowStream(pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd")))
        elif compression == "gzip":
            stream = gzip.GzipFile(fileobj=raw)
        else:
            stream = {"bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[compression](raw)
        try:
            yield stream, raw.tell
        except (OSError, EOFError, lzma.LZMAError) as error:
            raise BadInputError(f"{path}: the {compression} data is damaged or cut short ({error})") from None
        finally:
            stream.close()


def check_text(path: Path, head: bytes, compression: Optional[str]) -> None:
    """A file whose first bytes are binary gets one sentence, never its bytes echoed."""
    where = f"{path}" + (f" (after {compression} decompression)" if compression else "")
    sniff = head[:SNIFF_BYTES]
    if sniff.count(b"\0") > 1:  # one NUL is a bad line, reported with its line number
        raise BadInputError(
            f"{where}: this is not a text file (it holds binary data); expected "
            f"delimited text lines, plain or compressed with gzip, bz2, xz or zstd"
        )
    try:
        sniff.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(sniff) - 4:  # not just a character cut by the sniff's end
            raise BadInputError(
                f"{where}: not UTF-8 text (byte {error.start + 1} cannot start a character); "
                f"expected delimited text lines, plain or compressed"
            ) from None


def count_newlines(data: bytes | bytearray | memoryview, end: Optional[int] = None) -> int:
    """Newline bytes in ``data[:end]``, counted by numpy (several times faster than ``bytes.count``)
    in slices whose scratch comparison stays small enough to be reused, not page-faulted afresh."""
    array = np.frombuffer(data, dtype=np.uint8, count=len(data) if end is None else end)
    return sum(int(np.count_nonzero(array[i : i + SCAN_BYTES] == NEWLINE)) for i in range(0, len(array), SCAN_BYTES))


def contains_byte(data: bytes | bytearray | memoryview, byte: int) -> bool:
    """Whether ``data`` holds ``byte`` (numpy, in slices as in ``count_newlines``)."""
    array = np.frombuffer(data, dtype=np.uint8)
    return any(bool((array[i : i + SCAN_BYTES] == byte).any()) for i in range(0, len(array), SCAN_BYTES))


def count_lines(data: bytes | bytearray | memoryview, end: Optional[int] = None) -> int:
    """Lines in ``data[:end]``; a last line without a newline still counts."""
    end = len(data) if end is None else end
    return count_newlines(data, end) + (1 if end and data[end - 1] != NEWLINE else 0)


class FileSource(Source):
    """A source backed by one file (``path``, split later) or predefined ``files`` per split.

    how_to_get: where this kind of data comes from, its format, and how to pass it; shown when no
    input file is given or a given one does not exist. Subclasses state it for their format; a
    dataset config may give a more specific text (e.g. Avazu for ``TableSource``).
    """

    how_to_get: str = (
        "Pass your file with data.source.path=FILE (one file, split at random by the split config) "
        "or data.source.files='{train: FILE, val: FILE, test: FILE}' (predefined splits)."
    )

    def __init__(
        self, path: Optional[str] = None, files: Optional[Mapping[str, str]] = None, how_to_get: Optional[str] = None
    ):
        if how_to_get:
            self.how_to_get = str(how_to_get).strip()
        name = type(self).__name__
        files = {str(k): v for k, v in dict(files or {}).items() if v}  # a config's unset entries are null
        if (path is None) == (not files):
            raise BadInputError(
                f"{name}: "
                + ("both `path` and `files` are set" if path is not None else "no input file is set")
                + "; give either `path` (one file, divided by the "
                "split config) or `files` ({train: ..., val: ..., test: ...}: predefined splits).\n" + self.how_to_get
            )
        if path is not None:
            self.files = {WHOLE: Path(str(path)).expanduser()}
        else:
            unknown = sorted(set(files) - set(SPLITS))
            if unknown or "train" not in files:
                raise BadInputError(
                    f"{name}: `files` needs a 'train' entry and only the keys {list(SPLITS)}; got "
                    f"{sorted(files)}.\n{self.how_to_get}"
                )
            self.files = {s: Path(str(files[s])).expanduser() for s in SPLITS if s in files}
        for part, file in self.files.items():
            which = "the input file" if part == WHOLE else f"the {part} file"
            if not file.exists():
                raise BadInputError(f"{name}: {which} {file} does not exist.\n{self.how_to_get}")
            if not file.is_file():
                raise BadInputError(f"{name}: {which} {file} is not a file")
        self.compression = {part: compression_of(file) for part, file in self.files.items()}

    def open(self, part: str):
        """``part``'s file as a reader of its text bytes, decompressed if need be (see ``open_decompressed``)."""
        return open_decompressed(self.files[part], self.compression[part])

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
        # One reused buffer: a fresh multi-MiB bytes object per read costs as much as the counting.
        lines, buffer, last_byte = 0, bytearray(COUNT_BUFFER_BYTES), NEWLINE
        with self.open(part) as (f, _):
            while read := f.readinto(buffer):
                lines += count_newlines(buffer, read)
                last_byte = buffer[read - 1]
        lines += 1 if last_byte != NEWLINE else 0
        return max(lines - self.header_lines(part), 0)

    def first_line(self, part: str) -> str:
        """The file's first line, without its line ending ('' for an empty file)."""
        with self.open(part) as (f, _):
            return f.readline().rstrip(b"\r\n").decode("utf-8", errors="replace")

    def check_not_empty(self, part: str) -> None:
        file = self.files[part]
        if file.stat().st_size == 0:
            raise BadInputError(f"{file}: the file is empty")
        with self.open(part) as (f, _):
            head = f.read(SNIFF_BYTES)
        if not head:
            raise BadInputError(f"{file}: the file is empty once decompressed")
        check_text(file, head, self.compression[part])
        with self.open(part) as (f, _):
            for _ in range(self.header_lines(part)):
                f.readline()
            if not f.read(1):
                raise BadInputError(f"{file}: the file has a header line but no data rows")

    def line_blocks(self, part: str, block_bytes: int) -> Iterator[LineBlock]:
        """Stream ``part``'s data lines (header skipped) in blocks that end at a line end.

        Each block is read into a buffer of its own behind the partial line the previous one left,
        and handed on as a view: one copy of the file's bytes, however long the lines."""
        header = self.header_lines(part)
        with self.open(part) as (f, position):
            for _ in range(header):
                f.readline()
            row, carry, consumed = 0, b"", 0
            while True:
                buffer = bytearray(len(carry) + block_bytes)
                buffer[: len(carry)] = carry
                end = len(carry) + f.readinto(memoryview(buffer)[len(carry) :])
                if end == len(carry):  # end of file: whatever is left is the last line(s)
                    if end:
                        yield LineBlock(
                            memoryview(buffer)[:end].toreadonly(),
                            row,
                            header + row + 1,
                            count_lines(buffer, end),
                            position() - consumed,
                        )
                    return
                cut = buffer.rfind(b"\n", 0, end) + 1
                if cut == 0:  # a line longer than the block: keep reading until it ends
                    carry = bytes(buffer[:end])
                    continue
                carry = bytes(buffer[cut:end])
                lines = count_newlines(buffer, cut)
                progress, consumed = position() - consumed, position()
                yield LineBlock(memoryview(buffer)[:cut].toreadonly(), row, header + row + 1, lines, progress)
                row += lines
