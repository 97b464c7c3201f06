"""DCN's cross network (Wang et al. 2017) and DCN-V2's (Wang et al. 2021): full-rank, or a mixture
of low-rank experts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from models.spec import Spec


class CrossNetwork(nn.Module):
    """``[B, D] -> [B, D]``: ``x_{l+1} = x_0 (x_l . w_l) + b_l + x_l`` for ``l < num_layers``.

    Each layer adds 2D parameters (``weight[l]`` and ``bias[l]``), so the degree of the
    polynomial grows by one per layer at linear cost. ``w_l`` starts Glorot-normal for a
    ``D x 1`` matrix, ``b_l`` at zero.
    """

    def __init__(self, input_dim: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a cross network needs at least one layer, got {num_layers}")
        self.weight = nn.Parameter(torch.randn(num_layers, input_dim) * (2.0 / (input_dim + 1)) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(num_layers, input_dim))

    @property
    def num_layers(self) -> int:
        return self.weight.shape[0]

    def layer(self, index: int, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Cross layer ``index`` alone: ``x0 (x . w_index) + b_index + x`` (EDCN interleaves them)."""
        # a [D, 1] matrix rather than a vector: MKL's matrix-vector gradient sums the batch in
        # an order that depends on the thread count; the matrix product's does not
        return x0 * (x @ self.weight[index].unsqueeze(1)) + self.bias[index] + x

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for index in range(self.num_layers):
            x = self.layer(index, x0, x)
        return x


class CrossNetworkV2(nn.Module):
    """``[B, D] -> [B, D]``: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` with a full ``D x D`` matrix
    ``W_l`` per layer (DCN-V2's cross layer; DCN's is the rank-1 case). Each layer is an
    ``nn.Linear(D, D)`` with torch's default initialisation."""

    def __init__(self, input_dim: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a cross network needs at least one layer, got {num_layers}")
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CrossNetworkMix(nn.Module):
    """``[B, D] -> [B, D]``: DCN-V2's mixture of low-rank cross experts, for ``l < num_layers``:
    ``x_{l+1} = sum_i G_i(x_l) E_i^l(x_l) + x_l`` with experts
    ``E_i^l(x) = x_0 * (U_i^l tanh(C_i^l tanh(V_i^l^T x)) + b_l)`` (``U, V: D x r``, ``C: r x r``)
    and gates ``G(x) = softmax_i(g_i . x)``.

    As in the paper's notation (and FuxiCTR), the gates ``g_i`` are shared by all layers and the
    bias ``b_l`` by a layer's experts; the nonlinearity is tanh. One expert has no gate (its weight
    is 1). Every map starts Glorot-normal for its own shape (as ``init.linear=xavier_normal`` would
    draw it), the biases at zero.
    """

    def __init__(self, input_dim: int, num_layers: int, low_rank: int, num_experts: int):
        super().__init__()
        if num_layers < 1 or low_rank < 1 or num_experts < 1:
            raise ValueError(f"need layers, rank and experts >= 1, got {num_layers}, {low_rank}, {num_experts}")
        shape, rank = (num_layers, num_experts, input_dim, low_rank), low_rank
        self.U = nn.Parameter(torch.randn(shape) * math.sqrt(2.0 / (input_dim + rank)))
        self.V = nn.Parameter(torch.randn(shape) * math.sqrt(2.0 / (input_dim + rank)))
        self.C = nn.Parameter(torch.randn(num_layers, num_experts, rank, rank) * math.sqrt(1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(num_layers, input_dim))
        gates = torch.randn(input_dim, num_experts) * math.sqrt(2.0 / (input_dim + 1))
        self.gates = nn.Parameter(gates) if num_experts > 1 else None

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        batch, experts, rank = x0.shape[0], self.U.shape[1], self.U.shape[3]
        for U, V, C, bias in zip(self.U, self.V, self.C, self.bias):
            low = torch.tanh(x @ V.permute(1, 0, 2).reshape(-1, experts * rank)).view(batch, experts, rank)
            low = torch.tanh(torch.einsum("ber,esr->bes", low, C))
            crossed = x0.unsqueeze(1) * (torch.einsum("bes,eds->bed", low, U) + bias)  # [B, E, D]
            if self.gates is None:
                x = crossed.squeeze(1) + x
            else:
                weights = torch.softmax(x @ self.gates, dim=1)  # [B, E]
                x = torch.bmm(weights.unsqueeze(1), crossed).squeeze(1) + x
        return x


@dataclass(frozen=True)
class CrossSpec(Spec):
    """A DCN-V2 cross network as ``conf/model/dcn_v2.yaml`` gives it: ``layers`` cross layers,
    full-rank (``low_rank`` None, ``CrossNetworkV2``) or a mixture of ``num_experts`` experts of
    rank ``low_rank`` (``CrossNetworkMix``; ``num_experts`` is unused at full rank)."""

    layers: int
    low_rank: Optional[int]
    num_experts: int

    def build(self, input_dim: int) -> nn.Module:
        if self.low_rank is None:
            return CrossNetworkV2(input_dim, self.layers)
        return CrossNetworkMix(input_dim, self.layers, self.low_rank, self.num_experts)
