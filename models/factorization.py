"""The factorization-machine family: NFM, AFM, FwFM, FmFM and HOFM, each FM's first-order part and
a different form of its feature interactions."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import (
    AnovaKernel,
    AttentionalPooling,
    BiInteraction,
    FieldMatrixedInteraction,
    InnerProduct,
    MLPSpec,
)
from models.layers.mlp import Dropout


class NFM(CTRModule):
    """Neural factorization machine (He and Chua 2017):
    ``y = sum_i w[x_i] + MLP(sum_{i<j} e_i * e_j)``, the MLP over the bi-interaction pooling's
    ``K`` values (see ``BiInteraction``).

    Our choices, FuxiCTR's (so BARS's): ``w0`` is the MLP's output bias; no batch norm or dropout
    on the pooled vector itself (the paper has both), ``mlp.dropout`` after each hidden layer.
    """

    def __init__(self, schema: Schema, *, embedding_dim: int, embedding_init_std: float, mlp: MLPSpec, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit(bias=False)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.bi_interaction = BiInteraction()
        self.dnn = MLPSpec.of(mlp).build(embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = self.bi_interaction(self.embedding(batch))
        return self.linear(batch) + self.dnn(pooled).squeeze(1)


class AFM(CTRModule):
    """Attentional factorization machine (Xiao et al. 2017):
    ``y = w0 + sum_i w[x_i] + p^T sum_{i<j} a_ij (e_i * e_j)``, the attention weights ``a_ij`` of a
    one-layer network of ``attention_dim`` units over each pair's product (see ``AttentionalPooling``).

    Our choices: FuxiCTR's two dropouts at one rate ``dropout``, on the attention weights and on
    the pooled vector (the paper drops the pair products; BARS's runs set both of FuxiCTR's alike).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        attention_dim: int,
        dropout: float,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.pooling = AttentionalPooling(schema.num_fields, embedding_dim, attention_dim, dropout)
        self.dropout = Dropout(dropout) if dropout > 0 else None
        self.projection = nn.Linear(embedding_dim, 1, bias=False)

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = self.pooling(self.embedding(batch))
        if self.dropout is not None:
            pooled = self.dropout(pooled)
        return self.linear(batch) + self.projection(pooled).squeeze(1)


class FwFM(CTRModule):
    """Field-weighted factorization machine (Pan et al. 2018):
    ``y = w0 + sum_{i<j} r_{ij} <e_i, e_j> + linear part``, one learned weight ``r_ij`` per field
    pair (an ``nn.Linear`` over the ``P`` inner products, whose bias is ``w0``).

    ``linear_type``, the paper's three linear parts: ``LW`` ``sum_i w[x_i]`` (FM's);
    ``FeLV`` ``sum_i <e_i, v[x_i]>`` with a second K-wide table ``v`` of feature vectors; ``FiLV``
    ``sum_i <e_i, v_i>`` with one vector per field (an unbiased ``nn.Linear`` over the ``F*K``
    embeddings).
    """

    LINEAR_TYPES = ("LW", "FeLV", "FiLV")

    def __init__(self, schema: Schema, *, linear_type: str, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        if linear_type not in self.LINEAR_TYPES:
            raise ValueError(f"FwFM linear_type {linear_type!r}: expected one of {self.LINEAR_TYPES}")
        self.linear_type = linear_type
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.inner_product = InnerProduct(schema.num_fields)
        self.pair_weights = nn.Linear(self.inner_product.num_pairs, 1)
        if linear_type == "LW":
            self.linear = self.linear_logit(bias=False)
        elif linear_type == "FeLV":
            self.linear = self.feature_embedding(embedding_dim, embedding_init_std)
        else:
            self.linear = nn.Linear(schema.num_fields * embedding_dim, 1, bias=False)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        logit = self.pair_weights(self.inner_product(embedded)).squeeze(1)
        if self.linear_type == "LW":
            return logit + self.linear(batch)
        if self.linear_type == "FeLV":
            return logit + (embedded * self.linear(batch)).sum(dim=(1, 2))
        return logit + self.linear(embedded.flatten(1)).squeeze(1)


class FmFM(CTRModule):
    """Field-matrixed factorization machine (Sun et al. 2021, "FM^2"):
    ``y = w0 + sum_i w[x_i] + sum_{i<j} (e_i M_ij) . e_j``, one ``K x K`` matrix per field pair, or
    with ``form="vectorized"`` a diagonal one (see ``FieldMatrixedInteraction``).

    Our choices: one embedding size for all fields (the paper lets each field have its own).
    """

    def __init__(self, schema: Schema, *, form: str, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.interaction = FieldMatrixedInteraction(schema.num_fields, embedding_dim, form)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.linear(batch) + self.interaction(self.embedding(batch))


class HOFM(CTRModule):
    """Higher-order factorization machine (Blondel et al. 2016):
    ``y = w0 + sum_i w[x_i] + sum_{t=2..order} sum_{i_1 < ... < i_t} sum_k e^t_{i_1 k} ... e^t_{i_t k}``,
    each order ``t``'s sum the ANOVA kernel ``A^t`` of its own embeddings ``e^t`` (the paper's), or
    with ``reuse_embedding`` of one shared table; kernels by their recursion over the fields (see
    ``AnovaKernel``), ``O(F * order * K)``, never by enumerating the ``C(F, t)`` field tuples.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        order: int,
        reuse_embedding: bool,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        if order < 2:
            raise ValueError(f"HOFM's order is at least 2, got {order}")
        self.order = order
        self.linear = self.linear_logit()
        tables = 1 if reuse_embedding else order - 1
        self.embeddings = nn.ModuleList(
            self.feature_embedding(embedding_dim, embedding_init_std) for _ in range(tables)
        )
        self.kernels = nn.ModuleList(AnovaKernel(order if reuse_embedding else t) for t in range(2, 2 + tables))

    def forward(self, batch: Batch) -> torch.Tensor:
        logit = self.linear(batch)
        if len(self.embeddings) == 1 and self.order > 2:  # one table: its kernels of orders 2..order
            return logit + self.kernels[0](self.embeddings[0](batch))[:, 1:].sum(dim=(1, 2))
        for embedding, kernel in zip(self.embeddings, self.kernels):  # table t - 2: A^t alone
            logit = logit + kernel(embedding(batch))[:, -1].sum(dim=1)
        return logit
