"""DLRM (Naumov et al. 2019): a bottom MLP for the dense values, dot interactions, a top MLP."""

from __future__ import annotations

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import ACTIVATIONS, DotInteraction, MLPSpec


class DLRM(CTRModule):
    """DLRM (Naumov et al. 2019): ``z = act(MLP_bottom(x_dense))``, ``y = MLP_top([z; <u_i, u_j>_{i<j}])``
    over the vectors ``u = [z, e_1..e_S]`` (``interaction="dot"``, the paper's; with
    ``self_interaction`` also each ``<u_i, u_i>``), or ``y = MLP_top([z, e_1..e_S])`` (``"cat"``,
    FuxiCTR's other option, a DNN over the vectors).

    Our choices: the bottom MLP reads the schema's dense (numeric) fields, ``Batch.x_dense``, and
    ends in a layer of ``K`` units with its activation (as the paper's code and FuxiCTR), so that
    ``z`` is one more ``K``-vector beside the sparse fields' embeddings; the dense fields get no
    embedding vector of their own. That is DLRM's division of the inputs: continuous values through
    an MLP, categories through tables. Where the schema has no dense field (Frappe, or Criteo with
    its integers bucketized, as FuxiCTR and BARS run it), there is no bottom MLP and no ``z``: the
    interactions are over the sparse fields' embeddings alone, which is what FuxiCTR's DLRM does
    with BARS's all-categorical Frappe_x1.
    """

    INTERACTIONS = ("dot", "cat")

    def __init__(
        self,
        schema: Schema,
        *,
        interaction: str,
        self_interaction: bool,
        embedding_dim: int,
        embedding_init_std: float,
        bottom_mlp: MLPSpec,
        top_mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        if interaction not in self.INTERACTIONS:
            raise ValueError(f"interaction {interaction!r}: expected one of {self.INTERACTIONS}")
        if self_interaction and interaction != "dot":
            raise ValueError("self_interaction adds each vector's dot product with itself: it needs interaction=dot")
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std, dense=False)
        self.bottom = None
        if schema.num_dense:
            spec = MLPSpec.of(bottom_mlp)
            self.bottom = nn.Sequential(
                spec.build(schema.num_dense, output_dim=embedding_dim), ACTIVATIONS[spec.activation]()
            )
        vectors = schema.num_fields - schema.num_dense + (self.bottom is not None)
        self.dot = DotInteraction(vectors, self_interaction) if interaction == "dot" else None
        if self.dot is None:
            top_inputs = vectors * embedding_dim
        else:
            top_inputs = self.dot.num_pairs + (embedding_dim if self.bottom is not None else 0)
        self.top = MLPSpec.of(top_mlp).build(top_inputs)

    def forward(self, batch: Batch) -> torch.Tensor:
        vectors = self.embedding(batch)
        if self.bottom is None:
            top_inputs = vectors.flatten(1) if self.dot is None else self.dot(vectors)
            return self.top(top_inputs).squeeze(1)
        if batch.x_dense is None:
            raise ValueError(f"the schema has {self.schema.num_dense} dense fields but batch.x_dense is None")
        dense = self.bottom(batch.x_dense)
        vectors = torch.cat([dense.unsqueeze(1), vectors], dim=1)
        top_inputs = vectors.flatten(1) if self.dot is None else torch.cat([dense, self.dot(vectors)], dim=1)
        return self.top(top_inputs).squeeze(1)
