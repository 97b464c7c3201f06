"""MaskNet's instance-guided masks and MaskBlocks (Wang et al. 2021)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.layers.mlp import ACTIVATIONS, Dropout, LayerNorm


class MaskBlock(nn.Module):
    """``([B, E] embeddings, [B, D_in] input) -> [B, D_out]``:
    ``dropout(act(LN(W (mask(e) * x))))`` with the instance-guided mask
    ``mask(e) = W_2 relu(W_1 e + b_1) + b_2``, ``W_1`` of ``E -> int(D_in * reduction_ratio)``
    and ``W_2`` back to ``D_in``.

    ``e`` is the example's concatenated field embeddings, whatever block this is, so every mask is
    guided by the instance. ``W`` has no bias (the normalisation's shift takes its place; FuxiCTR
    leaves it out also when ``layer_norm`` is off).
    """

    def __init__(
        self,
        embedding_dim: int,
        input_dim: int,
        output_dim: int,
        *,
        reduction_ratio: float,
        layer_norm: bool,
        activation: str,
        dropout: float,
    ):
        super().__init__()
        aggregation = int(input_dim * reduction_ratio)
        if aggregation < 1:
            raise ValueError(f"reduction_ratio {reduction_ratio} leaves no unit in a mask of {input_dim}")
        self.mask = nn.Sequential(nn.Linear(embedding_dim, aggregation), nn.ReLU(), nn.Linear(aggregation, input_dim))
        layers: list[nn.Module] = [nn.Linear(input_dim, output_dim, bias=False)]
        if layer_norm:
            layers.append(LayerNorm(output_dim))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
        self.hidden = nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.mask(embeddings) * inputs)


class MaskBlocks(nn.Module):
    """``([B, E] embeddings, [B, E] their normalised copy) -> [B, output_dim]``: MaskNet's MaskBlocks,
    each of ``units`` the width of one block.

    ``form="serial"`` (SerMaskNet): the blocks in a chain, the first masking the normalised
    embeddings and each next one the previous block's output; ``output_dim = units[-1]``.
    ``form="parallel"`` (ParaMaskNet): every block masks the normalised embeddings, and their outputs
    are concatenated; ``output_dim = sum(units)``. ``block`` holds the other ``MaskBlock`` settings.
    """

    FORMS = ("serial", "parallel")

    def __init__(self, embedding_dim: int, units: Sequence[int], form: str, **block):
        super().__init__()
        if form not in self.FORMS:
            raise ValueError(f"MaskNet form {form!r}: expected one of {self.FORMS}")
        units = [int(u) for u in units]
        if not units:
            raise ValueError("MaskNet needs at least one MaskBlock")
        inputs = [embedding_dim, *units[:-1]] if form == "serial" else [embedding_dim] * len(units)
        self.serial = form == "serial"
        self.blocks = nn.ModuleList(MaskBlock(embedding_dim, i, o, **block) for i, o in zip(inputs, units))
        self.output_dim = units[-1] if self.serial else sum(units)

    def forward(self, embeddings: torch.Tensor, normalised: torch.Tensor) -> torch.Tensor:
        if not self.serial:
            return torch.cat([block(embeddings, normalised) for block in self.blocks], dim=1)
        hidden = normalised
        for block in self.blocks:
            hidden = block(embeddings, hidden)
        return hidden
