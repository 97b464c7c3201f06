"""FiBiNET's squeeze-and-excitation re-weighting of the fields (Huang et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """``[B, F, K] -> [B, F, K]``: ``v_i = a_i e_i``, each field's vector scaled by a weight learnt
    from all fields of the example.

    Squeeze: ``z_i = mean_k e_ik`` (``squeeze="mean"``, the FiBiNET paper's) or ``max_k e_ik``
    (``"max"``). Excitation: ``a = relu(W_2 relu(W_1 z))``, ``W_1`` mapping the ``F`` fields to
    ``max(1, int(F / reduction_ratio))`` and ``W_2`` back to ``F``, without biases (the paper's
    formula has none; relu for both layers is its setting). The weights are torch's Linear default.
    """

    SQUEEZES = ("mean", "max")

    def __init__(self, num_fields: int, reduction_ratio: float, squeeze: str):
        super().__init__()
        if squeeze not in self.SQUEEZES:
            raise ValueError(f"squeeze {squeeze!r}: expected one of {self.SQUEEZES}")
        if not reduction_ratio > 0:
            raise ValueError(f"reduction_ratio must be > 0, got {reduction_ratio}")
        reduced = max(1, int(num_fields / reduction_ratio))
        self.squeeze = squeeze
        self.excitation = nn.Sequential(
            nn.Linear(num_fields, reduced, bias=False), nn.ReLU(), nn.Linear(reduced, num_fields, bias=False), nn.ReLU()
        )

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        squeezed = embedded.mean(dim=2) if self.squeeze == "mean" else embedded.amax(dim=2)  # [B, F]
        return embedded * self.excitation(squeezed).unsqueeze(2)
