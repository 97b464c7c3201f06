"""``CTRDataModule``: source -> cached, encoded splits -> ``Batch`` streams.

A batch is made in one place, ``SplitBatches.__getitem__``: a sorted slice of the epoch's shuffled
row order (training) or a contiguous block (evaluation), gathered from the memory-mapped split in
one vectorised read. There is no per-row ``__getitem__`` and no collate step. Which rows, and how
they are shared among data-parallel ranks, is ``datamodules.sampling``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.cache import DEFAULT_BLOCK_BYTES, Cache, SplitArrays, open_or_build
from datamodules.encode import EncodingConfig
from datamodules.errors import check_on_bad_line
from datamodules.prefetch import Prefetched
from datamodules.sampling import ContiguousBatches, ShuffledBatches
from datamodules.schema import Batch, Schema
from datamodules.sources.base import SPLITS, Source
from datamodules.sources.synthetic import SyntheticSource
from datamodules.splits import SplitConfig

DEFAULT_CACHE_DIR = ".cache/ctr-bench"


def plain(value: Any) -> Any:
    """Hydra's DictConfig / ListConfig -> plain dicts and lists (anything else unchanged)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class SplitBatches(Dataset):
    """Item ``rows`` (a sorted int64 index array or a slice) of one split is the ``Batch`` of those rows."""

    def __init__(self, arrays: SplitArrays):
        self.arrays = arrays

    def __len__(self) -> int:
        return self.arrays.num_rows

    def __getitem__(self, rows: np.ndarray | slice) -> Batch:
        a = self.arrays
        # astype / np.array copy: a slice of a memmap is a read-only view, which torch must not share
        x = torch.from_numpy(a.x[rows].astype(np.int64))
        y = torch.from_numpy(np.array(a.y[rows]))
        x_dense = torch.from_numpy(np.array(a.x_dense[rows])) if a.x_dense is not None else None
        if a.x_multi is None:
            return Batch(x, y, x_dense)
        return Batch(x, y, x_dense, torch.from_numpy(a.x_multi[rows].astype(np.int64)))


def _unchanged(batch: Batch) -> Batch:
    return batch


