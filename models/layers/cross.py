"""DCN's cross network (Wang et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn


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

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for weight, bias in zip(self.weight, self.bias):
            # a [D, 1] matrix rather than a vector: MKL's matrix-vector gradient sums the batch in
            # an order that depends on the thread count; the matrix product's does not
            x = x0 * (x @ weight.unsqueeze(1)) + bias + x
        return x
