"""Shallow models: LR, FM, FFM."""

from __future__ import annotations

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import FieldAwareInteraction, FMInteraction


class LR(CTRModule):
    """Logistic regression: ``y = w0 + sum_i w[x_i] + sum_d w_d x_d``.

    The DeepFM paper trained it with FTRL-Proximal (McMahan et al. 2013): pick ``optim=ftrl``
    for that; the default optimiser config is Adam. Weights start at zero.
    """

    def __init__(self, schema: Schema, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()

    def forward(self, batch: Batch):
        return self.linear(batch)


class FM(CTRModule):
    """Factorization machine (Rendle 2010): ``y = LR + sum_{i<j} <v_i, v_j>``, the pair sum in its
    O(kn) form. Our choices: embeddings start N(0, embedding_init_std^2); the first-order weights
    live in a separate 1-d table, as in the paper's definition.
    """

    def __init__(self, schema: Schema, *, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.fm = FMInteraction()

    def forward(self, batch: Batch):
        return self.linear(batch) + self.fm(self.embedding(batch))


class FFM(CTRModule):
    """Field-aware factorization machine (Juan et al. 2016):
    ``y = LR + sum_{i<j} <v_{x_i, field(j)}, v_{x_j, field(i)}>``.

    One table of ``num_ids x (F * K)`` holds every feature's F latent vectors (dense fields: one
    such row scaled by the value). Default ``embedding_dim`` 4 is the FFM paper's Criteo setting
    (ours: FFM is not in the DeepFM paper's table); init as FM.
    """

    def __init__(self, schema: Schema, *, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        num_fields = schema.num_fields
        self.embedding_dim = embedding_dim
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(num_fields * embedding_dim, embedding_init_std)
        self.ffm = FieldAwareInteraction(num_fields)

    def forward(self, batch: Batch):
        embedded = self.embedding(batch)  # [B, F, F*K]
        per_field = embedded.view(*embedded.shape[:2], -1, self.embedding_dim)  # [B, F, F, K]
        return self.linear(batch) + self.ffm(per_field)
