"""FinalMLP (Mao et al. 2023) and FinalNet (Zhu et al. 2023), from the authors of FuxiCTR and BARS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datamodules.schema import Batch, Schema
from models.base import CTRModule
from models.layers import BilinearFusion, FeatureGate, FeatureSelectionSpec, FieldGate, FinalBlockSpec, MLPSpec


class FinalMLP(CTRModule):
    """FinalMLP (Mao et al. 2023): two MLP streams over the flattened embeddings ``e = [e_1..e_F]``,
    ``y = BF(MLP_1(e * g_1), MLP_2(e * g_2))``.

    Stream ``s``'s feature-selection gate is ``g_s = 2 sigmoid(MLP_gs(c_s))``, ``c_s`` the embeddings
    of its context fields or, with none, a learned vector (see ``FeatureGate``); ``BF`` is the
    multi-head bilinear fusion ``w1^T o1 + w2^T o2 + sum_h o1_h^T W_h o2_h`` plus biases (see
    ``BilinearFusion``), whose heads must divide both streams' widths.

    Our choices, FuxiCTR's (so BARS's): each gate's context fields have an embedding table of their
    own, apart from ``e``'s (an id table: ``embedding_table_l2`` covers it, as FuxiCTR's embedding
    regulariser does); both gates have the same hidden layers; with ``feature_selection.enabled``
    off both streams read ``e`` itself.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int,
        embedding_init_std: float,
        mlp1: MLPSpec,
        mlp2: MLPSpec,
        feature_selection: FeatureSelectionSpec,
        num_heads: int,
        **training,
    ):
        super().__init__(schema, **training)
        input_dim = schema.num_fields * embedding_dim
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        selection = FeatureSelectionSpec.of(feature_selection)
        self.gates = None
        if selection.enabled:
            self.gates = nn.ModuleList(
                FeatureGate(
                    schema,
                    context,
                    selection.hidden_units,
                    input_dim,
                    embedding_dim,
                    init_std=embedding_init_std,
                    sparse=self.sparse_embeddings,
                )
                for context in (selection.stream1_context, selection.stream2_context)
            )
        self.mlp1 = MLPSpec.of(mlp1).build(input_dim, output_dim=None)
        self.mlp2 = MLPSpec.of(mlp2).build(input_dim, output_dim=None)
        self.fusion = BilinearFusion(self.mlp1.output_dim, self.mlp2.output_dim, num_heads)

    def forward(self, batch: Batch) -> torch.Tensor:
        flat = self.embedding(batch).flatten(1)
        inputs1 = inputs2 = flat
        if self.gates is not None:
            inputs1, inputs2 = (gate(batch, flat) for gate in self.gates)
        return self.fusion(self.mlp1(inputs1), self.mlp2(inputs2))


class FinalNet(CTRModule):
    """FinalNet (Zhu et al. 2023): FinalBlocks of factorized interaction layers (see ``FinalBlock``).

    ``block_type`` "1B": ``y = y_1 = w_1^T FinalBlock_1(G(e)) + b_1``; "2B": ``y = (y_1 + y_2) / 2``
    with a second block on the embeddings as they are, ``y_2 = w_2^T FinalBlock_2(e) + b_2`` (``block2``
    is unused under 1B). ``e = [e_1..e_F]``; ``G`` is the field gate ``[e; e * g]`` (``FieldGate``)
    with ``field_gate``, the identity without. ``block_logits`` gives ``[y_1, y_2]``.

    Objective: CTRModule's, the mean BCE of ``sigmoid(y)`` (plus its L2 terms), and under 2B a term
    ``BCE(p_b, p)`` for each block ``b`` whose ``distill`` is set: the mean BCE of the block's own
    prediction ``p_b = sigmoid(y_b)`` against the soft label ``p = sigmoid(y)``, detached (no gradient
    flows into it), so the block is pulled toward the averaged prediction. That is the paper's
    self-knowledge distillation between the two blocks, and FuxiCTR's, for both blocks at once: its 2B
    model adds both terms in FuxiCTR 2.0.2 (the "FINAL" model of BARS's Frappe_x1 run) and from 2.3.4
    on, but from 2.0.3 to 2.3.3 its training loop never called the model's own loss, so BARS's
    Criteo_x4 run (2.2.0) trained on the main BCE alone (``distill: false`` in that preset). 1B has
    nothing to distil and ignores the key. ``losses`` reports the main BCE as the data loss.

    Our choice: a ``residual_type`` and a ``distill`` per block (FuxiCTR's are one for both; the
    configs set both alike). FuxiCTR's: the field gate feeds block 1 only, and starts open (``W = 0``, ``c = 1``).
    """

    BLOCK_TYPES = ("1B", "2B")

    def __init__(
        self,
        schema: Schema,
        *,
        block_type: str,
        field_gate: bool,
        block1: FinalBlockSpec,
        block2: FinalBlockSpec,
        embedding_dim: int,
        embedding_init_std: float,
        **training,
    ):
        super().__init__(schema, **training)
        if block_type not in self.BLOCK_TYPES:
            raise ValueError(f"block_type {block_type!r}: expected one of {self.BLOCK_TYPES}")
        input_dim = schema.num_fields * embedding_dim
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.field_gate = FieldGate(schema.num_fields) if field_gate else None
        block1, block2 = FinalBlockSpec.of(block1), FinalBlockSpec.of(block2)
        self.block1 = block1.build(2 * input_dim if field_gate else input_dim)
        self.head1 = nn.Linear(self.block1.output_dim, 1)
        self.block2 = self.head2 = None
        self.distilled: tuple[int, ...] = ()  # the blocks whose predictions learn the averaged one
        if block_type == "2B":
            self.block2 = block2.build(input_dim)
            self.head2 = nn.Linear(self.block2.output_dim, 1)
            self.distilled = tuple(b for b, spec in enumerate((block1, block2)) if spec.distill)

    def block_logits(self, batch: Batch) -> torch.Tensor:
        """``[B, 1]`` (1B) or ``[B, 2]`` (2B): each block's logit ``y_b``."""
        embedded = self.embedding(batch)
        gated = embedded if self.field_gate is None else self.field_gate(embedded)
        logits = [self.head1(self.block1(gated.flatten(1)))]
        if self.block2 is not None:
            logits.append(self.head2(self.block2(embedded.flatten(1))))
        return torch.cat(logits, dim=1)

    @staticmethod
    def combined(logits: torch.Tensor) -> torch.Tensor:
        """``[B]``: the model's logit ``y`` from ``block_logits``."""
        return logits[:, 0] if logits.shape[1] == 1 else 0.5 * (logits[:, 0] + logits[:, 1])

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.combined(self.block_logits(batch))

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(objective, mean BCE)``: CTRModule's, plus the blocks' soft-label terms (see the class)."""
        logits = self.block_logits(batch)
        y = self.combined(logits)
        data_loss = F.binary_cross_entropy_with_logits(y, batch.y)
        objective = data_loss + self.penalty(batch)
        if self.distilled:
            soft = torch.sigmoid(y).detach()
            for block in self.distilled:
                objective = objective + F.binary_cross_entropy_with_logits(logits[:, block], soft)
        return objective, data_loss
