"""The files of a cache while it is built: ``.npy`` arrays written block by block, never held in
memory (``NpyWriter``), and every split's arrays across the two passes (``SplitFiles``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple, Optional

import numpy as np

from datamodules.encode import ChunkFeatures, Encoding
from datamodules.sources.base import SPLITS

DENSE_BLOCK_ROWS = 1 << 18


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
        np.lib.format.write_array_header_1_0(
            self.file,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (self.rows, *self.row_shape),
            },
        )
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


class _ChunkPlacement(NamedTuple):
    """Where pass 1 put one chunk: its sparse fields' distinct-key counts ``int64 [S]`` (the keys
    themselves are next in the keys file) and, per split, its first row there and row count."""

    unique_counts: np.ndarray
    rows: list[tuple[str, int, int]]


class SplitFiles:
    """The split arrays while a cache is built, in the temporary folder.

    Pass 1 (``start_chunk``, then ``append`` per split): labels (and true probabilities) are
    final; ``x`` holds each chunk's provisional ids (see ``ChunkFeatures``) and the chunk's
    distinct keys go to ``chunk_keys.tmp``; dense fields are kept as float64 signed logs in
    ``x_dense.signed_log.tmp``; ``x_multi`` holds the multi-valued fields' provisional ids.
    Pass 2 (``encode``): per chunk, one lookup table from its keys,
    one gather over its rows of ``x`` (and ``x_multi``), written back in place; dense values are standardised into
    ``x_dense.npy``. Files are read and written in blocks, not memory-mapped, so the process's
    memory stays bounded by the chunk size. The keys file costs 8 bytes per distinct value per
    chunk: at most twice the size of ``x`` (every value distinct), 2.4% of it on the benchmark's
    Criteo-shaped data; it is deleted once pass 2 is done.
    """

    TEMPORARY_DENSE = "x_dense.signed_log.tmp"

    def __init__(
        self,
        folder: Path,
        num_sparse: int,
        num_dense: int,
        with_true_probabilities: bool,
        num_ceilings: int = 0,
        multi_width: int = 0,
    ):
        self.folder, self.num_dense = folder, num_dense
        self.encoded = ("x", "x_multi") if multi_width else ("x",)  # the arrays of ids that pass 2 rewrites
        self.writers: dict[str, dict[str, NpyWriter]] = {}
        for split in SPLITS:
            (folder / split).mkdir()
            writers = {
                "x": NpyWriter(folder / split / "x.npy", np.int32, (num_sparse,)),
                "y": NpyWriter(folder / split / "y.npy", np.float32),
            }
            if num_dense:
                writers["dense"] = NpyWriter(folder / split / self.TEMPORARY_DENSE, np.float64, (num_dense,))
            if with_true_probabilities:
                writers["p_true"] = NpyWriter(folder / split / "p_true.npy", np.float32)
            if multi_width:
                writers["x_multi"] = NpyWriter(folder / split / "x_multi.npy", np.int32, (multi_width,))
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

    def append(
        self,
        split: str,
        ids: np.ndarray,
        labels: np.ndarray,
        dense: Optional[np.ndarray],
        true_probability: Optional[np.ndarray],
        ceiling_probability: Optional[np.ndarray] = None,
        multi_ids: Optional[np.ndarray] = None,
    ) -> None:
        """The current chunk's rows of ``split``: ids int32 ``[n, S]``, labels float32 ``[n]``,
        dense float64 ``[n, D]`` signed logs, true_probability float32 ``[n]``, ceiling_probability
        float32 ``[n, C]``, multi_ids int32 ``[n, T]``."""
        writers = self.writers[split]
        self.placements[-1].rows.append((split, writers["x"].rows, len(ids)))
        for name, block in (
            ("x", ids),
            ("y", labels),
            ("dense", dense),
            ("p_true", true_probability),
            ("p_ceiling", ceiling_probability),
            ("x_multi", multi_ids),
        ):
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
        x_files = {
            (split, name): ((self.folder / split / f"{name}.npy").open("r+b"), self.writers[split][name])
            for split in SPLITS
            for name in self.encoded
        }
        try:
            for placement in self.placements:
                keys = np.fromfile(self.keys_file, dtype=np.int64, count=int(placement.unique_counts.sum()))
                table = encoding.lookup_table(np.split(keys, np.cumsum(placement.unique_counts)[:-1]))
                for split, first, count in placement.rows:
                    for name in self.encoded:
                        file, writer = x_files[split, name]
                        provisional = read_rows(file, writer, first, count)
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
                final.append(
                    encoding.standardize(
                        read_rows(file, signed_log, first, min(DENSE_BLOCK_ROWS, signed_log.rows - first))
                    )
                )
        final.close()
        signed_log.path.unlink()


def read_rows(file: BinaryIO, writer: NpyWriter, first: int, count: int) -> np.ndarray:
    """Rows ``[first, first + count)`` of the (closed) array ``writer`` wrote, read from ``file``."""
    block = np.empty((count, *writer.row_shape), dtype=writer.dtype)
    file.seek(writer.header_bytes + first * writer.row_bytes)
    if file.readinto(block) != block.nbytes:
        raise RuntimeError(f"{writer.path}: short read at row {first}")
    return block
