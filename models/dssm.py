"""DSSM (Huang et al. 2013) in the two-tower form of CTR prediction."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import MLPSpec


def tower_fields(schema: Schema, item_fields: Optional[Sequence[str]]) -> tuple[list[int], list[int]]:
    """``(user positions, item positions)`` among the schema's embedded fields (sparse, then dense):
    the item tower's fields by name, every other field in the user tower; ``None``: the last field
    alone forms the item tower."""
    names = [field.name for field in schema.fields]
    items = [names[-1]] if item_fields is None else list(item_fields)
    unknown = [name for name in items if name not in names]
    if unknown or len(set(items)) != len(items) or not 0 < len(items) < len(names):
        raise ValueError(
            f"item_fields {items}: expected distinct fields of the schema {names}, at least one, not all of them"
        )
    return [i for i, name in enumerate(names) if name not in items], [names.index(name) for name in items]


class DSSM(CTRModule):
    """DSSM (Huang et al. 2013) as BARS runs it on CTR data: the fields split into a user and an item
    tower, ``u = MLP_u([e_f]_{f in user fields})`` and ``v = MLP_v([e_f]_{f in item fields})``, each
    ending in a linear layer of ``tower_dim`` units, and ``y = <u, v>``.

    The paper's towers read a query's and a document's word hashes and score their cosine; the CTR
    form (FuxiCTR's, whose runs BARS reports) reads the two sides' field embeddings and scores the
    inner product, without an activation after the towers' last layers. Our choices: ``item_fields``
    names the item tower's fields and every other field goes to the user tower, in schema order
    (with none named, the last field alone forms the item tower); one embedding table serves both.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        item_fields: Optional[Sequence[str]],
        user_tower: MLPSpec,
        item_tower: MLPSpec,
        tower_dim: int,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        users, items = tower_fields(schema, item_fields)
        self.register_buffer("user_fields", torch.tensor(users), persistent=False)
        self.register_buffer("item_fields", torch.tensor(items), persistent=False)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.user_tower = MLPSpec.of(user_tower).build(len(users) * embedding_dim, output_dim=tower_dim)
        self.item_tower = MLPSpec.of(item_tower).build(len(items) * embedding_dim, output_dim=tower_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        user = self.user_tower(embedded.index_select(1, self.user_fields).flatten(1))
        item = self.item_tower(embedded.index_select(1, self.item_fields).flatten(1))
        return (user * item).sum(dim=1)
