"""Which rows each batch reads, and on which data-parallel rank: the samplers of ``CTRDataModule``.

Under data parallelism (DDP) the samplers shard by themselves, since Lightning's automatic
``DistributedSampler`` does not apply to batch-level samplers (``trainer=ddp`` turns it off):
training ranks take equal parts of each global batch, evaluation ranks equal contiguous blocks.

Part of the light core that ``models`` imports (``eval_block_rows``): numpy and torch only.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class ShuffledBatches(Sampler):
    """Each epoch: a permutation of ``num_rows`` seeded by ``(seed, epoch)``, cut into batches whose
    indices are sorted (memmap gathers are faster in file order). Lightning calls ``set_epoch``
    before each epoch; a plain loop gets a new epoch on each ``iter()``.

    With ``world_size`` > 1 every rank draws the same permutation and cuts it into global batches
    of ``world_size * batch_size``; rank ``rank`` takes the ``rank``-th of ``world_size`` equal,
    contiguous parts of each. The ranks' step-t batches thus union to the single-process batch t
    at batch size ``world_size * batch_size``, and every rank runs the same number of steps. The
    last partial global batch is cut into equal parts of ``rest // world_size`` rows (equal parts
    keep DDP's mean of per-rank mean gradients equal to the global batch's mean gradient); its
    ``rest % world_size`` leftover rows (fewer than ``world_size``, different ones each epoch) are
    left out, and so is the whole partial batch when it has fewer rows than ranks, or ``drop_last``.

    ``resume_at(epoch, batches)``: that epoch's iteration leaves out its first ``batches`` batches
    (a resumed run trained them before it stopped). ``len()`` stays the whole epoch's, which is
    what Lightning's count of the epoch's batches, restored from the checkpoint, runs up to.
    """

    def __init__(
        self, num_rows: int, batch_size: int, seed: int, drop_last: bool = False, rank: int = 0, world_size: int = 1
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num_rows, self.batch_size, self.seed, self.drop_last = num_rows, batch_size, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, batches: int) -> None:
        if not 0 <= batches <= len(self):
            raise ValueError(f"cannot resume epoch {epoch} after {batches} of its {len(self)} batches")
        self._resume = (epoch, batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.num_rows, self.batch_size * self.world_size)
        return full + (1 if rest >= self.world_size and not self.drop_last else 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_rows)
        skipped = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        self.epoch += 1
        global_size = self.batch_size * self.world_size
        for start in range(skipped * global_size, len(self) * global_size, global_size):
            part = min(global_size, self.num_rows - start) // self.world_size
            first = start + self.rank * part
            yield np.sort(order[first : first + part])


def eval_block_length(num_rows: int, world_size: int) -> int:
    """Rows of each rank's evaluation block: ``ceil(num_rows / world_size)``, padding included."""
    return -(-num_rows // world_size)


def eval_block_rows(num_rows: int, world_size: int) -> list[int]:
    """Real (unpadded) rows in each rank's evaluation block, rank by rank: the blocks split the
    rows in stored order, so only the last block(s) are short and padded."""
    length = eval_block_length(num_rows, world_size)
    return [min(length, max(0, num_rows - rank * length)) for rank in range(world_size)]


class ContiguousBatches(Sampler):
    """Rows in stored order, ``batch_size`` at a time (evaluation: predictions align with ``labels()``).

    With ``world_size`` > 1 rank ``rank`` reads its contiguous block of ``eval_block_length`` rows;
    a block running past the split is padded by repeating the split's last row, so that all ranks
    have equal shards for ``all_gather``. The rank-major gathered predictions are then the split in
    stored order followed by the padding, which ``eval_block_rows`` tells the model to drop.
    """

    def __init__(self, num_rows: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num_rows, self.batch_size = num_rows, batch_size
        self.rank, self.world_size = rank, world_size
        self.block_length = eval_block_length(num_rows, world_size)

    def __len__(self) -> int:
        return (self.block_length + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[slice | np.ndarray]:
        block_start = self.rank * self.block_length
        block_stop = block_start + self.block_length
        for start in range(block_start, block_stop, self.batch_size):
            stop = min(start + self.batch_size, block_stop)
            if stop <= self.num_rows:
                yield slice(start, stop)
            else:  # padding: the split's last row again
                yield np.minimum(np.arange(start, stop), self.num_rows - 1)
