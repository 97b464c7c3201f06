"""Id-indexed tables: the feature embedding, the first-order weights and Wide&Deep's cross products.

Every table here is one ``nn.Embedding`` over a global id space, so a batch costs one gather
``[B, F] -> [B, F, K]`` whatever the number of fields. Tables derive from ``IdTable``, which is how
``CTRModule`` tells embedding parameters (``embedding_l2``, on the rows a batch uses) from network
weights (``weight_l2``). With ``sparse=True`` a table's gradient holds only the rows the batch read,
each once and in order (see ``RowSparseEmbedding``), for the row-sparse optimisers of ``models.optim``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from datamodules.schema import Batch, Schema
from models.layers.multi import MultiValuedFields

# A table of at most this many rows per id read finds a batch's distinct ids by marking them in a
# flag per row, O(rows + ids), instead of sorting the ids, O(ids log ids). Wide&Deep's 325 crosses
# read 1.3M ids per batch of 4096 from 3.25M rows (2.4 rows per id), where the sort was a fifth of
# the step and marking makes the step ~10% faster; DeepFM's 160k ids from 1M rows (6.3) ran ~8%
# slower marked (zeroing and scanning the flags costs more than the sort saves).
MARK_ROWS_PER_ID = 3


def distinct_ids(ids: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distinct ids sorted [U], position of each id among them [N])`` of ``ids`` (any shape,
    values in ``[0, num_rows)``): ``torch.unique(sorted=True, return_inverse=True)``'s result."""
    flat = ids.reshape(-1)
    if not flat.numel() or num_rows > MARK_ROWS_PER_ID * flat.numel():
        return torch.unique(flat, sorted=True, return_inverse=True)
    read = torch.zeros(num_rows, dtype=torch.int32, device=flat.device).index_fill_(0, flat, 1)
    ranks = read.cumsum(0, dtype=torch.int32)  # the last is the number of distinct ids
    position = ranks.index_select(0, flat).long() - 1
    rows = flat.new_empty(int(ranks[-1])).index_copy_(0, position, flat)
    return rows, position


class _LastDistinctIds:
    """``distinct_ids`` remembered for the last id tensor seen: tables that read the same ids
    (DeepFM's first-order weights and embeddings both read ``batch.x``) find them once per backward
    pass. Keyed on the tensor object itself (held, so its memory cannot be reused), its version
    counter (in-place edits) and the table size."""

    def __init__(self):
        self.key: tuple | None = None
        self.ids: torch.Tensor | None = None
        self.result: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, ids: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (ids._version, num_rows)
        if ids is not self.ids or key != self.key:
            self.result = distinct_ids(ids, num_rows)
            self.ids, self.key = ids, key
        return self.result


_distinct_ids = _LastDistinctIds()


