"""AutoInt's interacting layer (Song et al. 2019): multi-head self-attention over the fields; and
DESTINE's disentangled self-attention (Xu et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
    drops attention weights ``a_mk``. The maps start as torch's ``nn.Linear`` does; ``bias`` gives
    ``W_q``, ``W_k`` and ``W_v`` biases (DESTINE's).
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
        bias: bool = False,
    ):
        super().__init__()
        if heads < 1 or output_dim % heads:
            raise ValueError(f"attention width {output_dim} must split into {heads} equal heads")
        self.heads, self.head_dim, self.scale = heads, output_dim // heads, scale
        self.query = nn.Linear(input_dim, output_dim, bias=bias)
        self.key = nn.Linear(input_dim, output_dim, bias=bias)
        self.value = nn.Linear(input_dim, output_dim, bias=bias)
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


RESIDUAL_MODES = ("each_layer", "last_layer", None)


class DisentangledSelfAttention(MultiHeadSelfAttention):
    """``[B, F, input_dim] -> [B, F, output_dim]``: DESTINE's disentangled self-attention, per head
    ``h`` (``d = output_dim / heads`` dimensions each) and field ``m``:
    ``a_mk = softmax_k(<q_m - mean_j q_j, k_k - mean_j k_j>) + softmax_k(u_k)``, the whitened
    pairwise term (queries and keys centred by their means over the fields; divided by ``sqrt(d)``
    inside its softmax with ``scale``) plus the unary term (``u_k = w_u^h . e_k``, the key field's
    own score), and ``o_m^h = sum_k a_mk v_k``; the heads are concatenated and, with
    ``residual``, ``W_res e_m + b_res`` is added (no activation after). ``q, k, v = W e + b`` as in
    ``MultiHeadSelfAttention`` (here with biases: ``q`` and ``k``'s only with ``relu_before``, which
    ReLUs all three first; without it the centring cancels them).

    Our choices, the authors' code's (which FuxiCTR follows, BARS's runs): each term has its own
    softmax, so a row of ``a`` sums to 2; ``W_res`` is learned in every layer; ``dropout`` drops
    ``a_mk``. Heads are split as in ``MultiHeadSelfAttention`` (FuxiCTR's reshape mixes fields into
    heads when ``heads > 1``; BARS ran one head).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        heads: int,
        *,
        residual: bool,
        scale: bool,
        relu_before: bool,
        dropout: float,
    ):
        # centring over the fields cancels a bias of W_q or W_k exactly (it would never train) unless
        # a ReLU comes first, and the softmax over keys cancels a bias of the unary score; FuxiCTR keeps
        # them, 2 * output_dim + heads parameters per layer more. Their gradients are rounding noise,
        # which Adam scales to full steps and whose sums differ with the thread count
        super().__init__(input_dim, output_dim, heads, residual=False, scale=scale, dropout=dropout, bias=relu_before)
        self.value = nn.Linear(input_dim, output_dim)
        self.relu_before = relu_before
        self.unary = nn.Linear(input_dim, heads, bias=False)
        self.residual = residual
        self.project = nn.Linear(input_dim, output_dim) if residual else None

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        projected = (f(embedded) for f in (self.query, self.key, self.value))
        query, key, value = (self.split(x.relu() if self.relu_before else x) for x in projected)  # [B, H, F, d]
        query, key = (x - x.mean(dim=2, keepdim=True) for x in (query, key))
        pairwise = query @ key.transpose(2, 3)  # [B, H, F, F]
        if self.scale:
            pairwise = pairwise / self.head_dim**0.5
        unary = torch.softmax(self.unary(embedded).transpose(1, 2), dim=2).unsqueeze(2)  # [B, H, 1, F]
        weights = torch.softmax(pairwise, dim=3) + unary
        if self.dropout is not None:
            weights = self.dropout(weights)
        out = (weights @ value).transpose(1, 2).flatten(2)  # [B, F, H * d]
        return out if self.project is None else out + self.project(embedded)


class DisentangledAttention(nn.Module):
    """``[B, F, input_dim] -> [B, F, dim]``: stacked ``DisentangledSelfAttention`` layers, and with
    ``last_residual`` a learned ``W_res e + b_res`` of the stack's input added to its output."""

    def __init__(self, layers: list[DisentangledSelfAttention], input_dim: int, last_residual: bool):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        dim = layers[-1].query.out_features
        self.project = nn.Linear(input_dim, dim) if last_residual else None

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        out = self.layers(embedded)
        return out if self.project is None else out + self.project(embedded)


@dataclass(frozen=True)
class DisentangledAttentionSpec(Spec):
    """DESTINE's stack as ``conf/model/destine.yaml`` gives it: ``layers`` disentangled layers, each
    ``dim`` wide (all ``heads`` together), ``residual`` ``each_layer`` (a learned residual in every
    layer), ``last_layer`` (one around the whole stack) or None, with ``scale``, ``relu_before``
    and ``dropout`` (see ``DisentangledSelfAttention``)."""

    layers: int
    dim: int
    heads: int
    residual: Optional[str]
    scale: bool
    relu_before: bool
    dropout: float

    def build(self, input_dim: int) -> DisentangledAttention:
        """``[B, F, input_dim] -> [B, F, dim]``."""
        if self.layers < 1:
            raise ValueError(f"DESTINE needs at least one attention layer, got {self.layers}")
        if self.residual not in RESIDUAL_MODES:
            raise ValueError(f"residual {self.residual!r}: expected one of {RESIDUAL_MODES}")
        settings = dict(scale=self.scale, relu_before=self.relu_before, dropout=self.dropout)
        layers = [
            DisentangledSelfAttention(
                input_dim if index == 0 else self.dim,
                self.dim,
                self.heads,
                residual=self.residual == "each_layer",
                **settings,
            )
            for index in range(self.layers)
        ]
        return DisentangledAttention(layers, input_dim, last_residual=self.residual == "last_layer")
