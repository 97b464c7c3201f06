"""FiBiNET's bilinear interaction (Huang et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from models.layers.interaction import PairwiseLayer


class BilinearInteraction(PairwiseLayer):
    """``[B, F, K] -> [B, P, K]``: ``p_ij = (v_i W) * v_j`` (element-wise) for each field pair ``i < j``.

    ``bilinear_type`` says which ``K x K`` map a pair uses: ``"field_all"`` one ``W`` for every pair,
    ``"field_each"`` ``W_i`` of the pair's first field (``F`` maps), ``"field_interaction"`` ``W_ij``
    of the pair itself (``P`` maps). Each map starts Glorot-normal (std ``sqrt(2 / (K + K))``).
    Shared maps are applied once per field, then gathered at the pairs, not once per pair.
    """

    TYPES = ("field_all", "field_each", "field_interaction")

    def __init__(self, num_fields: int, embedding_dim: int, bilinear_type: str):
        super().__init__(num_fields)
        if bilinear_type not in self.TYPES:
            raise ValueError(f"bilinear_type {bilinear_type!r}: expected one of {self.TYPES}")
        self.bilinear_type = bilinear_type
        maps = {"field_all": 1, "field_each": num_fields, "field_interaction": self.num_pairs}[bilinear_type]
        self.weight = nn.Parameter(torch.randn(maps, embedding_dim, embedding_dim) * embedding_dim**-0.5)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        if self.bilinear_type == "field_all":
            left = (embedded @ self.weight[0]).index_select(1, self.left)
        elif self.bilinear_type == "field_each":
            mapped = torch.bmm(embedded.transpose(0, 1), self.weight)  # [F, B, K]: field i through W_i
            left = mapped.transpose(0, 1).index_select(1, self.left)
        else:
            pairs_first = embedded.index_select(1, self.left).transpose(0, 1)  # [P, B, K]
            left = torch.bmm(pairs_first, self.weight).transpose(0, 1)
        return left * embedded.index_select(1, self.right)
