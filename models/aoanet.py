"""AOANet (Lang et al. 2021): a generalized interaction network beside a DNN."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import GeneralizedInteractionNet, MLPSpec


class AOANet(CTRModule):
    """Architecture and Operation Adaptive Network (Lang, Zhu, Liu, Zhao, Xu and Shan 2021):
    ``y = w^T [MLP(e); GIN(e)] + b``, ``e`` the field embeddings, ``GIN`` ``num_interaction_layers``
    generalized interaction layers with ``num_subspaces`` output subspaces each,
    ``x_{l+1, s} = (W_s * sum_{i, f} alpha_{i, f, s} (e_f x_{l, i}^T)) h_s`` (see
    ``GeneralizedInteraction``), its last layer's subspaces flattened.

    Our choices, those of FuxiCTR's implementation (which BARS ran): every GIN weight trains with
    the rest from ``W_s = I``, ``alpha = h = 1``; the MLP's last hidden layer feeds the head
    directly (no output unit of its own).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        num_interaction_layers: int,
        num_subspaces: int,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        num_fields = schema.num_fields
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.dnn = MLPSpec.of(mlp).build(num_fields * embedding_dim, output_dim=None)
        self.gin = GeneralizedInteractionNet(num_fields, embedding_dim, num_interaction_layers, num_subspaces)
        self.head = nn.Linear(self.dnn.output_dim + self.gin.output_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        return self.head(torch.cat([self.dnn(embedded.flatten(1)), self.gin(embedded)], dim=1)).squeeze(1)
