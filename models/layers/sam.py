"""SAM's self-attentive interactions (Cheng and Xue 2021): field pairs scored by dot products, then
weighted by learned vectors (A) or by the pair's elementwise product (E)."""

from __future__ import annotations

import torch
from torch import nn

from models.layers.mlp import Dropout

SAM_INTERACTIONS = ("SAM2A", "SAM2E", "SAM3A", "SAM3E")


class SAMLayer(nn.Module):
    """``[B, F, K] -> [B, F, K]`` (SAM3A, SAM3E) or ``[B, F, F, K]`` (SAM2A, SAM2E), with
    ``s_ij = <e_i, W_K e_j>`` (``W_K`` the identity for SAM2*):

    - SAM2A: ``o_ij = s_ij w_ij``; SAM2E: ``o_ij = s_ij (e_i * e_j)``, every ordered pair kept;
    - SAM3A: ``o_i = sum_j s_ij w_ij``; SAM3E: ``o_i = sum_j s_ij (e_i * e_j) = e_i * sum_j s_ij e_j``;
      plus ``W_Q e_i`` with ``residual``;

    then dropout. ``w_ij`` (``[F, F, K]``) start at one, as FuxiCTR's; ``W_K`` and ``W_Q`` are
    unbiased ``nn.Linear(K, K)`` (torch's default initialisation).
    """

    def __init__(self, num_fields: int, embedding_dim: int, interaction: str, residual: bool, dropout: float):
        super().__init__()
        if interaction not in SAM_INTERACTIONS:
            raise ValueError(f"interaction {interaction!r}: expected one of {SAM_INTERACTIONS}")
        self.interaction = interaction
        attentive = interaction.endswith("A")
        self.weight = nn.Parameter(torch.ones(num_fields, num_fields, embedding_dim)) if attentive else None
        self.key = nn.Linear(embedding_dim, embedding_dim, bias=False) if interaction.startswith("SAM3") else None
        self.residual = nn.Linear(embedding_dim, embedding_dim, bias=False) if residual and self.key else None
        self.dropout = Dropout(dropout) if dropout > 0 else None

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        keys = embedded if self.key is None else self.key(embedded)
        scores = torch.bmm(embedded, keys.transpose(1, 2))  # [B, F, F]
        if self.interaction == "SAM2A":
            out = scores.unsqueeze(-1) * self.weight
        elif self.interaction == "SAM2E":
            out = scores.unsqueeze(-1) * (embedded.unsqueeze(2) * embedded.unsqueeze(1))
        elif self.interaction == "SAM3A":  # a product batched over fields i: its gradients are matrix products
            out = torch.einsum("bij,ijk->bik", scores, self.weight)
        else:
            out = embedded * torch.bmm(scores, embedded)
        if self.residual is not None:
            out = out + self.residual(embedded)
        return out if self.dropout is None else self.dropout(out)


class SelfAttentiveInteraction(nn.Module):
    """``[B, F, K] -> [B, D]``: ``num_layers`` ``SAMLayer`` of ``interaction`` stacked (SAM2A and SAM2E
    have one, whatever ``num_layers``), their last output flattened (``D = F F K`` for SAM2*,
    ``F K`` for SAM3*)."""

    def __init__(
        self, num_fields: int, embedding_dim: int, interaction: str, num_layers: int, residual: bool, dropout: float
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"SAM needs at least one interaction layer, got {num_layers}")
        layers = 1 if interaction.startswith("SAM2") else num_layers
        self.layers = nn.ModuleList(
            SAMLayer(num_fields, embedding_dim, interaction, residual, dropout) for _ in range(layers)
        )
        self.output_dim = (num_fields if interaction.startswith("SAM2") else 1) * num_fields * embedding_dim

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        out = embedded
        for layer in self.layers:
            out = layer(out)
        return out.flatten(1)
