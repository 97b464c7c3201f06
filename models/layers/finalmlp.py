"""FinalMLP's layers (Mao et al. 2023): context embeddings, the feature-selection gates and the
multi-head bilinear fusion of two streams."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.layers.embedding import IdTable
from models.layers.mlp import MLP
from models.spec import Spec


class ContextEmbedding(IdTable):
    """``Batch -> [B, C, K]``: embeddings of ``C`` chosen sparse fields from a table of their own
    (the fields' rows only, not shared with the model's feature embedding), in schema order."""

    def __init__(self, schema: Schema, fields: Sequence[str], dim: int, *, init_std: float, sparse: bool = False):
        sparse_fields = schema.sparse_fields
        column = {f.name: i for i, f in enumerate(sparse_fields)}
        unknown = [name for name in fields if name not in column]
        if unknown or not fields or len(set(fields)) != len(fields):
            raise ValueError(
                f"context fields {list(fields)}: expected distinct sparse fields of the schema, at least one; "
                f"not sparse fields: {unknown}; sparse fields: {list(column)}"
            )
        columns = sorted(column[name] for name in fields)
        sizes = [sparse_fields[i].vocab_size for i in columns]
        super().__init__(sum(sizes), dim, init_std=init_std, sparse=sparse)
        starts = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        offsets = torch.tensor([sparse_fields[i].offset for i in columns])
        self.register_buffer("columns", torch.tensor(columns), persistent=False)
        self.register_buffer("shift", starts - offsets, persistent=False)  # global id -> row of this table

    def ids(self, batch: Batch) -> torch.Tensor:
        return batch.x.index_select(1, self.columns) + self.shift

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.table(self.ids(batch))


@dataclass(frozen=True)
class FeatureSelectionSpec(Spec):
    """FinalMLP's stream-specific feature selection, as ``conf/model/finalmlp.yaml`` gives it:
    ``enabled`` (off: both streams read the embeddings as they are), the context fields of each
    stream's gate (none: a learned vector) and the gates' hidden layers (relu)."""

    enabled: bool
    stream1_context: tuple[str, ...]
    stream2_context: tuple[str, ...]
    hidden_units: tuple[int, ...]

    def __post_init__(self):
        for name in ("stream1_context", "stream2_context"):
            object.__setattr__(self, name, tuple(str(field) for field in getattr(self, name)))
        object.__setattr__(self, "hidden_units", tuple(int(units) for units in self.hidden_units))


class FeatureGate(nn.Module):
    """``(Batch, [B, D]) -> [B, D]``: ``x * 2 sigmoid(MLP(c))``, the gate of one FinalMLP stream.

    ``c`` is the flattened embeddings of the context fields (``ContextEmbedding``, its own table),
    or, with no context fields, a learned ``K``-vector shared by every example (starting at zero, as
    FuxiCTR's does), so the gate is one weight per input unit. The MLP has ``hidden_units`` relu
    layers, no batch norm, no dropout, and a ``D``-wide output layer; ``2 sigmoid`` puts the weights
    in (0, 2), 1 at a zero pre-activation.
    """

    def __init__(
        self,
        schema: Schema,
        context: Sequence[str],
        hidden_units: Sequence[int],
        output_dim: int,
        dim: int,
        *,
        init_std: float,
        sparse: bool = False,
    ):
        super().__init__()
        if context:
            self.context = ContextEmbedding(schema, context, dim, init_std=init_std, sparse=sparse)
            self.register_parameter("vector", None)
        else:
            self.context = None
            self.vector = nn.Parameter(torch.zeros(1, dim))
        self.mlp = MLP(dim * max(1, len(context)), hidden_units, output_dim=output_dim)

    def forward(self, batch: Batch, inputs: torch.Tensor) -> torch.Tensor:
        context = self.vector if self.context is None else self.context(batch).flatten(1)  # [B or 1, C*K]
        return inputs * (2 * torch.sigmoid(self.mlp(context)))


class BilinearFusion(nn.Module):
    """``([B, D1], [B, D2]) -> [B]``: ``w1^T o1 + b1 + w2^T o2 + b2 + sum_h o1_h^T W_h o2_h``.

    ``o1`` and ``o2`` are split into ``num_heads`` equal consecutive chunks ``o1_h`` (``D1 / H``
    wide) and ``o2_h``; head ``h`` has its own ``W_h`` (``D1/H x D2/H``). The paper's per-head
    first-order terms summed over heads are one linear map of each whole output, as here; its
    per-head biases sum to one constant, which FuxiCTR (and so this layer) keeps as the two maps'
    biases. ``W`` starts Glorot-normal as one ``(H D1/H D2/H) x 1`` matrix, FuxiCTR's draw.
    """

    def __init__(self, dim1: int, dim2: int, num_heads: int):
        super().__init__()
        if num_heads < 1 or dim1 % num_heads or dim2 % num_heads:
            raise ValueError(f"{num_heads} heads must divide both stream widths, got {dim1} and {dim2}")
        self.num_heads = num_heads
        self.linear1 = nn.Linear(dim1, 1)
        self.linear2 = nn.Linear(dim2, 1)
        head1, head2 = dim1 // num_heads, dim2 // num_heads
        std = math.sqrt(2.0 / (num_heads * head1 * head2 + 1))
        self.bilinear = nn.Parameter(torch.randn(num_heads, head1, head2) * std)

    def forward(self, o1: torch.Tensor, o2: torch.Tensor) -> torch.Tensor:
        heads = self.num_heads
        first = self.linear1(o1).squeeze(1) + self.linear2(o2).squeeze(1)
        left = torch.bmm(o1.view(o1.shape[0], heads, -1).transpose(0, 1), self.bilinear)  # [H, B, D2/H]
        return first + (left * o2.view(o2.shape[0], heads, -1).transpose(0, 1)).sum(dim=(0, 2))
