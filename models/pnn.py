"""Product-based neural networks: IPNN, OPNN, PNN* (Qu et al. 2016)."""
from __future__ import annotations

from typing import Sequence

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import MLP, InnerProduct, OuterProduct


class PNN(CTRModule):
    """Product-based neural network (Qu et al. 2016): ``y = MLP([e_1..e_F, p])``.

    ``p`` is the product layer: pairwise inner products ``<e_i, e_j>`` (``product="inner"``,
    IPNN), outer products (``"outer"``, OPNN; ``outer_form`` "sum_pooled" is the paper's
    ``(sum_i e_i)(sum_i e_i)^T``, "pairwise" every ``e_i e_j^T``), or both (``"both"``, PNN*).
    The paper's product layer ``l1 = act(W_z z + W_p p + b)`` is exactly the MLP's first layer over
    the concatenation ``[z, p]``; our choice is a full ``W_p`` (the paper factorises it to cut
    cost). The DeepFM paper's setting: relu, except tanh for IPNN.
    """

    PRODUCTS = ("inner", "outer", "both")

    def __init__(self, schema: Schema, *, product: str = "inner", outer_form: str = "sum_pooled",
                 embedding_dim: int = 10, embedding_init_std: float = 0.01,
                 hidden_units: Sequence[int] = (400, 400, 400), activation: str = "tanh",
                 dropout: float = 0.5, batch_norm: bool = False, **optim_kwargs):
        super().__init__(schema, **optim_kwargs)
        if product not in self.PRODUCTS:
            raise ValueError(f"product {product!r}: expected one of {self.PRODUCTS}")
        num_fields = schema.num_fields
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.inner = InnerProduct(num_fields) if product in ("inner", "both") else None
        self.outer = OuterProduct(num_fields, outer_form) if product in ("outer", "both") else None
        input_dim = num_fields * embedding_dim
        input_dim += self.inner.num_pairs if self.inner is not None else 0
        input_dim += self.outer.output_dim(embedding_dim) if self.outer is not None else 0
        self.dnn = MLP(input_dim, hidden_units, activation=activation, dropout=dropout,
                       batch_norm=batch_norm)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        signals = [embedded.flatten(1)]
        if self.inner is not None:
            signals.append(self.inner(embedded))
        if self.outer is not None:
            signals.append(self.outer(embedded))
        return self.dnn(torch.cat(signals, dim=1)).squeeze(1)


class IPNN(PNN):
    """PNN with the inner-product layer (see ``PNN``); tanh, the DeepFM paper's setting for IPNN."""

    def __init__(self, schema: Schema, *, activation: str = "tanh", **kwargs):
        super().__init__(schema, product="inner", activation=activation, **kwargs)


class OPNN(PNN):
    """PNN with the outer-product layer, sum-pooled by default (see ``PNN``); relu."""

    def __init__(self, schema: Schema, *, activation: str = "relu", **kwargs):
        super().__init__(schema, product="outer", activation=activation, **kwargs)


class PNNStar(PNN):
    """PNN*: inner and outer products together (see ``PNN``); relu."""

    def __init__(self, schema: Schema, *, activation: str = "relu", **kwargs):
        super().__init__(schema, product="both", activation=activation, **kwargs)
