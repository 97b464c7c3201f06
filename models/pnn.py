"""Product-based neural networks: IPNN, OPNN, PNN* (Qu et al. 2016)."""

from __future__ import annotations

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import InnerProduct, MLPSpec, OuterProduct


class PNN(CTRModule):
    """Product-based neural network (Qu et al. 2016): ``y = MLP([e_1..e_F, p])``.

    ``p`` is the product layer, each subclass's ``PRODUCT``: pairwise inner products ``<e_i, e_j>``
    (``"inner"``, IPNN), outer products (``"outer"``, OPNN; ``outer_form`` "sum_pooled" is the
    paper's ``(sum_i e_i)(sum_i e_i)^T``, "pairwise" every ``e_i e_j^T``), or both (``"both"``, PNN*).
    The product is the class's, not an argument, so that a checkpoint's hyperparameters rebuild the
    same class.
    The paper's product layer ``l1 = act(W_z z + W_p p + b)`` is exactly the MLP's first layer over
    the concatenation ``[z, p]``; our choice is a full ``W_p`` (the paper factorises it to cut
    cost). The DeepFM paper's setting: relu, except tanh for IPNN.
    """

    PRODUCTS = ("inner", "outer", "both")
    PRODUCT: str  # each subclass's

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        outer_form: str = "sum_pooled",
        **training,
    ):
        super().__init__(schema, **training)
        product = self.PRODUCT
        if product not in self.PRODUCTS:
            raise ValueError(f"product {product!r}: expected one of {self.PRODUCTS}")
        num_fields = schema.num_fields
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.inner = InnerProduct(num_fields) if product in ("inner", "both") else None
        self.outer = OuterProduct(num_fields, outer_form) if product in ("outer", "both") else None
        input_dim = num_fields * embedding_dim
        input_dim += self.inner.num_pairs if self.inner is not None else 0
        input_dim += self.outer.output_dim(embedding_dim) if self.outer is not None else 0
        self.dnn = MLPSpec.of(mlp).build(input_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        signals = [embedded.flatten(1)]
        if self.inner is not None:
            signals.append(self.inner(embedded))
        if self.outer is not None:
            signals.append(self.outer(embedded))
        return self.dnn(torch.cat(signals, dim=1)).squeeze(1)


class IPNN(PNN):
    """PNN with the inner-product layer (see ``PNN``); the DeepFM paper runs it with tanh."""

    PRODUCT = "inner"


class OPNN(PNN):
    """PNN with the outer-product layer, sum-pooled by default (see ``PNN``)."""

    PRODUCT = "outer"


class PNNStar(PNN):
    """PNN*: inner and outer products together (see ``PNN``)."""

    PRODUCT = "both"
