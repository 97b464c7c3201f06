"""The on-disk cache: ``<cache_dir>/<name>-<key>/`` with ``{train,val,test}/*.npy``, ``schema.json``,
``encoding.npz`` and ``manifest.json``.

``key`` hashes the source's identity (file fingerprints, format options or generator settings), the
resolved split and the encoding config, so any change to what would be written gives a new folder
and a stale cache is never reused. A cache is built in two streaming passes (1, the only read of
the source: validate rows, count values on the training rows, write each split's rows with
provisional ids; 2: rewrite those ids in place as global ids) inside a temporary folder that is
renamed into place only when complete: an interrupted build leaves at most a ``.tmp-*`` folder,
which is never read and is removed by the next build of the same key once its process is gone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple, Optional

import numpy as np
from tqdm.auto import tqdm

from datamodules.encode import ChunkFeatures, Encoding, EncodingConfig, EncodingFitter
from datamodules.errors import BadInputError, RejectLog
from datamodules.prefetch import read_ahead
from datamodules.schema import Schema
from datamodules.sources.base import SPLITS, Source
from datamodules.splits import SplitConfig
from measures.environment import peak_rss_mib

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
DEFAULT_BLOCK_BYTES = 16 << 20
PROGRESS_MIN_WORK = {"B": 64 << 20, "rows": 1_000_000}  # smaller jobs finish before a bar says anything
DENSE_BLOCK_ROWS = 1 << 18
READ_AHEAD_CHUNKS = 1


def cache_key(source: Source, split: SplitConfig, encoding: EncodingConfig) -> str:
    identity = {"version": CACHE_FORMAT_VERSION, "source": source.identity(), "split": split.to_dict(),
                "encoding": encoding.to_dict()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name) or "data"


class NpyWriter:
    """A ``.npy`` file written block by block, never held in memory, whose row count is only
    known at the end: the header is written for 0 rows and rewritten on ``close``.

    numpy pads the header so that the first dimension can grow to 21 digits without changing its
    length, which is what makes the rewrite in place possible (checked, not assumed)."""

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...] = ()):
        self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), tuple(row_shape), 0
        self.file = path.open("w+b")
        self.header_bytes = self._write_header()

    def _write_header(self) -> int:
        self.file.seek(0)
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                         "fortran_order": False,
                                                         "shape": (self.rows, *self.row_shape)})
        return self.file.tell()

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.row_shape))

    def append(self, block: np.ndarray) -> None:
        """block: ``[n, *row_shape]``."""
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype))
        self.rows += len(block)

    def close(self) -> None:
        if self.file.closed:
            return
        end = self.file.tell()
        if self._write_header() != self.header_bytes:
            raise RuntimeError(f"{self.path}: the .npy header changed length when its row count was written")
        self.file.seek(end)
        self.file.close()


@dataclass
class SplitArrays:
    """Memory-mapped arrays of one split. x: int32 ``[N, S]`` global ids; y: float32 ``[N]`` (NaN
    when unlabelled); x_dense: float32 ``[N, D]`` or None; p_true: float32 ``[N]`` or None;
    p_ceiling: float32 ``[N, C]`` (the source's ``ceiling_names``) or None."""

    folder: Path
    x: np.ndarray
    y: np.ndarray
    x_dense: Optional[np.ndarray]
    p_true: Optional[np.ndarray]
    p_ceiling: Optional[np.ndarray] = None

    @classmethod
    def open(cls, folder: Path) -> "SplitArrays":
        def load(name: str) -> Optional[np.ndarray]:
            file = folder / f"{name}.npy"
            return np.load(file, mmap_mode="r") if file.exists() else None

        return cls(folder, load("x"), load("y"), load("x_dense"), load("p_true"), load("p_ceiling"))

    @property
    def num_rows(self) -> int:
        return len(self.y)

    def __reduce__(self):
        # Pickled (e.g. into a spawned DataLoader worker) as its folder and reopened there, instead
        # of numpy's default of copying the mapped data into the pickle.
        return SplitArrays.open, (self.folder,)


class Cache:
    """A complete cache folder, opened read-only."""

    def __init__(self, path: Path):
        self.path = path
        self.manifest = json.loads((path / "manifest.json").read_text())
        self.schema = Schema.load(path / "schema.json")

    @staticmethod
    def is_complete(path: Path) -> bool:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            return False
        return manifest.get("format_version") == CACHE_FORMAT_VERSION and manifest.get("complete") is True

    def arrays(self, split: str) -> SplitArrays:
        return SplitArrays.open(self.path / split)


def open_or_build(source: Source, split: SplitConfig, encoding: EncodingConfig, name: str, cache_dir: str | Path,
                  on_bad_line: str = "error", block_bytes: int = DEFAULT_BLOCK_BYTES, progress: bool = True) -> Cache:
    """The cache for this source and preprocessing, built first if it does not exist yet."""
    split = split.resolved(source.parts())
    key = cache_key(source, split, encoding)
    cache_dir = Path(cache_dir)
    final = cache_dir / f"{_safe_name(name)}-{key}"
    if not Cache.is_complete(final):
        _build(source, split, encoding, name, key, final, on_bad_line, block_bytes, progress)
    cache = Cache(final)
    rejected = cache.manifest["rows_rejected"]
    if on_bad_line == "error" and rejected:
        raise BadInputError(f"the cache {final} was built with on_bad_line=skip and {rejected} rows were rejected "
                            f"({', '.join(f'{n} {r}' for r, n in cache.manifest['rejected_by_reason'].items())}); "
                            f"fix the data or set on_bad_line=skip")
    return cache


def _remove_stale_builds(cache_dir: Path, prefix: str) -> None:
    """Delete temporary folders of earlier builds of this key whose process no longer runs."""
    for folder in cache_dir.glob(f"{prefix}-*"):
        try:
            pid = int(folder.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _build(source: Source, split: SplitConfig, encoding: EncodingConfig, name: str, key: str, final: Path,
           on_bad_line: str, block_bytes: int, progress: bool) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".tmp-{final.name}"
    _remove_stale_builds(final.parent, prefix)
    temporary = final.parent / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    log.info("building the %s cache in %s", name, final)
    try:
        manifest = _Builder(source, split, encoding, name, on_bad_line, block_bytes, progress).run(temporary)
        manifest["key"] = key
        (temporary / "manifest.json").write_text(json.dumps(manifest, indent=2))  # last: marks completeness
        if final.exists() and not Cache.is_complete(final):  # never made by a rename: damaged by hand
            shutil.rmtree(final)
        try:
            os.rename(temporary, final)
        except OSError:  # another process finished the same cache first; theirs is as good
            if not Cache.is_complete(final):
                raise
            shutil.rmtree(temporary, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


class _Builder:
    """The two passes that make one cache folder. Pass 1 is the only read of the source: it
    validates rows, counts values on the training rows, and writes each split's rows with
    provisional ids (see ``_SplitFiles``). Pass 2 turns those into global ids in place once the
    vocabularies are known, which costs a gather per value instead of parsing the text again."""

    def __init__(self, source: Source, split: SplitConfig, encoding: EncodingConfig, name: str, on_bad_line: str,
                 block_bytes: int, progress: bool):
        self.source, self.split, self.encoding, self.name = source, split, encoding, name
        self.on_bad_line, self.block_bytes, self.progress = on_bad_line, block_bytes, progress
        self.parts = source.parts()

    def run(self, folder: Path) -> dict:
        started = time.perf_counter()
        expected_rows = {p: self.source.count_rows(p) for p in self.parts if self.split.needs_row_count(p)}
        assignment = {p: self.split.assign(p, expected_rows.get(p)) for p in self.parts}
        counted = time.perf_counter()

        fitter = EncodingFitter(self.source, self.encoding)
        rejects = RejectLog(self.on_bad_line)
        files = _SplitFiles(folder, len(fitter.counters), 0 if fitter.bucketize else len(fitter.numeric_fields),
                            self.source.has_true_probabilities, len(self.source.ceiling_names))
        try:
            parts, splits = self._pass_one(assignment, fitter, rejects, files)
            self._check_pass_one(parts, splits, expected_rows, rejects)
            encoding = fitter.finish()
            fitted = time.perf_counter()
            kept = sum(p["rows_kept"] for p in parts.values())
            with self._bar(kept, "rows", "pass 2/2: encode") as bar:
                files.encode(encoding, bar.update)
        finally:
            files.close()
        if files.rows() != {s: splits[s]["rows"] for s in SPLITS}:
            raise RuntimeError(f"rows written {files.rows()} differ from rows counted {splits}")
        encoding.schema.save(folder / "schema.json")
        encoding.save(folder / "encoding.npz")
        done = time.perf_counter()

        total_read = sum(p["rows_read"] for p in parts.values())
        for stats in splits.values():
            labelled = stats["rows"] - stats["unlabelled_rows"]
            stats["positive_rate"] = round(stats["positives"] / labelled, 6) if labelled else None
        if rejects.total:
            log.warning("%s: rejected %d of %d rows: %s", self.name, rejects.total, total_read, rejects.summary())
        return {
            "format_version": CACHE_FORMAT_VERSION, "complete": True, "name": self.name,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {"type": type(self.source).__name__, **self.source.identity()},
            "split": self.split.to_dict(), "encoding": self.encoding.to_dict(), "on_bad_line": self.on_bad_line,
            "rows_read": total_read, "rows_kept": kept,
            "rows_rejected": rejects.total, "rejected_by_reason": dict(rejects.by_reason.most_common()),
            "rejected_examples": rejects.examples, "parts": parts, "splits": splits,
            "schema": {"sparse_fields": encoding.schema.num_sparse, "dense_fields": encoding.schema.num_dense,
                       "num_ids": encoding.schema.num_ids,
                       "vocab_sizes": {f.name: f.vocab_size for f in encoding.schema.sparse_fields}},
            "seconds": {"count_rows": round(counted - started, 3), "pass1_fit": round(fitted - counted, 3),
                        "pass2_encode": round(done - fitted, 3), "total": round(done - started, 3)},
            "rows_per_second": round(total_read / max(done - started, 1e-9)),
            "process_peak_rss_mib": round(peak_rss_mib()),
        }

    def _pass_one(self, assignment: dict, fitter: EncodingFitter, rejects: RejectLog,
                  files: "_SplitFiles") -> tuple[dict, dict]:
        """Read every chunk once: count the training rows' values, write each split's rows.
        -> (per part: rows read / kept / rejected, per split: rows / positives / unlabelled rows)."""
        parts, splits = {}, {s: {"rows": 0, "positives": 0, "unlabelled_rows": 0} for s in SPLITS}
        for part, chunk, codes in self._read(assignment, rejects):
            features = fitter.features(chunk)
            files.start_chunk(features)
            for split, rows in _rows_by_split(codes):
                ids, labels = features.ids[rows], chunk.labels[rows]
                dense = None if features.dense is None else features.dense[rows]
                if split == "train":
                    fitter.observe(features, ids, dense)
                files.append(split, ids, labels, dense,
                             None if chunk.true_probability is None else chunk.true_probability[rows],
                             None if chunk.ceiling_probability is None else chunk.ceiling_probability[rows])
                splits[split]["rows"] += len(labels)
                splits[split]["positives"] += int(np.nansum(labels))
                splits[split]["unlabelled_rows"] += int(np.isnan(labels).sum())
            stats = parts.setdefault(part, {"rows_read": 0, "rows_kept": 0, "rows_rejected": 0})
            stats["rows_read"] += chunk.rows_read
            stats["rows_kept"] += chunk.num_rows
            stats["rows_rejected"] += chunk.rows_rejected
        files.close_pass_one()
        return parts, splits

    def _bar(self, total: int, unit: str, description: str) -> tqdm:
        show = self.progress and total >= PROGRESS_MIN_WORK.get(unit, 0)
        return tqdm(total=total, unit=unit, unit_scale=True, desc=f"{self.name} {description}", disable=not show)

    def _read(self, assignment: dict, rejects: RejectLog):
        """Yield ``(part, chunk, uint8 [N] split of each row)`` over all parts, with a progress bar."""
        total = sum(self.source.progress_total(p) for p in self.parts)
        with self._bar(total, self.source.progress_unit, "pass 1/2: validate, count values") as bar:
            for part in self.parts:
                for chunk in read_ahead(self.source.read(part, rejects, self.block_bytes), READ_AHEAD_CHUNKS):
                    split = assignment[part]
                    codes = split[chunk.row_index] if isinstance(split, np.ndarray) else \
                        np.full(chunk.num_rows, split, dtype=np.uint8)
                    yield part, chunk, codes
                    bar.update(chunk.progress)

    def _check_pass_one(self, parts: dict, splits: dict, expected_rows: dict, rejects: RejectLog) -> None:
        for part, stats in parts.items():
            if stats["rows_read"] != stats["rows_kept"] + stats["rows_rejected"]:
                raise RuntimeError(f"{part}: rows read {stats['rows_read']} != kept {stats['rows_kept']} + "
                                   f"rejected {stats['rows_rejected']}")
            if part in expected_rows and stats["rows_read"] != expected_rows[part]:
                raise BadInputError(f"{part}: counted {expected_rows[part]} data rows but read {stats['rows_read']};"
                                    f" did the file change while it was read?")
        if sum(p["rows_rejected"] for p in parts.values()) != rejects.total:
            raise RuntimeError("rejected rows were not all accounted for by reason")
        if splits["train"]["rows"] == 0:
            raise BadInputError(f"{self.name}: no valid training rows (read {sum(p['rows_read'] for p in parts.values())}"
                                f", rejected {rejects.total}: {rejects.summary()})")
        if splits["train"]["unlabelled_rows"]:
            raise BadInputError(f"{self.name}: the training rows have no labels (an unlabelled file, such as "
                                f"Kaggle's Criteo test.txt, can only be the test split)")


def _rows_by_split(codes: np.ndarray) -> Iterator[tuple[str, np.ndarray | slice]]:
    """codes: uint8 ``[N]`` split of each row -> ``(split, rows)`` for each split that has rows,
    ``rows`` a boolean mask, or ``slice(None)`` when the chunk goes to one split whole."""
    counts = np.bincount(codes, minlength=len(SPLITS))
    for s, split in enumerate(SPLITS):
        if counts[s] == len(codes) and len(codes):
            yield split, slice(None)
        elif counts[s]:
            yield split, codes == s


class _ChunkPlacement(NamedTuple):
    """Where pass 1 put one chunk: its sparse fields' distinct-key counts ``int64 [S]`` (the keys
    themselves are next in the keys file) and, per split, its first row there and row count."""

    unique_counts: np.ndarray
    rows: list[tuple[str, int, int]]


class _SplitFiles:
    """The split arrays while a cache is built, in the temporary folder.

    Pass 1 (``start_chunk``, then ``append`` per split): labels (and true probabilities) are
    final; ``x`` holds each chunk's provisional ids (see ``ChunkFeatures``) and the chunk's
    distinct keys go to ``chunk_keys.tmp``; dense fields are kept as float64 signed logs in
    ``x_dense.signed_log.tmp``. Pass 2 (``encode``): per chunk, one lookup table from its keys,
    one gather over its rows of ``x``, written back in place; dense values are standardised into
    ``x_dense.npy``. Files are read and written in blocks, not memory-mapped, so the process's
    memory stays bounded by the chunk size. The keys file costs 8 bytes per distinct value per
    chunk: at most twice the size of ``x`` (every value distinct), 2.4% of it on the benchmark's
    Criteo-shaped data; it is deleted once pass 2 is done.
    """

    TEMPORARY_DENSE = "x_dense.signed_log.tmp"

    def __init__(self, folder: Path, num_sparse: int, num_dense: int, with_true_probabilities: bool,
                 num_ceilings: int = 0):
        self.folder, self.num_dense = folder, num_dense
        self.writers: dict[str, dict[str, NpyWriter]] = {}
        for split in SPLITS:
            (folder / split).mkdir()
            writers = {"x": NpyWriter(folder / split / "x.npy", np.int32, (num_sparse,)),
                       "y": NpyWriter(folder / split / "y.npy", np.float32)}
            if num_dense:
                writers["dense"] = NpyWriter(folder / split / self.TEMPORARY_DENSE, np.float64, (num_dense,))
            if with_true_probabilities:
                writers["p_true"] = NpyWriter(folder / split / "p_true.npy", np.float32)
            if num_ceilings:
                writers["p_ceiling"] = NpyWriter(folder / split / "p_ceiling.npy", np.float32, (num_ceilings,))
            self.writers[split] = writers
        self.keys_path = folder / "chunk_keys.tmp"
        self.keys_file = self.keys_path.open("w+b")
        self.placements: list[_ChunkPlacement] = []

    def start_chunk(self, features: ChunkFeatures) -> None:
        for keys in features.uniques:
            self.keys_file.write(np.ascontiguousarray(keys, dtype=np.int64))
        self.placements.append(_ChunkPlacement(np.array([len(keys) for keys in features.uniques]), []))

    def append(self, split: str, ids: np.ndarray, labels: np.ndarray, dense: Optional[np.ndarray],
               true_probability: Optional[np.ndarray], ceiling_probability: Optional[np.ndarray] = None) -> None:
        """The current chunk's rows of ``split``: ids int32 ``[n, S]``, labels float32 ``[n]``,
        dense float64 ``[n, D]`` signed logs, true_probability float32 ``[n]``, ceiling_probability
        float32 ``[n, C]``."""
        writers = self.writers[split]
        self.placements[-1].rows.append((split, writers["x"].rows, len(ids)))
        for name, block in (("x", ids), ("y", labels), ("dense", dense), ("p_true", true_probability),
                            ("p_ceiling", ceiling_probability)):
            if name in writers:
                writers[name].append(block)

    def close_pass_one(self) -> None:
        """Write every array's final row count into its header (pass 2 only rewrites values)."""
        for writers in self.writers.values():
            for writer in writers.values():
                writer.close()

    def close(self) -> None:
        """Release every file, whether the build finished or failed."""
        for writers in self.writers.values():
            for writer in writers.values():
                writer.file.close()
        self.keys_file.close()

    def rows(self) -> dict[str, int]:
        return {split: writers["x"].rows for split, writers in self.writers.items()}

    def encode(self, encoding: Encoding, progress: Callable[[int], object]) -> None:
        """Pass 2: provisional ids -> global ids in every split's ``x``; dense values standardised."""
        self.keys_file.seek(0)
        x_files = {split: ((self.folder / split / "x.npy").open("r+b"), self.writers[split]["x"]) for split in SPLITS}
        try:
            for placement in self.placements:
                keys = np.fromfile(self.keys_file, dtype=np.int64, count=int(placement.unique_counts.sum()))
                table = encoding.lookup_table(np.split(keys, np.cumsum(placement.unique_counts)[:-1]))
                for split, first, count in placement.rows:
                    file, writer = x_files[split]
                    provisional = _read_rows(file, writer, first, count)
                    file.seek(writer.header_bytes + first * writer.row_bytes)
                    file.write(table[provisional])
                    progress(count)
        finally:
            for file, _ in x_files.values():
                file.close()
        self.keys_file.close()
        self.keys_path.unlink()
        if self.num_dense:
            for split in SPLITS:
                self._standardize(split, encoding)

    def _standardize(self, split: str, encoding: Encoding) -> None:
        signed_log = self.writers[split]["dense"]
        final = NpyWriter(self.folder / split / "x_dense.npy", np.float32, (self.num_dense,))
        with signed_log.path.open("rb") as file:
            for first in range(0, signed_log.rows, DENSE_BLOCK_ROWS):
                final.append(encoding.standardize(_read_rows(file, signed_log, first,
                                                             min(DENSE_BLOCK_ROWS, signed_log.rows - first))))
        final.close()
        signed_log.path.unlink()


def _read_rows(file: BinaryIO, writer: NpyWriter, first: int, count: int) -> np.ndarray:
    """Rows ``[first, first + count)`` of the (closed) array ``writer`` wrote, read from ``file``."""
    block = np.empty((count, *writer.row_shape), dtype=writer.dtype)
    file.seek(writer.header_bytes + first * writer.row_bytes)
    if file.readinto(block) != block.nbytes:
        raise RuntimeError(f"{writer.path}: short read at row {first}")
    return block