class _IndexAddGradient(torch.autograd.Function):
    """``F.embedding`` whose dense weight gradient is one ``index_add_`` of the lookups' gradients.

    The same sum in the same order as torch's dense embedding backward (the same bits, at any
    thread count), which on CPU adds one row per lookup through a BLAS call: for DeepFM's batch of
    4096 x 39 lookups it took ~20 ms for the 10-wide table and ~15 ms for the first-order weights,
    against ~7 ms and ~1 ms here, single-threaded."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.weight_shape = weight.shape
        return F.embedding(ids, weight)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (ids,) = ctx.saved_tensors
        num_rows, dim = ctx.weight_shape
        grad = grad_output.new_zeros(num_rows, dim).index_add_(0, ids.reshape(-1), grad_output.reshape(-1, dim))
        return grad, None


class _CoalescedRowGradient(_IndexAddGradient):
    """``F.embedding`` whose weight gradient is a coalesced sparse tensor over the distinct ids."""

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (ids,) = ctx.saved_tensors
        num_rows, dim = ctx.weight_shape
        rows, position = _distinct_ids(ids, num_rows)
        values = grad_output.new_zeros(rows.numel(), dim).index_add_(0, position, grad_output.reshape(-1, dim))
        grad = torch.sparse_coo_tensor(
            rows.unsqueeze(0), values, (num_rows, dim), is_coalesced=True, check_invariants=False
        )
        return grad, None


class RowSparseEmbedding(nn.Embedding):
    """``nn.Embedding`` (``[*] ids -> [*, dim]``) whose ``sparse=True`` gradient has each row once.

    torch's sparse embedding gradient has one row per lookup (B*F rows, repeats included) and
    every optimiser first coalesces it, a sort of all B*F rows of values for each table. Summing
    the repeats here, on the distinct ids (``unique`` + ``index_add``), is ~3x cheaper, and the
    result has distinct sorted rows, which ``models.optim.distinct_rows`` uses as they are.
    Dense (``sparse=False``) gradients are torch's, summed faster on CPU (``_IndexAddGradient``).
    """

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        plain = (
            self.padding_idx is not None
            or self.max_norm is not None
            or self.scale_grad_by_freq
            or not (torch.is_grad_enabled() and self.weight.requires_grad)
        )
        if plain or not (self.sparse or self.weight.device.type == "cpu"):  # CUDA's index_add_ races
            return super().forward(ids)
        return (_CoalescedRowGradient if self.sparse else _IndexAddGradient).apply(self.weight, ids)


class IdTable(nn.Module):
    """A table of ``num_rows`` rows of width ``dim``, read at the ids ``ids(batch)`` returns.

    ``init_std`` 0 starts every row at zero (first-order weights); otherwise rows are drawn from
    N(0, init_std^2). ``sparse`` makes the table's gradient a sparse tensor (rows of the batch only).
    """

    def __init__(self, num_rows: int, dim: int, *, init_std: float, sparse: bool):
        super().__init__()
        self.table = RowSparseEmbedding(num_rows, dim, sparse=sparse)
        _init_normal(self.table.weight, init_std)

    def ids(self, batch: Batch) -> torch.Tensor:
        """The rows this batch reads: int64 ``[B, n]``."""
        raise NotImplementedError

    def squared_norm(self, batch: Batch) -> torch.Tensor:
        """Sum over the rows the batch reads of their squared L2 norm, per example: ``[] `` scalar.

        A row read by several examples counts once per example, so frequent ids are penalised more
        (the usual CTR regulariser; it costs one gather of the batch, not a pass over the table).
        """
        return self.table(self.ids(batch)).pow(2).sum() / batch.x.shape[0]


def _init_normal(weight: torch.Tensor, std: float) -> None:
    if std > 0:
        nn.init.normal_(weight, std=std)
    else:
        nn.init.zeros_(weight)


class FeatureEmbedding(IdTable):
    """One vector per feature id, plus one per dense numeric field scaled by the field's value.

    ``[B, S]`` ids (+ ``[B, T]`` multi-valued ids, + ``[B, D]`` dense values) -> ``[B, F, K]`` with
    ``F = S + M + D``: sparse fields first, then each multi-valued field's ids pooled into one vector
    (``models.layers.multi``), then dense ones (the schema's ``num_fields`` order). A dense field ``d`` with value
    ``x_d`` contributes ``x_d * v_d``. With ``dim=1`` and ``init_std=0`` this is the first-order
    weight table of LR; with ``dim = F * K`` it is FFM's field-aware table.
    """

    def __init__(self, schema: Schema, dim: int, *, init_std: float, sparse: bool = False):
        super().__init__(schema.num_ids, dim, init_std=init_std, sparse=sparse)
        self.num_dense = schema.num_dense
        self.dim = dim
        self.multi = MultiValuedFields(schema) if schema.multi_fields else None
        if self.num_dense:
            self.dense = nn.Parameter(torch.empty(self.num_dense, dim))
            _init_normal(self.dense, init_std)
        else:
            self.register_parameter("dense", None)

    def ids(self, batch: Batch) -> torch.Tensor:
        return batch.x if self.multi is None else self.multi.ids(batch)

    def forward(self, batch: Batch) -> torch.Tensor:
        """``Batch`` -> ``[B, F, dim]``."""
        embedded = self.table(self.ids(batch))
        if self.multi is not None:
            embedded = self.multi.pooled(embedded, batch)
        if self.dense is None:
            return embedded
        if batch.x_dense is None or batch.x_dense.shape[1] != self.num_dense:
            got = None if batch.x_dense is None else tuple(batch.x_dense.shape)
            raise ValueError(f"the schema has {self.num_dense} dense fields but batch.x_dense is {got}")
        scaled = batch.x_dense.unsqueeze(-1).to(self.dense.dtype) * self.dense  # [B, D, dim]
        return torch.cat([embedded, scaled], dim=1)

    def squared_norm(self, batch: Batch) -> torch.Tensor:
        """As ``IdTable.squared_norm``; every example reads every dense field's vector; the padding of
        a multi-valued field's short lists is not read, so not counted."""
        if self.multi is None:
            norm = super().squared_norm(batch)
        else:
            rows = self.table(self.ids(batch)).pow(2).sum(-1)
            norm = (rows * self.multi.read_weights(batch).to(rows.dtype)).sum() / batch.x.shape[0]
        return norm if self.dense is None else norm + self.dense.pow(2).sum()


class LinearLogit(nn.Module):
    """The first-order part: ``w0 + sum_i w[x_i] + sum_d w_d * x_d``. ``Batch`` -> ``[B]``.

    Weights start at zero, as LR's usually do (and as FTRL expects). ``bias`` False leaves ``w0``
    out, for models whose other part already has one.
    """

    def __init__(self, schema: Schema, *, sparse: bool = False, bias: bool = True):
        super().__init__()
        self.weights = FeatureEmbedding(schema, 1, init_std=0.0, sparse=sparse)
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    def forward(self, batch: Batch) -> torch.Tensor:
        logit = self.weights(batch).sum(dim=(1, 2))
        return logit if self.bias is None else logit + self.bias


class CrossProductLogit(IdTable):
    """Wide&Deep's cross-product features: one learned weight per value pair of each field pair.
    Pairs are of single-valued sparse fields (a multi-valued field has no one value to cross).

    ``Batch`` -> ``[B]`` = sum over the configured pairs ``(a, b)`` of ``w[cross_id(x_a, x_b)]``.
    The cross id of a pair is the exact product index ``local_a * vocab_b + local_b`` (``local`` =
    id within the field) when the pair has at most ``num_buckets`` combinations, so small pairs
    never collide; larger pairs fold that index modulo ``num_buckets``. Each pair owns its own
    ``min(vocab_a * vocab_b, num_buckets)`` rows of one shared table.
    """

    def __init__(
        self, schema: Schema, field_pairs: Sequence[tuple[str, str]], num_buckets: int, *, sparse: bool = False
    ):
        if not field_pairs:
            raise ValueError("CrossProductLogit needs at least one field pair")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        column = {f.name: i for i, f in enumerate(schema.sparse_fields)}
        for pair in field_pairs:
            unknown = [name for name in pair if name not in column]
            if len(pair) != 2 or unknown:
                raise ValueError(
                    f"cross pair {tuple(pair)}: a pair names two sparse fields of the "
                    f"schema; not sparse fields: {unknown}; sparse fields: {list(column)}"
                )
        fields = schema.sparse_fields
        first = torch.tensor([column[a] for a, _ in field_pairs])
        second = torch.tensor([column[b] for _, b in field_pairs])
        vocab_second = torch.tensor([fields[i].vocab_size for i in second.tolist()])
        combinations = torch.tensor([fields[i].vocab_size for i in first.tolist()]) * vocab_second
        rows = combinations.clamp(max=num_buckets)
        super().__init__(int(rows.sum()), 1, init_std=0.0, sparse=sparse)
        self.register_buffer("offset", torch.tensor([f.offset for f in fields]), persistent=False)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)
        self.register_buffer("vocab_second", vocab_second, persistent=False)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("row_offset", torch.cumsum(rows, 0) - rows, persistent=False)

    def ids(self, batch: Batch) -> torch.Tensor:
        """``[B, P]`` rows of the cross table, one per configured pair."""
        local = batch.x - self.offset  # [B, S] before the [B, P] columns: 26 fields make 325 pairs
        product_index = local.index_select(1, self.first) * self.vocab_second
        product_index.add_(local.index_select(1, self.second))
        return product_index.remainder_(self.rows).add_(self.row_offset)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.table(self.ids(batch)).sum(dim=(1, 2))


def all_sparse_pairs(schema: Schema) -> list[tuple[str, str]]:
    """Every unordered pair of sparse fields, in schema order."""
    names = [f.name for f in schema.sparse_fields]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
