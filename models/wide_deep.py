"""Wide & Deep family: LR&DNN, FM&DNN (the DeepFM paper's baselines) and Wide&Deep with crosses.

Each wide part and the deep part own **separate** embeddings and are trained jointly; sharing
one embedding is what DeepFM changes.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import CrossProductLogit, FMInteraction, MLPSpec, all_sparse_pairs


class LRDNN(CTRModule):
    """LR&DNN (Wide & Deep, Cheng et al. 2016, with an LR wide part):
    ``y = w0 + sum_i w[x_i] + MLP([e_1..e_F])``; the DNN has its own embedding.

    ``cross_fields`` adds cross-product features to the wide part (``WideDeep``; none here).
    ``linear_bias`` False drops ``w0``, leaving the MLP's output bias the model's only one (as
    BARS's WideDeep, which is this model).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        linear_bias: bool,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        cross_fields: Union[str, Sequence[Sequence[str]]] = (),
        cross_buckets: int = 0,
        **training,
    ):
        super().__init__(schema, **training)
        pairs = cross_pairs(schema, cross_fields)
        self.linear = self.linear_logit(bias=linear_bias)
        self.crosses = CrossProductLogit(schema, pairs, cross_buckets, sparse=self.sparse_embeddings) if pairs else None
        self.dnn_embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        wide = self.linear(batch) if self.crosses is None else self.linear(batch) + self.crosses(batch)
        return wide + self.dnn(self.dnn_embedding(batch).flatten(1)).squeeze(1)


def cross_pairs(schema: Schema, cross_fields: Union[str, Sequence[Sequence[str]]]) -> list[tuple[str, str]]:
    """``"all"`` (every pair of sparse fields) or a list of ``[field_a, field_b]`` name pairs."""
    if isinstance(cross_fields, str):
        if cross_fields != "all":
            raise ValueError(f"cross_fields {cross_fields!r}: a list of field-name pairs or 'all'")
        return all_sparse_pairs(schema)
    return [tuple(str(name) for name in pair) for pair in cross_fields]


class FMDNN(CTRModule):
    """FM&DNN (Wide & Deep with an FM wide part, the DeepFM paper's baseline):
    ``y = FM(x; v) + MLP([e_1..e_F])`` with ``v`` and ``e`` **separate** tables of the same size."""

    def __init__(self, schema: Schema, *, embedding_dim: int, embedding_init_std: float, mlp: MLPSpec, **training):
        super().__init__(schema, **training)
        self.linear = self.linear_logit()
        self.fm_embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.fm = FMInteraction()
        self.dnn_embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * embedding_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        fm_logit = self.linear(batch) + self.fm(self.fm_embedding(batch))
        return fm_logit + self.dnn(self.dnn_embedding(batch).flatten(1)).squeeze(1)


class WideDeep(LRDNN):
    """Wide & Deep (Cheng et al. 2016): ``y = LR + sum_{(a,b) in crosses} w[cross(x_a, x_b)] +
    MLP([e_1..e_F])``: LR&DNN with cross-product features on the wide side.

    Our choices: ``cross_fields`` is a list of ``[field_a, field_b]`` name pairs or ``"all"`` (every
    pair of sparse fields, since no hand-picked crosses exist for an arbitrary schema); a pair's
    cross id is the exact product of the two local ids, folded modulo ``cross_buckets`` only when
    the pair has more combinations than that (``CrossProductLogit``).
    """

    def __init__(
        self, schema: Schema, *, cross_fields: Union[str, Sequence[Sequence[str]]], cross_buckets: int, **kwargs
    ):
        if not cross_pairs(schema, cross_fields):
            raise ValueError("Wide&Deep without cross features is LR&DNN: use model lr_dnn")
        super().__init__(schema, cross_fields=cross_fields, cross_buckets=cross_buckets, **kwargs)