def batch_loader(
    arrays: SplitArrays, sampler: Sampler, num_workers: int = 0, pin_memory: bool = False, prefetch: int = 0
) -> DataLoader | Prefetched:
    """The ``Batch`` stream of ``arrays`` in ``sampler``'s order, as every loader of ``CTRDataModule``
    serves it (batches made in ``num_workers`` worker processes, or ``prefetch`` ahead on a thread)."""
    loader = DataLoader(
        SplitBatches(arrays),
        batch_size=None,
        sampler=sampler,
        collate_fn=_unchanged,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
    return Prefetched(loader, prefetch) if prefetch else loader


class CTRDataModule(pl.LightningDataModule):
    """A CTR dataset, preprocessed once into the cache and served as ``Batch`` objects.

    source: a ``Source`` (default: ``SyntheticSource()``); split: ``SplitConfig`` fields (kind,
    ratios, seed, val_from_train); encoding: ``EncodingConfig`` fields (min_count, numeric); name:
    the dataset's name in results (default: the source's); cache_dir: where caches live;
    batch_size / eval_batch_size (default: batch_size); seed: the run seed, which only drives the
    per-epoch shuffling (split and generator seeds are separate, so runs share one cache);
    on_bad_line: ``error`` or ``skip``; num_workers / pin_memory: passed to the DataLoaders;
    prefetch: batches gathered ahead on a background thread (``Prefetched``; 0: on the calling thread);
    drop_last: drop the last partial training batch; block_bytes: input read per chunk while
    preprocessing; progress: show a progress bar while preprocessing large inputs.
    """

    def __init__(
        self,
        source: Optional[Source] = None,
        split: Optional[Mapping[str, Any] | SplitConfig] = None,
        encoding: Optional[Mapping[str, Any] | EncodingConfig] = None,
        name: Optional[str] = None,
        cache_dir: str = DEFAULT_CACHE_DIR,
        batch_size: int = 4096,
        eval_batch_size: Optional[int] = None,
        seed: int = 0,
        on_bad_line: str = "error",
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        progress: bool = True,
        prefetch: int = 0,
    ):
        super().__init__()
        source = SyntheticSource() if source is None else source
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError("batch sizes must be >= 1")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0 batches, got {prefetch}")
        self.source = source
        self.split_config = SplitConfig.from_any(plain(split))
        self.encoding_config = EncodingConfig.from_any(plain(encoding))
        self.name = name or source.default_name
        self.cache_dir = Path(cache_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.seed = int(seed)
        self.on_bad_line = check_on_bad_line(on_bad_line)
        self.num_workers, self.pin_memory, self.drop_last = int(num_workers), bool(pin_memory), bool(drop_last)
        self.block_bytes, self.progress, self.prefetch = int(block_bytes), bool(progress), int(prefetch)
        self._cache: Optional[Cache] = None
        self._arrays: dict[str, SplitArrays] = {}
        self._resume_at: Optional[tuple[int, int]] = None

    # ------------------------------------------------------------------ Lightning hooks

    def prepare_data(self) -> None:
        """Build the cache if it is missing (Lightning calls this on one process only)."""
        self._open_cache()

    def setup(self, stage: Optional[str] = None) -> None:
        cache = self._open_cache()
        self._arrays = {split: cache.arrays(split) for split in SPLITS}

    def train_dataloader(self) -> DataLoader:
        arrays = self.split_arrays("train")
        rank, world_size = self.replica()
        sampler = ShuffledBatches(arrays.num_rows, self.batch_size, self.seed, self.drop_last, rank, world_size)
        if self._resume_at is not None:
            sampler.resume_at(*self._resume_at)
            self._resume_at = None
        return self._loader(arrays, sampler)

    def resume_training_at(self, epoch: int, batches: int) -> None:
        """The next training loader leaves out the first ``batches`` batches of epoch ``epoch``:
        a resumed run trained them before it stopped. Each epoch's order depends only on the seed
        and the epoch, so the position is all a resumed run needs to draw the rest of it."""
        self._resume_at = (int(epoch), int(batches))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # ------------------------------------------------------------------ what models and results read

    @property
    def schema(self) -> Schema:
        return self._open_cache().schema

    @property
    def manifest(self) -> dict:
        return self._open_cache().manifest

    @property
    def cache_path(self) -> Path:
        return self._open_cache().path

    def split_arrays(self, split: str) -> SplitArrays:
        """The memory-mapped encoded arrays of ``split`` (rows in evaluation order)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not self._arrays:
            self.setup()
        return self._arrays[split]

    def num_rows(self, split: str) -> int:
        return self.split_arrays(split).num_rows

    def labels(self, split: str) -> np.ndarray:
        """float32 ``[N]`` labels of ``split`` in evaluation order (NaN for an unlabelled file)."""
        return np.array(self.split_arrays(split).y)

    def true_probabilities(self, split: str) -> Optional[np.ndarray]:
        """float32 ``[N]`` true p(y=1|x) of ``split`` in evaluation order (synthetic data), else None."""
        p_true = self.split_arrays(split).p_true
        return None if p_true is None else np.array(p_true)

    def ceiling_probabilities(self, split: str) -> dict[str, np.ndarray]:
        """float32 ``[N]`` per ceiling of the source (``Source.ceiling_names``): the true probability
        restricted to what a model family can represent (synthetic data); empty elsewhere."""
        p_ceiling = self.split_arrays(split).p_ceiling
        if p_ceiling is None:
            return {}
        return {name: np.array(p_ceiling[:, j]) for j, name in enumerate(self.source.ceiling_names)}

    def replica(self) -> tuple[int, int]:
        """``(rank, world_size)`` of this process among data-parallel replicas, read when a loader
        is built: the trainer's, else ``torch.distributed``'s once initialised, else ``(0, 1)``."""
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    # ------------------------------------------------------------------ internals

    def _open_cache(self) -> Cache:
        if self._cache is None:
            self._cache = open_or_build(
                self.source,
                self.split_config,
                self.encoding_config,
                self.name,
                self.cache_dir,
                self.on_bad_line,
                self.block_bytes,
                self.progress,
            )
        return self._cache

    def _eval_loader(self, split: str) -> DataLoader:
        arrays = self.split_arrays(split)
        return self._loader(arrays, ContiguousBatches(arrays.num_rows, self.eval_batch_size, *self.replica()))

    def _loader(self, arrays: SplitArrays, sampler: Sampler) -> DataLoader | Prefetched:
        return batch_loader(arrays, sampler, self.num_workers, self.pin_memory, self.prefetch)
