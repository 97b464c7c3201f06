"""HFM and HFM+ (Tay et al. 2019): factorization machines whose field pairs interact holographically."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import HolographicInteraction, MLPSpec


class HFM(CTRModule):
    """Holographic factorization machine (Tay, Zhang, Luu and Hui 2019):
    ``y = w0 + sum_i w[x_i] + h^T sum_{i<j} e_i o e_j`` with ``o`` the circular convolution or
    correlation (``interaction``, see ``HolographicInteraction``): an FM whose pair interaction is a
    ``K``-vector read by one learned ``h`` (``h = 1`` and ``o`` the element-wise product give FM).

    Our choices: the pairs' sum through prefix sums (``HolographicInteraction.pooled``), equal to
    the sum over pairs up to rounding; ``h`` has no bias (``w0`` is the model's one).
    """

    def __init__(self, schema: Schema, *, interaction: str, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.holographic = HolographicInteraction(schema.num_fields, interaction)
        self.projection = nn.Linear(embedding_dim, 1, bias=False)

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = self.holographic.pooled(self.embedding(batch))
        return self.linear(batch) + self.projection(pooled).squeeze(1)


class HFMPlus(CTRModule):
    """HFM+ (Tay et al. 2019): an MLP over the pairs' holographic vectors in place of ``h``,
    ``y = w0 + sum_i w[x_i] + MLP([e_1 o e_2; e_1 o e_3; ...; e_{F-1} o e_F])``.

    The MLP's output bias stays beside ``w0`` (as in FuxiCTR's HFM with ``use_dnn``, whose parameter
    counts BARS prints).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        interaction: str,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.holographic = HolographicInteraction(schema.num_fields, interaction)
        self.dnn = MLPSpec.of(mlp).build(self.holographic.num_pairs * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        pairs = self.holographic(self.embedding(batch))
        return self.linear(batch) + self.dnn(pairs.flatten(1)).squeeze(1)
