"""Multi-valued fields (genres, tags): each row's ids of a field pooled into one field vector.

A field of ``max_len`` columns of ``Batch.x_multi`` reads ``[B, L, K]`` rows and pools the ones that
are not its padding id: ``mean`` (the default; an empty list gives the zero vector), ``sum``, or
``max`` (per coordinate; zero for an empty list). ``FeatureEmbedding`` places the pooled vectors after
the single-valued sparse fields, as the schema orders them, so every model takes such fields as
fields like any other.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from datamodules.schema import Batch, Schema


def pool(rows: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """rows ``[B, L, K]``, mask bool ``[B, L]`` (the real tokens) -> ``[B, K]``."""
    weights = mask.unsqueeze(-1).to(rows.dtype)
    if how == "max":
        filled = rows.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.where(mask.any(dim=1, keepdim=True), filled, torch.zeros_like(filled))
    total = (rows * weights).sum(dim=1)
    if how == "sum":
        return total
    return total / weights.sum(dim=1).clamp(min=1)


class MultiValuedFields(nn.Module):
    """The multi-valued fields of a schema: which columns of ``x_multi`` each one owns, its padding
    id and its pooling."""

    def __init__(self, schema: Schema):
        super().__init__()
        fields = schema.multi_fields
        self.poolings = [f.pooling for f in fields]
        ends = itertools.accumulate(f.max_len for f in fields)
        self.bounds = [(end - f.max_len, end) for f, end in zip(fields, ends)]
        padding = torch.cat([torch.full((f.max_len,), f.offset + f.padding_id) for f in fields])
        self.register_buffer("padding", padding, persistent=False)
        self.width = schema.multi_width

    def ids(self, batch: Batch) -> torch.Tensor:
        """The single-valued and the multi-valued ids side by side, ``[B, S + T]``: one gather reads both."""
        if batch.x_multi is None or batch.x_multi.shape[1] != self.width:
            got = None if batch.x_multi is None else tuple(batch.x_multi.shape)
            raise ValueError(f"the schema's multi-valued fields take {self.width} columns but batch.x_multi is {got}")
        return torch.cat([batch.x, batch.x_multi], dim=1)

    def mask(self, batch: Batch) -> torch.Tensor:
        """bool ``[B, T]``: the places of ``x_multi`` that hold a token (not padding)."""
        return batch.x_multi != self.padding

    def pooled(self, rows: torch.Tensor, batch: Batch) -> torch.Tensor:
        """rows ``[B, S + T, K]`` read at ``ids(batch)`` -> ``[B, S + M, K]``: the sparse fields' rows,
        then one pooled vector per multi-valued field."""
        single = rows.shape[1] - self.width
        tokens, mask = rows[:, single:], self.mask(batch)
        vectors = [pool(tokens[:, a:b], mask[:, a:b], how) for (a, b), how in zip(self.bounds, self.poolings)]
        return torch.cat([rows[:, :single], torch.stack(vectors, dim=1)], dim=1)

    def read_weights(self, batch: Batch) -> torch.Tensor:
        """bool ``[B, S + T]``: the rows really read (every sparse field's, the tokens'), not padding."""
        return torch.cat([torch.ones_like(batch.x, dtype=torch.bool), self.mask(batch)], dim=1)
