"""xDeepFM's compressed interaction network (Lian et al. 2018)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.layers.precision import LowPrecisionCompute


class CIN(LowPrecisionCompute, nn.Module):
    """``[B, F, K] -> [B, output_dim]``: explicit vector-wise interactions of bounded degree.

    Layer ``k`` (``H_0 = F``, ``X^0`` the embeddings):
    ``X^k[h, :] = sum_{i<H_{k-1}, j<F} W^k[h, i, j] * (X^{k-1}[i, :] * X^0[j, :])``, no
    activation, and no bias unless ``bias`` (the paper's formula has none; FuxiCTR's 1x1
    convolutions add one per map). Each layer's maps are sum-pooled over the embedding dimension
    and concatenated. With ``split_half`` (the xDeepFM authors' released
    code; the paper's text feeds every map forward), every layer but the last sends half its
    maps to the output and the other half to the next layer, so inner layer sizes must be even.
    """

    def __init__(self, num_fields: int, layer_sizes: Sequence[int], *, split_half: bool = True, bias: bool = False):
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        if not sizes:
            raise ValueError("CIN needs at least one layer")
        if split_half and any(s % 2 for s in sizes[:-1]):
            raise ValueError(f"CIN with split_half needs even sizes for all but the last layer, got {sizes}")
        self.split_half = split_half
        self.filters = nn.ModuleList()
        self.forward_sizes: list[int] = []  # maps each layer feeds to the next
        maps_in, output_dim = num_fields, 0
        for index, size in enumerate(sizes):
            self.filters.append(nn.Linear(maps_in * num_fields, size, bias=bias))
            last = index == len(sizes) - 1
            forward_maps = size // 2 if split_half and not last else size
            output_dim += size - forward_maps if split_half and not last else size
            self.forward_sizes.append(forward_maps)
            maps_in = forward_maps
        self.output_dim = output_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        # work in [B, K, maps] so each layer's products come out contiguous in the layout its
        # matmul reads (~25% faster on CPU than products in [B, maps, K] plus transposes)
        x0 = x0.transpose(1, 2)
        if self.compute_dtype is not None:
            x0 = x0.to(self.compute_dtype)  # the products too, not only the filters' matmuls
        hidden, pooled = x0, []
        pool_dtype = None if self.compute_dtype is None else torch.float32
        for index, (conv, forward_maps) in enumerate(zip(self.filters, self.forward_sizes)):
            products = (hidden.unsqueeze(3) * x0.unsqueeze(2)).flatten(2)  # [B, K, H*F]
            with self.low_precision(products):
                maps = conv(products)  # [B, K, H_k]
            if self.split_half and index < len(self.filters) - 1:
                hidden, direct = maps.split([forward_maps, maps.shape[2] - forward_maps], dim=2)
            else:
                hidden = direct = maps
            pooled.append(direct.sum(dim=1, dtype=pool_dtype))
        return torch.cat(pooled, dim=1)
