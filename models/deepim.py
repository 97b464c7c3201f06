"""DeepIM (Yu et al. 2020): an interaction machine over the field embeddings beside a DNN."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import InteractionMachine, MLPSpec
from models.layers.mlp import BatchNorm


class DeepIM(CTRModule):
    """Deep Interaction Machine (Yu, Liu and Zhang 2020): ``y = w^T BN([I_1; ...; I_k]) + b + MLP(e)``,
    ``e`` the field embeddings and ``I_j = sum_{|S| = j} prod_{f in S} e_f`` (elementwise) the order-``j``
    interactions of all field sets of ``j`` for ``j <= k = im_order`` (see ``InteractionMachine``:
    from power sums by Newton's identities), ``BN`` a batch norm when ``im_batch_norm``, else the identity.

    Our choices, those of FuxiCTR's implementation (which BARS ran): the orders, the first (the
    plain sum of the embeddings) included, concatenated into one linear unit; its logit and the
    MLP's summed, with no first-order weights of their own.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        im_order: int,
        im_batch_norm: bool,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.im = InteractionMachine(im_order)
        width = self.im.output_dim(embedding_dim)
        self.im_norm = BatchNorm(width) if im_batch_norm else None
        self.im_head = nn.Linear(width, 1)
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        interactions = self.im(embedded)
        if self.im_norm is not None:
            interactions = self.im_norm(interactions)
        return (self.im_head(interactions) + self.dnn(embedded.flatten(1))).squeeze(1)
