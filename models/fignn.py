"""FiGNN (Li et al. 2019): the fields as a graph whose node states a gated GNN propagates."""

from __future__ import annotations

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import AttentionalScoring, FieldGraphNetwork


class FiGNN(CTRModule):
    """Feature Interaction Graph Neural Network (Li, Cui, Wu, Zhang and Wang 2019): the ``F`` field
    embeddings ``e`` are the nodes of a complete graph with attentional edge weights
    ``A_ij = softmax_{j != i} LeakyReLU(w^T [e_i; e_j])``; ``graph_layers`` steps of
    ``h_t = GRU(W_in^i sum_j A_ij W_out^j h_{t-1,j} + b, h_{t-1,i}) (+ e_i)`` update the states from
    ``h_0 = e``, and ``y = sum_i sigmoid(W_g [h_1; ...; h_F])_i * (w^T h_i)`` reads them out (see
    ``FieldGraphNetwork``, ``AttentionalScoring``).

    Our choices, those of FuxiCTR's implementation (which BARS ran) where the paper leaves freedom:
    the edges are computed once from the embeddings, not per step; one GRU cell shared by every
    step and field; ``gru`` off replaces the cell by a plain sum ``h_{t-1} + a_t``; ``residual``
    adds the embeddings after each step; ``shared_graph_layer`` reuses one pair of per-field maps
    in every step. No first-order part and no global bias (the readout has none).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        graph_layers: int,
        gru: bool,
        residual: bool,
        shared_graph_layer: bool,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        num_fields = schema.num_fields
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.gnn = FieldGraphNetwork(num_fields, embedding_dim, graph_layers, gru, residual, shared_graph_layer)
        self.readout = AttentionalScoring(num_fields, embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.readout(self.gnn(self.embedding(batch)))
