"""AOANet's generalized interaction network (Lang et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn


class GeneralizedInteraction(nn.Module):
    """``[B, F, K], [B, I, K] -> [B, S, K]``: one generalized interaction layer.

    With ``x0`` the field embeddings and ``x`` the previous layer's ``I`` subspaces (``I = F`` for
    the first layer, whose input is ``x0`` itself), subspace ``s`` of the output is
    ``out_s = (W_s * sum_{i<I, f<F} alpha[i, f, s] (x0_f x_i^T)) h_s``, i.e. coordinate ``k``:
    ``out[s, k] = sum_d W[s, k, d] h[s, d] sum_{i, f} alpha[i, f, s] x0[f, k] x[i, d]``.
    Each output subspace has its own ``K x K`` matrix ``W_s`` (elementwise on the fused outer
    products), vector ``h_s`` (their projection back to ``K``) and weights ``alpha[:, :, s]`` over
    all (subspace, field) pairs. As in FuxiCTR's implementation, ``W_s`` starts as the identity
    and ``alpha`` and ``h`` at ones.
    """

    def __init__(self, input_subspaces: int, num_fields: int, output_subspaces: int, embedding_dim: int):
        super().__init__()
        eye = torch.eye(embedding_dim).expand(output_subspaces, embedding_dim, embedding_dim)
        self.weight = nn.Parameter(eye.clone())  # W: [S, K, K]
        self.alpha = nn.Parameter(torch.ones(input_subspaces, num_fields, output_subspaces))
        self.h = nn.Parameter(torch.ones(output_subspaces, embedding_dim))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # summing the (i, f) pairs into per-field mixtures first keeps the [K, K] products at S x F per example
        mixed = torch.einsum("bid,ifs->bsfd", x, self.alpha)  # [B, S, F, K]: sum_i alpha x_i
        projection = self.weight * self.h.unsqueeze(1)  # [S, K, K]: W[s, k, d] h[s, d]
        projected = torch.einsum("bsfd,skd->bsfk", mixed, projection)  # [B, S, F, K]
        return (projected * x0.unsqueeze(1)).sum(dim=2)


class GeneralizedInteractionNet(nn.Module):
    """``[B, F, K] -> [B, S * K]``: ``num_layers`` generalized interaction layers (see
    ``GeneralizedInteraction``), each crossing the previous layer's ``S`` subspaces (the
    embeddings' ``F`` fields for the first) with the embeddings; the last layer's subspaces,
    flattened."""

    def __init__(self, num_fields: int, embedding_dim: int, num_layers: int, num_subspaces: int):
        super().__init__()
        if num_layers < 1 or num_subspaces < 1:
            raise ValueError(f"need layers and subspaces >= 1, got {num_layers}, {num_subspaces}")
        self.layers = nn.ModuleList(
            GeneralizedInteraction(
                num_fields if index == 0 else num_subspaces, num_fields, num_subspaces, embedding_dim
            )
            for index in range(num_layers)
        )
        self.output_dim = num_subspaces * embedding_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x.flatten(1)
