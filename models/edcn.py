"""EDCN (Chen et al. 2021): a cross network and a deep network in parallel, sharing information
after every layer."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import EDCNSpec


class EDCN(CTRModule):
    """EDCN (Chen, Wang, Liu, Tang, Guo, Zheng, Yao, Zhang and He, 2021: "Enhancing Explicit and
    Implicit Feature Interactions via Information Sharing for Parallel Deep CTR Models"): DCN's
    parallel cross and deep towers over ``e = [e_1..e_F]``, where after layer ``l`` a bridge
    ``f_l = Bridge(x_l, h_l)`` (addition, Hadamard product, concatenation or attention pooling)
    feeds both towers' next layer, each through its own field-wise softmax gate (the regulation
    module, temperature ``tau``); ``y = w^T [x_L; h_L; f_L] + b`` (see ``EDCNTowers``).

    Our choices, FuxiCTR's where the paper leaves them (BARS's run): every deep layer is ``F * K``
    wide so that the bridge can combine it with the cross layer's output; the head also reads the
    last bridge ``f_L``; a regulation module before every layer, its optional batch norm after
    the gates; dense fields enter ``e`` as ``v_d * x_d`` like every other field.
    """

    def __init__(self, schema: Schema, *, towers: EDCNSpec, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.towers = EDCNSpec.of(towers).build(schema.num_fields, embedding_dim)
        self.head = nn.Linear(self.towers.output_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.towers(self.embedding(batch).flatten(1))).squeeze(1)
