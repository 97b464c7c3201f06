"""MaskNet (Wang et al. 2021): instance-guided masks in MaskBlocks, serial or parallel."""

from __future__ import annotations

from typing import Mapping

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import LayerNorm, MaskBlocks, MLPSpec


class MaskNet(CTRModule):
    """MaskNet (Wang, She and Zhang 2021): ``y = MLP(MaskBlocks(e, LN_EMB(e)))``, ``e`` the
    concatenated field embeddings, ``LN_EMB`` a layer norm of each field's vector (its own gain and
    shift per field) when ``embedding_layer_norm``, else the identity.

    Each MaskBlock is ``act(LN(W (mask(e) * x)))``, its mask ``W_2 relu(W_1 e + b_1) + b_2`` computed
    from the embeddings for the example (see ``MaskBlock``); ``form`` chains them (``"serial"``,
    SerMaskNet) or runs them side by side on ``LN_EMB(e)`` and concatenates (``"parallel"``,
    ParaMaskNet); see ``MaskBlocks``. ``mask_blocks`` holds the blocks' ``units`` (one width per
    block), ``reduction_ratio`` (the mask's hidden width over its output width) and ``layer_norm``
    (the ``LN`` inside each block). Our choices, FuxiCTR's: the blocks take ``mlp``'s activation and
    dropout, the MLP after them has ``mlp``'s hidden layers (none for SerMaskNet's plain output layer).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        form: str,
        mask_blocks: Mapping,
        embedding_layer_norm: bool,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        **training,
    ):
        super().__init__(schema, **training)
        spec = MLPSpec.of(mlp)
        width = schema.num_fields * embedding_dim
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.embedding_norm = LayerNorm((schema.num_fields, embedding_dim)) if embedding_layer_norm else None
        self.blocks = MaskBlocks(width, form=form, activation=spec.activation, dropout=spec.dropout, **mask_blocks)
        self.dnn = spec.build(self.blocks.output_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        normalised = embedded if self.embedding_norm is None else self.embedding_norm(embedded)
        return self.dnn(self.blocks(embedded.flatten(1), normalised.flatten(1))).squeeze(1)
