"""The factorization-machine family's interactions over embedded fields ``[B, F, K]``: NFM's
bi-interaction pooling, AFM's attention over pair products, FmFM's field-pair maps and the ANOVA
kernels of higher-order FMs. Field pairs are index tensors (``i < j``), never loops."""

from __future__ import annotations

import torch
from torch import nn

from models.layers.interaction import PairwiseLayer
from models.layers.mlp import Dropout


class BiInteraction(nn.Module):
    """NFM's bi-interaction pooling (He and Chua 2017): ``[B, F, K] -> [B, K]``,
    ``sum_{i<j} e_i * e_j = 0.5 * ((sum_i e_i)^2 - sum_i e_i^2)`` per dimension, in O(FK)."""

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        square_of_sum = embedded.sum(dim=1).pow(2)
        sum_of_squares = embedded.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_squares)


class AttentionalPooling(PairwiseLayer):
    """AFM's attention-based pooling (Xiao et al. 2017): ``[B, F, K] -> [B, K]``,
    ``sum_{i<j} a_ij (e_i * e_j)`` with ``a = softmax over the pairs of h^T relu(W (e_i * e_j) + b)``
    (``W: A x K``, ``b, h: A``).

    ``dropout`` drops attention weights (after the softmax, not renormalised), as FuxiCTR does.
    ``W`` and ``b`` are a ``nn.Linear``, ``h`` an unbiased ``nn.Linear(A, 1)`` (its bias would add
    the same score to every pair, which the softmax cancels). ``b`` starts at zero (FuxiCTR's too):
    while the products are near zero, as small embeddings make them, a unit of negative bias would
    be silent for every pair and one of positive bias the same map for every pair, which the
    softmax cancels, so neither would learn.
    """

    def __init__(self, num_fields: int, embedding_dim: int, attention_dim: int, dropout: float):
        super().__init__(num_fields)
        self.hidden = nn.Linear(embedding_dim, attention_dim)
        nn.init.zeros_(self.hidden.bias)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.dropout = Dropout(dropout) if dropout > 0 else None

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        products = embedded.index_select(1, self.left) * embedded.index_select(1, self.right)  # [B, P, K]
        weights = torch.softmax(self.score(torch.relu(self.hidden(products))), dim=1)  # [B, P, 1]
        if self.dropout is not None:
            weights = self.dropout(weights)
        return (weights * products).sum(dim=1)


class FieldMatrixedInteraction(PairwiseLayer):
    """FmFM's interaction (Sun et al. 2021): ``[B, F, K] -> [B]``,
    ``sum_{i<j} (e_i M_ij) . e_j`` with one ``K x K`` matrix per field pair (``form="matrixed"``),
    or a diagonal one, a vector ``m_ij`` (``form="vectorized"``: ``sum_k m_ijk e_ik e_jk``, FwFM's
    field weights generalised per dimension).

    The maps start Glorot-normal for the tensor of all pairs' maps (fans ``K`` and ``P`` for the
    vectors, ``K*K`` and ``P*K`` for the matrices), as FuxiCTR draws them.
    """

    FORMS = ("matrixed", "vectorized")

    def __init__(self, num_fields: int, embedding_dim: int, form: str):
        super().__init__(num_fields)
        if form not in self.FORMS:
            raise ValueError(f"FmFM form {form!r}: expected one of {self.FORMS}")
        self.form = form
        shape = (self.num_pairs, embedding_dim) + ((embedding_dim,) if form == "matrixed" else ())
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(shape)))

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        # index_select, not advanced indexing: the latter's backward accumulates the transposed
        # gradient of the matrixed form in an order that depends on the thread count
        left, right = embedded.index_select(1, self.left), embedded.index_select(1, self.right)  # [B, P, K]
        if self.form == "vectorized":
            return (left * self.weight * right).sum(dim=(1, 2))
        # one [B, K] x [K, K] product per pair: the batch is each product's inner dimension in the
        # weight's gradient, a matrix product (whose sum order MKL keeps fixed at any thread count)
        mapped = torch.bmm(left.transpose(0, 1), self.weight).transpose(0, 1)  # [B, P, K]
        return (mapped * right).sum(dim=(1, 2))


class AnovaKernel(nn.Module):
    """The ANOVA kernels of a higher-order FM (Blondel et al. 2016), per dimension:
    ``[B, F, K] -> [B, order, K]``, entry ``t - 1`` holding ``A^t = sum_{i_1 < ... < i_t}
    e_{i_1} * ... * e_{i_t}`` for ``t = 1..order``.

    Computed by the kernel's recursion over the fields rather than by enumerating the ``C(F, t)``
    field tuples: after field ``j``, ``A^t <- A^t + e_j * A^{t-1}`` (``A^0 = 1``), for ``t`` from
    ``order`` down, so each step reads the previous fields' kernels: ``O(F * order * K)`` per example.
    """

    def __init__(self, order: int):
        super().__init__()
        if order < 1:
            raise ValueError(f"an ANOVA kernel has order >= 1, got {order}")
        self.order = order

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        num_fields = embedded.shape[1]
        if num_fields < self.order:
            raise ValueError(f"order {self.order} needs at least as many fields, got {num_fields}")
        kernels: list = [None] * (self.order + 1)  # None: still zero (kernels[0] is A^0 = 1)
        for j in range(num_fields):
            field = embedded[:, j]
            # A^t reads A^{t-1} before this field updates it; A^t is zero until field t - 1
            for t in range(min(j + 1, self.order), 1, -1):
                step = field * kernels[t - 1]
                kernels[t] = step if kernels[t] is None else kernels[t] + step
            kernels[1] = field if kernels[1] is None else kernels[1] + field
        return torch.stack(kernels[1:], dim=1)
