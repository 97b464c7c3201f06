"""AFN and AFN+ (Cheng, Shan and Zhang 2020): logarithmic neurons, alone or beside a DNN."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import LogarithmicTransformation, MLPSpec


class AFN(CTRModule):
    """Adaptive Factorization Network (Cheng, Shan and Zhang 2020): ``y = MLP([y_1; ...; y_N])`` over
    ``N = logarithmic_neurons`` neurons ``y_j = exp(sum_i w_ji ln |e_i|) = prod_i |e_i|^{w_ji}``
    (elementwise over the ``K`` coordinates of the field embeddings ``e_i``): each neuron an
    interaction whose orders ``w_j`` are learned (see ``LogarithmicTransformation``).

    Our choices, FuxiCTR's (so BARS's) where the paper leaves freedom: the logarithm reads
    ``max(|e|, log_floor)``, the magnitude of each coordinate with zeros and tiny values lifted to
    ``log_floor`` (the paper replaces zeros by a small positive value; signs do not enter, so a
    neuron models how large the coordinates are, not their direction); ``ln |e|`` batch-normalised
    per field and the neurons per neuron, always; no first-order part.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        logarithmic_neurons: int,
        log_floor: float,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.lnn = LogarithmicTransformation(schema.num_fields, logarithmic_neurons, log_floor)
        self.afn = MLPSpec.of(mlp).build(self.lnn.output_dim(embedding_dim))

    def afn_logit(self, batch: Batch) -> torch.Tensor:
        """``[B, 1]``: the logarithmic neurons' MLP."""
        return self.afn(self.lnn(self.embedding(batch)))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.afn_logit(batch).squeeze(1)


class AFNPlus(AFN):
    """AFN+ (Cheng, Shan and Zhang 2020): ``y = w_1 y_AFN + w_2 MLP_dnn([e'_1..e'_F]) + b``, the AFN
    (see ``AFN``) ensembled with a DNN over embeddings ``e'`` of its own, their two logits weighed by
    one learned unit. Our choice, the paper's and FuxiCTR's: the two parts share no embedding.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        logarithmic_neurons: int,
        log_floor: float,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        dnn: MLPSpec,
        **training,
    ):
        super().__init__(
            schema,
            logarithmic_neurons=logarithmic_neurons,
            log_floor=log_floor,
            embedding_dim=embedding_dim,
            embedding_init_std=embedding_init_std,
            mlp=mlp,
            **training,
        )
        self.dnn_embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.dnn = MLPSpec.of(dnn).build(schema.num_fields * embedding_dim)
        self.head = nn.Linear(2, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        dnn_logit = self.dnn(self.dnn_embedding(batch).flatten(1))
        return self.head(torch.cat([self.afn_logit(batch), dnn_logit], dim=1)).squeeze(1)
