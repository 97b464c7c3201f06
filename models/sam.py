"""SAM (Cheng and Xue 2021): self-attentive interactions of the field embeddings into one unit."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import SelfAttentiveInteraction


class SAM(CTRModule):
    """Self-Attentive Model (Cheng and Xue 2021): ``y = w^T flatten(SAM_L(e)) + b`` over the field
    embeddings ``e``, ``SAM_L`` ``interaction_layers`` layers of one of the paper's interactions
    (see ``SAMLayer``): SAM2A / SAM2E keep every ordered field pair ``s_ij w_ij`` or
    ``s_ij (e_i * e_j)`` with ``s_ij = <e_i, e_j>`` (one layer); SAM3A / SAM3E sum them per field,
    ``o_i = sum_j s_ij w_ij`` or ``sum_j s_ij (e_i * e_j)`` with ``s_ij = <e_i, W_K e_j>``, plus
    ``W_Q e_i`` with ``residual``, and stack.

    Our choices, FuxiCTR's (so BARS's): the last layer's outputs concatenated into the linear unit
    (its other aggregations, pooling over fields, are left out: BARS ran concat); ``w_ij`` start at
    one; ``dropout`` after each layer; no first-order part.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        interaction: str,
        interaction_layers: int,
        residual: bool,
        dropout: float,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.sam = SelfAttentiveInteraction(
            schema.num_fields, embedding_dim, interaction, interaction_layers, residual, dropout
        )
        self.head = nn.Linear(self.sam.output_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.sam(self.embedding(batch))).squeeze(1)
