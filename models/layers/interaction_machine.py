"""DeepIM's interaction machine (Yu et al. 2020): every order of field interaction up to ``k`` from
power sums."""

from __future__ import annotations

import torch
from torch import nn


class InteractionMachine(nn.Module):
    """``[B, F, K] -> [B, order * K]``: ``[I_1; ...; I_order]``, with ``I_j`` the sum over every set
    of ``j`` distinct fields of their embeddings' elementwise product (``I_1 = sum_f e_f``,
    ``I_2 = sum_{f<g} e_f * e_g``, ...): the elementary symmetric polynomials of the ``F`` vectors,
    coordinate by coordinate.

    Newton's identities give them from the power sums ``p_i = sum_f e_f^i`` (elementwise) at a cost
    linear in ``F``: ``I_0 = 1``, ``I_j = (1 / j) sum_{i=1..j} (-1)^(i-1) I_{j-i} p_i``, where
    enumerating the sets would cost ``C(F, j)``. No parameters.
    """

    def __init__(self, order: int):
        super().__init__()
        if order < 1:
            raise ValueError(f"an interaction machine needs order >= 1, got {order}")
        self.order = order

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        power, sums = embedded, []
        for _ in range(self.order):
            sums.append(power.sum(dim=1))  # p_1, p_2, ...: [B, K]
            power = power * embedded
        terms = [torch.ones_like(sums[0])]  # I_0
        for j in range(1, self.order + 1):
            total = sum((-1) ** (i - 1) * terms[j - i] * sums[i - 1] for i in range(1, j + 1))
            terms.append(total / j)
        return torch.cat(terms[1:], dim=1)

    def output_dim(self, embedding_dim: int) -> int:
        return self.order * embedding_dim
