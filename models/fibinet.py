"""FiBiNET (Huang et al. 2019): SENET field importance and bilinear interactions under a DNN."""

from __future__ import annotations

from typing import Mapping

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import BilinearInteraction, MLPSpec, SqueezeExcitation


class FiBiNET(CTRModule):
    """FiBiNET (Huang, Zhang and Zhang 2019):
    ``y = w0 + sum_i w[x_i] + MLP([p; q])`` with ``p_ij = (e_i W) * e_j`` over the embeddings ``e``
    and ``q_ij = (v_i W') * v_j`` over their SENET re-weighting ``v_i = a_i e_i`` (see
    ``SqueezeExcitation``), for every field pair ``i < j``, ``W`` of ``bilinear_type`` (see
    ``BilinearInteraction``).

    ``senet`` holds the SENET layer's ``reduction_ratio`` and ``squeeze``. Our choices: with
    ``bilinear_shared`` the two interactions use the same maps (``W' = W``, FuxiCTR 1.x, which BARS
    ran), otherwise each its own (FuxiCTR 2.x; the paper does not say); ``w0`` is the MLP's output
    bias, as in FuxiCTR; dense fields enter as ``v_d * x_d`` like every other field.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        senet: Mapping,
        bilinear_type: str,
        bilinear_shared: bool,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        num_fields = schema.num_fields
        self.linear = self.linear_logit(bias=False)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.senet = SqueezeExcitation(num_fields, **senet)
        self.bilinear = BilinearInteraction(num_fields, embedding_dim, bilinear_type)
        self.senet_bilinear = None if bilinear_shared else BilinearInteraction(num_fields, embedding_dim, bilinear_type)
        self.dnn = MLPSpec.of(mlp).build(2 * self.bilinear.num_pairs * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        senet_bilinear = self.bilinear if self.senet_bilinear is None else self.senet_bilinear
        combined = torch.cat([self.bilinear(embedded), senet_bilinear(self.senet(embedded))], dim=1)
        return self.linear(batch) + self.dnn(combined.flatten(1)).squeeze(1)
