"""FiGNN's field graph (Li et al. 2019): the fields as the nodes of a complete graph whose edges an
attention weighs, node states propagated along it, and an attentional readout."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FieldGraph(nn.Module):
    """``[B, F, K] -> [B, F, F]``: the edge weights ``A_ij = softmax_{j != i} LeakyReLU(w^T [e_i; e_j])``
    (slope 0.01), each row a distribution over the other fields (no self-loops).

    ``w^T [e_i; e_j] = w_1^T e_i + w_2^T e_j``: two scores per field and one broadcast sum, where
    concatenating every pair would build ``F^2`` vectors of ``2K``. ``w`` is one unbiased
    ``nn.Linear(2K, 1)`` (torch's default initialisation).
    """

    def __init__(self, embedding_dim: int):
        super().__init__()
        self.score = nn.Linear(2 * embedding_dim, 1, bias=False)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        num_fields, dim = embedded.shape[1], embedded.shape[2]
        parts = embedded @ self.score.weight.view(2, dim).t()  # [B, F, 2]: w_1^T e_i, w_2^T e_i
        alpha = F.leaky_relu(parts[..., :1] + parts[..., 1].unsqueeze(1), negative_slope=0.01)
        # a float identity compared, not a bool one: ONNX Runtime has no EyeLike for booleans
        self_loops = torch.eye(num_fields, device=embedded.device) > 0
        return torch.softmax(alpha.masked_fill(self_loops, float("-inf")), dim=-1)


class GraphPropagation(nn.Module):
    """``(A [B, F, F], h [B, F, K]) -> [B, F, K]``: one step's aggregated messages
    ``a_i = W_in^i sum_j A_ij W_out^j h_j + b``, with an output map ``W_out^j`` per sending field
    and an input map ``W_in^i`` per receiving field (``K x K`` each), one bias ``b`` for all.

    Each field's maps start Glorot-normal for a ``K x K`` matrix, the bias at zero.
    """

    def __init__(self, num_fields: int, embedding_dim: int):
        super().__init__()
        std = math.sqrt(1.0 / embedding_dim)
        self.w_in = nn.Parameter(torch.randn(num_fields, embedding_dim, embedding_dim) * std)
        self.w_out = nn.Parameter(torch.randn(num_fields, embedding_dim, embedding_dim) * std)
        self.bias = nn.Parameter(torch.zeros(embedding_dim))

    def forward(self, graph: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # per-field maps as a product batched over fields: their gradients are matrix products too
        sent = torch.einsum("fkl,bfl->bfk", self.w_out, h)
        return torch.einsum("fkl,bfl->bfk", self.w_in, torch.bmm(graph, sent)) + self.bias


class FieldGraphNetwork(nn.Module):
    """``[B, F, K] -> [B, F, K]``: ``num_layers`` steps of state propagation over ``FieldGraph(e)``
    (the edges are computed once, from the embeddings ``e``), from ``h_0 = e``:
    ``h_t = GRU(a_t, h_{t-1})`` with ``gru``, else ``h_t = h_{t-1} + a_t``, then ``h_t += e`` with
    ``residual``; ``a_t`` is step ``t``'s ``GraphPropagation`` (one shared by every step with
    ``shared``). The GRU cell (torch's ``nn.GRUCell``, its own initialisation) is shared by all steps
    and all fields.
    """

    def __init__(self, num_fields: int, embedding_dim: int, num_layers: int, gru: bool, residual: bool, shared: bool):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a field graph network needs at least one layer, got {num_layers}")
        self.graph = FieldGraph(embedding_dim)
        self.steps = nn.ModuleList(
            GraphPropagation(num_fields, embedding_dim) for _ in range(1 if shared else num_layers)
        )
        self.gru = nn.GRUCell(embedding_dim, embedding_dim) if gru else None
        self.num_layers, self.residual = num_layers, residual

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        graph = self.graph(embedded)
        h = embedded
        for t in range(self.num_layers):
            messages = self.steps[t % len(self.steps)](graph, h)
            if self.gru is not None:
                h = self.gru(messages.flatten(0, 1), h.flatten(0, 1)).view_as(h)
            else:
                h = h + messages
            if self.residual:
                h = h + embedded
        return h


class AttentionalScoring(nn.Module):
    """``[B, F, K] -> [B]``: ``y = sum_i sigmoid(W_g [h_1; ...; h_F])_i * (w^T h_i)``, each field's
    score ``w^T h_i`` weighted by a gate read from all final states; both maps unbiased
    (``nn.Linear(K, 1)`` and ``nn.Linear(F K, F)``)."""

    def __init__(self, num_fields: int, embedding_dim: int):
        super().__init__()
        self.score = nn.Linear(embedding_dim, 1, bias=False)
        self.gate = nn.Linear(num_fields * embedding_dim, num_fields, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(self.gate(h.flatten(1))) * self.score(h).squeeze(-1)).sum(dim=1)
