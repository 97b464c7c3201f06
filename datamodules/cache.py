"""The on-disk cache: ``<cache_dir>/<name>-<key>/`` with ``{train,val,test}/*.npy``, ``schema.json``,
``encoding.npz`` and ``manifest.json``.

``key`` hashes the source's identity (file fingerprints, format options or generator settings), the
resolved split and the encoding config, so any change to what would be written gives a new folder
and a stale cache is never reused. A cache is built in two streaming passes (1: validate rows and
count values on the training rows; 2: encode and append each split's rows to its ``.npy`` files)
inside a temporary folder that is renamed into place only when complete: an interrupted build
leaves at most a ``.tmp-*`` folder, which is never read and is removed by the next build of the
same key once its process is gone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import resource
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from datamodules.encode import EncodingConfig, EncodingFitter
from datamodules.errors import BadInputError, RejectLog
from datamodules.schema import Schema
from datamodules.sources.base import SPLITS, Source
from datamodules.splits import TRAIN, SplitConfig

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
DEFAULT_BLOCK_BYTES = 16 << 20
PROGRESS_MIN_WORK = {"B": 64 << 20, "rows": 1_000_000}  # smaller jobs finish before a bar says anything


def cache_key(source: Source, split: SplitConfig, encoding: EncodingConfig) -> str:
    identity = {"version": CACHE_FORMAT_VERSION, "source": source.identity(), "split": split.to_dict(),
                "encoding": encoding.to_dict()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name) or "data"


class NpyWriter:
    """A ``.npy`` file of known shape written block by block, never held in memory."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]):
        self.path, self.dtype, self.shape, self.rows = path, np.dtype(dtype), shape, 0
        self.file = path.open("wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                         "fortran_order": False, "shape": shape})

    def append(self, block: np.ndarray) -> None:
        """block: ``[n, *shape[1:]]``."""
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self.file.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows, expected {self.shape[0]}")


@dataclass
class SplitArrays:
    """Memory-mapped arrays of one split. x: int32 ``[N, S]`` global ids; y: float32 ``[N]`` (NaN
    when unlabelled); x_dense: float32 ``[N, D]`` or None; p_true: float32 ``[N]`` or None."""

    folder: Path
    x: np.ndarray
    y: np.ndarray
    x_dense: Optional[np.ndarray]
    p_true: Optional[np.ndarray]

    @classmethod
    def open(cls, folder: Path) -> "SplitArrays":
        def load(name: str) -> Optional[np.ndarray]:
            file = folder / f"{name}.npy"
            return np.load(file, mmap_mode="r") if file.exists() else None

        return cls(folder, load("x"), load("y"), load("x_dense"), load("p_true"))

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
    """The two passes over the source that make one cache folder."""

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
        parts, splits = {}, {s: {"rows": 0, "positives": 0, "unlabelled_rows": 0} for s in SPLITS}
        for part, chunk, codes in self._pass(assignment, rejects, "pass 1/2: validate, count values"):
            fitter.observe(chunk, codes == TRAIN)
            stats = parts.setdefault(part, {"rows_read": 0, "rows_kept": 0, "rows_rejected": 0})
            stats["rows_read"] += chunk.rows_read
            stats["rows_kept"] += chunk.num_rows
            stats["rows_rejected"] += chunk.rows_rejected
            for s, split in enumerate(SPLITS):
                labels = chunk.labels[codes == s]
                splits[split]["rows"] += len(labels)
                splits[split]["positives"] += int(np.nansum(labels))
                splits[split]["unlabelled_rows"] += int(np.isnan(labels).sum())
        self._check_pass_one(parts, splits, expected_rows, rejects)
        encoding = fitter.finish()
        fitted = time.perf_counter()

        writers = self._writers(folder, encoding.schema, {s: splits[s]["rows"] for s in SPLITS})
        kept_again = {part: 0 for part in self.parts}
        for part, chunk, codes in self._pass(assignment, RejectLog("skip"), "pass 2/2: encode"):
            x, x_dense = encoding.encode(chunk)
            for s, split in enumerate(SPLITS):
                rows = codes == s
                outputs = {"x": x, "y": chunk.labels, "x_dense": x_dense, "p_true": chunk.true_probability}
                for array_name, writer in writers[split].items():
                    writer.append(outputs[array_name][rows])
            kept_again[part] += chunk.num_rows
        for split_writers in writers.values():
            for writer in split_writers.values():
                writer.close()
        if kept_again != {p: parts[p]["rows_kept"] for p in self.parts}:
            raise BadInputError(f"the source changed while the cache was being built (rows kept in pass 1: "
                                f"{ {p: parts[p]['rows_kept'] for p in self.parts} }, pass 2: {kept_again})")
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
            "rows_read": total_read, "rows_kept": sum(p["rows_kept"] for p in parts.values()),
            "rows_rejected": rejects.total, "rejected_by_reason": dict(rejects.by_reason.most_common()),
            "rejected_examples": rejects.examples, "parts": parts, "splits": splits,
            "schema": {"sparse_fields": encoding.schema.num_sparse, "dense_fields": encoding.schema.num_dense,
                       "num_ids": encoding.schema.num_ids,
                       "vocab_sizes": {f.name: f.vocab_size for f in encoding.schema.sparse_fields}},
            "seconds": {"count_rows": round(counted - started, 3), "pass1_fit": round(fitted - counted, 3),
                        "pass2_encode": round(done - fitted, 3), "total": round(done - started, 3)},
            "rows_per_second": round(total_read / max(done - started, 1e-9)),
            "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }

    def _pass(self, assignment: dict, rejects: RejectLog, description: str):
        """Yield ``(part, chunk, uint8 [N] split of each row)`` over all parts, with a progress bar."""
        total = sum(self.source.progress_total(p) for p in self.parts)
        unit = self.source.progress_unit
        show = self.progress and total >= PROGRESS_MIN_WORK.get(unit, 0)
        with tqdm(total=total, unit=unit, unit_scale=True, desc=f"{self.name} {description}",
                  disable=not show) as bar:
            for part in self.parts:
                for chunk in self.source.read(part, rejects, self.block_bytes):
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

    def _writers(self, folder: Path, schema: Schema, rows: dict[str, int]) -> dict[str, dict[str, NpyWriter]]:
        writers = {}
        for split in SPLITS:
            (folder / split).mkdir()
            n = rows[split]
            writers[split] = {"x": NpyWriter(folder / split / "x.npy", np.int32, (n, schema.num_sparse)),
                              "y": NpyWriter(folder / split / "y.npy", np.float32, (n,))}
            if schema.num_dense:
                writers[split]["x_dense"] = NpyWriter(folder / split / "x_dense.npy", np.float32, (n, schema.num_dense))
            if self.source.has_true_probabilities:
                writers[split]["p_true"] = NpyWriter(folder / split / "p_true.npy", np.float32, (n,))
        return writers
