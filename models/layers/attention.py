"""AutoInt's interacting layer (Song et al. 2019): multi-head self-attention over the fields."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.layers.mlp import Dropout, LayerNorm
from models.spec import Spec


class MultiHeadSelfAttention(nn.Module):
    """``[B, F, input_dim] -> [B, F, output_dim]``: every field attends to every field, in ``heads``
    subspaces of ``d = output_dim / heads`` dimensions.

    For head ``h`` and field ``m``: ``a_mk = softmax_k(<W_q^h e_m, W_k^h e_k>)`` (divided by
    ``sqrt(d)`` inside the softmax with ``scale``), ``o_m^h = sum_k a_mk W_v^h e_k``; the heads are
    concatenated, ``o_m = [o_m^1; ..; o_m^H]``, and the output is ``ReLU(o_m + W_res e_m)`` with
    ``residual`` (else ``ReLU(o_m)``). The maps have no biases.

    Our choices, FuxiCTR's where the paper leaves them (BARS's runs): ``W_res`` is the identity
    where the layer keeps its width (the paper learns it in every layer); ``layer_norm`` normalises
    ``o_m + W_res e_m`` over its ``output_dim`` values before the ReLU (not in the paper); ``dropout``
    drops attention weights ``a_mk``. The maps start as torch's ``nn.Linear`` does.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        heads: int,
        *,
        residual: bool = True,
        scale: bool = False,
        layer_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if heads < 1 or output_dim % heads:
            raise ValueError(f"attention width {output_dim} must split into {heads} equal heads")
        self.heads, self.head_dim, self.scale = heads, output_dim // heads, scale
        self.query = nn.Linear(input_dim, output_dim, bias=False)
        self.key = nn.Linear(input_dim, output_dim, bias=False)
        self.value = nn.Linear(input_dim, output_dim, bias=False)
        self.residual = residual
        self.project = nn.Linear(input_dim, output_dim, bias=False) if residual and input_dim != output_dim else None
        self.layer_norm = LayerNorm(output_dim) if layer_norm else None
        self.dropout = Dropout(dropout) if dropout > 0 else None

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, F, H * d] -> [B, H, F, d]``."""
        return x.unflatten(2, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        query, key, value = (self.split(f(embedded)) for f in (self.query, self.key, self.value))
        scores = query @ key.transpose(2, 3)  # [B, H, F, F]
        if self.scale:
            scores = scores / self.head_dim**0.5
        weights = torch.softmax(scores, dim=3)
        if self.dropout is not None:
            weights = self.dropout(weights)
        out = (weights @ value).transpose(1, 2).flatten(2)  # [B, F, H * d]
        if self.residual:
            out = out + (embedded if self.project is None else self.project(embedded))
        if self.layer_norm is not None:
            out = self.layer_norm(out)
        return torch.relu(out)


@dataclass(frozen=True)
class AttentionSpec(Spec):
    """AutoInt's stack of interacting layers, as ``conf/model/autoint.yaml`` gives it: ``layers``
    ``MultiHeadSelfAttention`` layers, each ``dim`` wide (all ``heads`` together, FuxiCTR's
    ``attention_dim``), with its ``residual``, ``scale``, ``layer_norm`` and ``dropout``."""

    layers: int
    dim: int
    heads: int
    residual: bool
    scale: bool
    layer_norm: bool
    dropout: float

    def build(self, input_dim: int) -> nn.Sequential:
        """``[B, F, input_dim] -> [B, F, dim]``."""
        if self.layers < 1:
            raise ValueError(f"AutoInt needs at least one interacting layer, got {self.layers}")
        settings = dict(residual=self.residual, scale=self.scale, layer_norm=self.layer_norm, dropout=self.dropout)
        return nn.Sequential(
            *(
                MultiHeadSelfAttention(input_dim if index == 0 else self.dim, self.dim, self.heads, **settings)
                for index in range(self.layers)
            )
        )
