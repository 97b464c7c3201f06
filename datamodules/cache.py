"""The on-disk cache: ``<cache_dir>/<name>-<key>/`` with ``{train,val,test}/*.npy``, ``schema.json``,
``encoding.npz`` and ``manifest.json``.

``key`` hashes the source's identity (file fingerprints, format options or generator settings), the
resolved split and the encoding config, so any change to what would be written gives a new folder
and a stale cache is never reused. A cache is built (``cache_build``: two streaming passes over the
source, writing through ``cache_files``) inside a temporary folder that is renamed into place only
when complete: an interrupted build leaves at most a ``.tmp-*`` folder, which is never read and is
removed by the next build of the same key once its process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from datamodules.cache_build import CacheBuilder
from datamodules.encode import EncodingConfig
from datamodules.errors import BadInputError
from datamodules.schema import Schema
from datamodules.sources.base import Source
from datamodules.splits import SplitConfig

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
DEFAULT_BLOCK_BYTES = 16 << 20


def cache_key(source: Source, split: SplitConfig, encoding: EncodingConfig) -> str:
    identity = {
        "version": CACHE_FORMAT_VERSION,
        "source": source.identity(),
        "split": split.to_dict(),
        "encoding": encoding.to_dict(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name) or "data"


@dataclass
class SplitArrays:
    """Memory-mapped arrays of one split. x: int32 ``[N, S]`` global ids; y: float32 ``[N]`` (NaN
    when unlabelled); x_dense: float32 ``[N, D]`` or None; p_true: float32 ``[N]`` or None;
    p_ceiling: float32 ``[N, C]`` (the source's ``ceiling_names``) or None; x_multi: int32 ``[N, T]``
    global ids of the multi-valued fields (``Schema.multi_width`` columns) or None."""

    folder: Path
    x: np.ndarray
    y: np.ndarray
    x_dense: Optional[np.ndarray]
    p_true: Optional[np.ndarray]
    p_ceiling: Optional[np.ndarray] = None
    x_multi: Optional[np.ndarray] = None

    @classmethod
    def open(cls, folder: Path) -> "SplitArrays":
        def load(name: str) -> Optional[np.ndarray]:
            file = folder / f"{name}.npy"
            return np.load(file, mmap_mode="r") if file.exists() else None

        return cls(folder, load("x"), load("y"), load("x_dense"), load("p_true"), load("p_ceiling"), load("x_multi"))

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


def open_or_build(
    source: Source,
    split: SplitConfig,
    encoding: EncodingConfig,
    name: str,
    cache_dir: str | Path,
    on_bad_line: str = "error",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: bool = True,
) -> Cache:
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
        raise BadInputError(
            f"the cache {final} was built with on_bad_line=skip and {rejected} rows were rejected "
            f"({', '.join(f'{n} {r}' for r, n in cache.manifest['rejected_by_reason'].items())}); "
            f"fix the data or set on_bad_line=skip"
        )
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


def _build(
    source: Source,
    split: SplitConfig,
    encoding: EncodingConfig,
    name: str,
    key: str,
    final: Path,
    on_bad_line: str,
    block_bytes: int,
    progress: bool,
) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".tmp-{final.name}"
    _remove_stale_builds(final.parent, prefix)
    temporary = final.parent / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    log.info("building the %s cache in %s", name, final)
    try:
        built = CacheBuilder(source, split, encoding, name, on_bad_line, block_bytes, progress).run(temporary)
        manifest = {"format_version": CACHE_FORMAT_VERSION, "complete": True, **built, "key": key}
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
