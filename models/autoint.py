"""AutoInt and AutoInt+ (Song et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import AttentionSpec, MLPSpec


class AutoInt(CTRModule):
    """AutoInt (Song et al. 2019): the field embeddings ``e = [e_1..e_F]`` pass through stacked
    interacting layers (multi-head self-attention over the fields with residual connections, see
    ``MultiHeadSelfAttention``), and ``y = w^T flatten(Attention(e)) + b``.

    With ``wide``, ``y`` adds first-order weights ``sum_i w[x_i]`` without a bias of their own
    (FuxiCTR's ``use_wide``, not in the paper). Our choices: as ``MultiHeadSelfAttention`` says.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        attention: AttentionSpec,
        embedding_dim: int,
        embedding_init_std: float,
        wide: bool = False,
        **training,
    ):
        super().__init__(schema, **training)
        spec = AttentionSpec.of(attention)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.attention = spec.build(embedding_dim)
        self.head = nn.Linear(schema.num_fields * spec.dim, 1)
        self.linear = self.linear_logit(bias=False) if wide else None

    def logit(self, batch: Batch, embedded: torch.Tensor) -> torch.Tensor:
        """AutoInt's ``[B]`` logit of ``batch`` over its embeddings ``embedded``."""
        logit = self.head(self.attention(embedded).flatten(1)).squeeze(1)
        return logit if self.linear is None else logit + self.linear(batch)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.logit(batch, self.embedding(batch))


class AutoIntPlus(AutoInt):
    """AutoInt+ (Song et al. 2019): AutoInt's logit plus an MLP over the same embeddings,
    ``y = w^T flatten(Attention(e)) + b + MLP([e_1..e_F])``, trained jointly. The MLP's output
    bias stays beside ``b`` (as in FuxiCTR, whose parameter counts BARS prints)."""

    def __init__(
        self,
        schema: Schema,
        *,
        attention: AttentionSpec,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        wide: bool = False,
        **training,
    ):
        super().__init__(
            schema,
            attention=attention,
            embedding_dim=embedding_dim,
            embedding_init_std=embedding_init_std,
            wide=wide,
            **training,
        )
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        return self.logit(batch, embedded) + self.dnn(embedded.flatten(1)).squeeze(1)
