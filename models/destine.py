"""DESTINE (Xu et al. 2021): disentangled self-attention over the fields."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import DisentangledAttentionSpec, MLPSpec


class DESTINE(CTRModule):
    """DESTINE (Xu, Zhang, Zhang, Wang and Wang, 2021: "Disentangled Self-Attention Network for
    Click-Through Rate Prediction"): the field embeddings ``e = [e_1..e_F]`` pass through stacked
    disentangled self-attention layers (a whitened pairwise term plus a unary term per key, see
    ``DisentangledSelfAttention``), and ``y = w^T flatten(Attention(e)) + b``, plus ``MLP([e_1..e_F])``
    over the same embeddings where ``mlp`` is given.

    With ``wide``, ``y`` adds first-order weights ``w_0 + sum_i w[x_i]`` (FuxiCTR's ``use_wide``; its
    DESTINE, unlike its AutoInt, gives them a bias). Our choices: the DNN and the
    first-order part as FuxiCTR's DESTINE adds them (not in the paper); the DNN's output bias and
    ``w_0`` stay beside ``b``, as FuxiCTR's, whose parameter counts BARS prints.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        attention: DisentangledAttentionSpec,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: Optional[MLPSpec],
        wide: bool = False,
        **training,
    ):
        super().__init__(schema, **training)
        spec = DisentangledAttentionSpec.of(attention)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.attention = spec.build(embedding_dim)
        self.head = nn.Linear(schema.num_fields * spec.dim, 1)
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim) if mlp is not None else None
        self.linear = self.linear_logit() if wide else None

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        logit = self.head(self.attention(embedded).flatten(1)).squeeze(1)
        if self.dnn is not None:
            logit = logit + self.dnn(embedded.flatten(1)).squeeze(1)
        return logit if self.linear is None else logit + self.linear(batch)
