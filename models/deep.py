"""Deep models over one shared embedding: DNN, DeepFM, DCN, xDeepFM, and DCN's and xDeepFM's
explicit parts alone (CrossNet, CIN)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import CIN, CrossNetwork, FMInteraction, MLPSpec


class DNN(CTRModule):
    """The deep part alone: ``y = MLP([e_1..e_F])`` over concatenated field embeddings (as in
    the Wide & Deep / YouTube DNN line of work; the BARS benchmark's "DNN")."""

    def __init__(self, schema: Schema, *, embedding_dim: int, embedding_init_std: float, mlp: MLPSpec, **training):
        super().__init__(schema, **training)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.dnn(self.embedding(batch).flatten(1)).squeeze(1)


class DeepFM(CTRModule):
    """DeepFM (Guo et al. 2017): ``y = y_FM + y_DNN`` with ``y_FM = w0 + sum_i w[x_i] +
    sum_{i<j} <e_i, e_j>`` and ``y_DNN = MLP([e_1..e_F])`` over the **same** embeddings ``e``.

    One lookup feeds both parts, so both train it. Our choices: first-order weights in their own
    1-d table (the paper's FM component reads them straight from the sparse features), and the
    DNN's output bias kept next to ``w0``.
    """

    def __init__(self, schema: Schema, *, embedding_dim: int, embedding_init_std: float, mlp: MLPSpec, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.fm = FMInteraction()
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        return self.linear(batch) + self.fm(embedded) + self.dnn(embedded.flatten(1)).squeeze(1)


class DCN(CTRModule):
    """Deep & Cross Network (Wang et al. 2017): with ``x0 = [e_1..e_F]``,
    ``y = w^T [CrossNet(x0); MLP(x0)] + b`` and cross layers ``x_{l+1} = x0 (x_l . w_l) + b_l + x_l``.

    Our choices: ``cross_layers`` 3; dense fields enter ``x0`` as ``v_d * x_d`` like every other
    field (the paper stacks raw normalised values).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        cross_layers: int,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        input_dim = schema.num_fields * embedding_dim
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.cross = CrossNetwork(input_dim, cross_layers)
        self.dnn = MLPSpec.of(mlp).build(input_dim, output_dim=None)
        self.head = nn.Linear(input_dim + self.dnn.output_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        return self.head(torch.cat([self.cross(x0), self.dnn(x0)], dim=1)).squeeze(1)


class CrossNet(CTRModule):
    """DCN's cross network alone (Wang et al. 2017; BARS's "CrossNet", FuxiCTR's DCN without its
    DNN): with ``x0 = [e_1..e_F]``, ``y = w^T x_L + b`` after ``L`` cross layers
    ``x_{l+1} = x0 (x_l . w_l) + b_l + x_l`` (see ``CrossNetwork``), a polynomial of degree
    ``L + 1`` in the embeddings. Our choices: as DCN's.
    """

    def __init__(self, schema: Schema, *, cross_layers: int, embedding_dim: int, embedding_init_std: float, **training):
        super().__init__(schema, **training)
        input_dim = schema.num_fields * embedding_dim
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.cross = CrossNetwork(input_dim, cross_layers)
        self.head = nn.Linear(input_dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.cross(self.embedding(batch).flatten(1))).squeeze(1)


class CINNet(CTRModule):
    """xDeepFM's compressed interaction network alone (Lian et al. 2018; BARS's "CIN", FuxiCTR's
    xDeepFM without its DNN): ``y = w0 + sum_i w[x_i] + w_cin^T CIN(e)`` over the field embeddings
    ``e`` (see ``CIN``). Our choices: as xDeepFM's; the CIN head has no bias (``w0`` is the model's
    one).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        cin_layer_sizes: Sequence[int],
        cin_split_half: bool,
        cin_bias: bool,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.cin = CIN(schema.num_fields, cin_layer_sizes, split_half=cin_split_half, bias=cin_bias)
        self.cin_head = nn.Linear(self.cin.output_dim, 1, bias=False)

    def logit(self, batch: Batch, embedded: torch.Tensor) -> torch.Tensor:
        """The linear and CIN parts' ``[B]`` logit of ``batch`` over its embeddings ``embedded``."""
        return self.linear(batch) + self.cin_head(self.cin(embedded)).squeeze(1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.logit(batch, self.embedding(batch))


class XDeepFM(CINNet):
    """xDeepFM (Lian et al. 2018): ``y = w0 + sum_i w[x_i] + w_cin^T CIN(e) + MLP([e_1..e_F])``,
    CIN and DNN on the same embeddings ``e`` (``CINNet`` plus an MLP).

    Our choices: CIN sizes 200-200-200 and ``split_half`` (see ``CIN``), without biases in its
    maps unless ``cin_bias``; the CIN head has no bias (``w0`` is the model's one).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        cin_layer_sizes: Sequence[int],
        cin_split_half: bool,
        cin_bias: bool,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(
            schema,
            cin_layer_sizes=cin_layer_sizes,
            cin_split_half=cin_split_half,
            cin_bias=cin_bias,
            embedding_dim=embedding_dim,
            embedding_init_std=embedding_init_std,
            **training,
        )
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        return self.logit(batch, embedded) + self.dnn(embedded.flatten(1)).squeeze(1)
