"""EDCN's layers (Chen et al. 2021): the bridge and regulation modules that let a cross network and a
deep network share information layer by layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.layers.cross import CrossNetwork
from models.layers.mlp import MLP, BatchNorm
from models.spec import Spec

BRIDGE_TYPES = ("pointwise_addition", "hadamard_product", "concatenation", "attention_pooling")


class Bridge(nn.Module):
    """``[B, D], [B, D] -> [B, D]``: the bridge ``f(x, h)`` between a cross layer's output ``x`` and
    a deep layer's ``h``, one of

    - ``pointwise_addition``: ``x + h``;
    - ``hadamard_product``: ``x * h``;
    - ``concatenation``: ``ReLU(W [x; h] + b)`` with ``W`` of ``D x 2D``;
    - ``attention_pooling``: ``a_x * x + a_h * h`` with ``a_v = softmax(W2_v ReLU(W1_v v + b1_v))``
      over the ``D`` values, each input its own ``W1_v`` (biased) and ``W2_v`` (unbiased), as in the
      paper (FuxiCTR builds both but scores ``h`` with ``x``'s).
    """

    def __init__(self, dim: int, bridge_type: str):
        super().__init__()
        if bridge_type not in BRIDGE_TYPES:
            raise ValueError(f"bridge type {bridge_type!r}: expected one of {BRIDGE_TYPES}")
        self.bridge_type = bridge_type
        if bridge_type == "concatenation":
            self.concat = nn.Linear(2 * dim, dim)
        if bridge_type == "attention_pooling":
            self.attention = nn.ModuleList(
                nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Softmax(dim=-1))
                for _ in range(2)
            )

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.bridge_type == "pointwise_addition":
            return x + h
        if self.bridge_type == "hadamard_product":
            return x * h
        if self.bridge_type == "concatenation":
            return torch.relu(self.concat(torch.cat([x, h], dim=-1)))
        return self.attention[0](x) * x + self.attention[1](h) * h


class Regulation(nn.Module):
    """``[B, F * K] -> ([B, F * K], [B, F * K])``: the regulation module, one field-wise gate per
    tower, ``x_c = g_c * x`` and ``x_d = g_d * x`` with ``g_t = softmax_i(w_t[i] / tau)`` over the
    ``F`` fields, each field's weight scaling its ``K`` values; ``w_t`` starts at one (every field
    ``1 / F``). ``tau`` (the temperature) above 1 flattens the gates.

    ``gated`` off (FuxiCTR's ``use_regulation_module``) passes ``x`` to both towers unchanged;
    ``batch_norm`` (FuxiCTR's, not in the paper) normalises each tower's input over the batch.
    """

    def __init__(self, num_fields: int, embedding_dim: int, temperature: float, *, gated: bool, batch_norm: bool):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"the regulation temperature must be positive, got {temperature}")
        self.embedding_dim, self.temperature = embedding_dim, temperature
        self.weight = nn.Parameter(torch.ones(2, num_fields)) if gated else None
        dim = num_fields * embedding_dim
        self.norms = nn.ModuleList(BatchNorm(dim) for _ in range(2)) if batch_norm else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weight is None:
            towers = [x, x]
        else:
            gates = torch.softmax(self.weight / self.temperature, dim=1).repeat_interleave(self.embedding_dim, dim=1)
            towers = [gates[0] * x, gates[1] * x]
        if self.norms is not None:
            towers = [norm(tower) for norm, tower in zip(self.norms, towers)]
        return towers[0], towers[1]


class EDCNTowers(nn.Module):
    """``[B, F * K] -> [B, 3 F K]``: EDCN's parallel towers over ``D = F * K`` values. With
    ``(x_0, h_0) = R_1(e)`` and for ``l = 1..L``:
    ``x_l = x_0 (x'_{l-1} . w_l) + b_l + x'_{l-1}`` (DCN's cross layer), ``h_l = DNN_l(h'_{l-1})``,
    ``f_l = Bridge_l(x_l, h_l)`` and ``(x'_l, h'_l) = R_{l+1}(f_l)`` (``x'_0, h'_0 = x_0, h_0``);
    the output is ``[x_L; h_L; f_L]``.

    Each ``DNN_l`` is one ``D``-wide layer, Linear -> activation -> dropout; ``R_l`` is a
    ``Regulation``. The cross layers' ``x_0`` is the regulated embedding (the cross tower's share).
    """

    def __init__(self, num_fields: int, embedding_dim: int, spec: "EDCNSpec"):
        super().__init__()
        if spec.layers < 1:
            raise ValueError(f"EDCN needs at least one layer, got {spec.layers}")
        dim = num_fields * embedding_dim
        self.output_dim = 3 * dim
        self.cross = CrossNetwork(dim, spec.layers)
        self.deep = nn.ModuleList(
            MLP(dim, [dim], activation=spec.activation, dropout=spec.dropout, output_dim=None)
            for _ in range(spec.layers)
        )
        self.bridges = nn.ModuleList(Bridge(dim, spec.bridge) for _ in range(spec.layers))
        self.regulations = nn.ModuleList(
            Regulation(num_fields, embedding_dim, spec.temperature, gated=spec.regulation, batch_norm=spec.batch_norm)
            for _ in range(spec.layers)
        )

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        cross, deep = self.regulations[0](embedded)
        cross0 = cross
        for index, (layer, bridge) in enumerate(zip(self.deep, self.bridges)):
            cross = self.cross.layer(index, cross0, cross)
            deep = layer(deep)
            shared = bridge(cross, deep)
            if index + 1 < len(self.bridges):
                cross, deep = self.regulations[index + 1](shared)
        return torch.cat([cross, deep, shared], dim=1)


@dataclass(frozen=True)
class EDCNSpec(Spec):
    """EDCN's towers as ``conf/model/edcn.yaml`` gives them: ``layers`` cross and deep layers (each
    tower's depth), the ``bridge`` type (see ``Bridge``), the regulation gates (``regulation``
    off: none) at ``temperature`` with ``batch_norm`` after them, and the deep layers'
    ``activation`` and ``dropout``."""

    layers: int
    bridge: str
    regulation: bool
    temperature: float
    batch_norm: bool
    activation: str
    dropout: float

    def build(self, num_fields: int, embedding_dim: int) -> EDCNTowers:
        return EDCNTowers(num_fields, embedding_dim, self)
