"""DCN-V2 (Wang et al. 2021) and its cross network alone, CrossNet-V2."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import CrossSpec, MLPSpec


class DCNV2(CTRModule):
    """DCN-V2 (Wang et al. 2021): with ``x0 = [e_1..e_F]`` and cross layers
    ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` (a full matrix ``W_l``, or a mixture of low-rank
    experts: see ``CrossSpec``), ``structure`` combines the cross network with MLPs:

    - ``crossnet_only``: ``y = w^T CrossNet(x0) + b``;
    - ``stacked``: ``y = w^T stacked_mlp(CrossNet(x0)) + b``;
    - ``parallel``: ``y = w^T [CrossNet(x0); mlp(x0)] + b``;
    - ``stacked_parallel``: ``y = w^T [stacked_mlp(CrossNet(x0)); mlp(x0)] + b``.

    The paper's two structures are stacked and parallel; crossnet_only and stacked_parallel are
    FuxiCTR's (BARS's "CrossNetv2" is crossnet_only). An MLP the structure does not use is not built
    and may be None. Our choice: dense fields enter ``x0`` as ``v_d * x_d`` like every other field.
    """

    STRUCTURES = ("crossnet_only", "stacked", "parallel", "stacked_parallel")

    def __init__(
        self,
        schema: Schema,
        *,
        structure: str,
        cross: CrossSpec,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: Optional[MLPSpec],
        stacked_mlp: Optional[MLPSpec],
        **training,
    ):
        super().__init__(schema, **training)
        self._build(structure, CrossSpec.of(cross), embedding_dim, embedding_init_std, mlp, stacked_mlp)

    def _build(
        self,
        structure: str,
        cross: CrossSpec,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: Optional[MLPSpec],
        stacked_mlp: Optional[MLPSpec],
    ) -> None:
        if structure not in self.STRUCTURES:
            raise ValueError(f"structure {structure!r}: expected one of {self.STRUCTURES}")
        input_dim = self.schema.num_fields * embedding_dim
        self.structure = structure
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.cross = cross.build(input_dim)
        self.stacked = self._mlp(stacked_mlp, "stacked_mlp", input_dim) if "stacked" in structure else None
        self.dnn = self._mlp(mlp, "mlp", input_dim) if "parallel" in structure else None
        head_dim = self.stacked.output_dim if self.stacked is not None else input_dim
        self.head = nn.Linear(head_dim + (self.dnn.output_dim if self.dnn is not None else 0), 1)

    def _mlp(self, spec: Optional[MLPSpec], name: str, input_dim: int) -> nn.Module:
        if spec is None:
            raise ValueError(f"structure {self.structure!r} needs {name}")
        return MLPSpec.of(spec).build(input_dim, output_dim=None)

    def forward(self, batch: Batch) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        hidden = self.cross(x0)
        if self.stacked is not None:
            hidden = self.stacked(hidden)
        if self.dnn is not None:
            hidden = torch.cat([hidden, self.dnn(x0)], dim=1)
        return self.head(hidden).squeeze(1)


class CrossNetV2(DCNV2):
    """DCN-V2's cross network alone (``structure="crossnet_only"``, see ``DCNV2``):
    ``y = w^T CrossNet(x0) + b``, BARS's "CrossNetv2"."""

    def __init__(self, schema: Schema, *, cross: CrossSpec, embedding_dim: int, embedding_init_std: float, **training):
        # past DCNV2's constructor to CTRModule's, so that a checkpoint's hyperparameters are this
        # constructor's arguments alone (Lightning saves every constructor's in the chain, and
        # structure="crossnet_only" given back to this one would be given twice)
        super(DCNV2, self).__init__(schema, **training)
        self._build("crossnet_only", CrossSpec.of(cross), embedding_dim, embedding_init_std, None, None)
