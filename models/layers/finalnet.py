"""FinalNet's layers (Zhu et al. 2023): the field gate and the FinalBlock of factorized interaction layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers.mlp import hidden_stack
from models.layers.precision import LowPrecisionCompute
from models.spec import Spec

RESIDUAL_TYPES = ("concat", "sum")


class FieldGate(nn.Module):
    """``[B, F, K] -> [B, 2F, K]``: ``[e; e * g]`` with ``g[:, i, :] = sum_j W[i, j] e[:, j, :] + c[i]``.

    Each field's gate mixes every field's embedding, per embedding dimension; the gated copies are
    stacked under the embeddings themselves. ``W`` starts at zero and ``c`` at one, so every gate
    starts open (1): FuxiCTR's start. They are plain parameters, not an ``nn.Linear``, so that
    ``init.linear`` (which redraws every linear map) leaves that start alone, as FuxiCTR's own
    initialisation does.
    """

    def __init__(self, num_fields: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_fields, num_fields))
        self.bias = nn.Parameter(torch.ones(num_fields))

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        gates = F.linear(embedded.transpose(1, 2), self.weight, self.bias).transpose(1, 2)  # [B, F, K]
        return torch.cat([embedded, embedded * gates], dim=1)


class FactorizedInteraction(nn.Module):
    """``[B, D_in] -> [B, D_out]``: a linear map whose output is split in halves ``u`` and ``v``
    (``[u, v] = W x + b``), then ``[u, u * v]`` (``residual_type="concat"``: ``W`` is
    ``D_out x D_in``, as a plain linear layer's, and ``D_out`` must be even) or ``u + u * v``
    (``"sum"``: ``W`` is ``2 D_out x D_in``).

    The product of two linear maps of the input makes each layer raise the degree of the
    interactions it can express, without any activation between layers.
    """

    def __init__(self, input_dim: int, output_dim: int, residual_type: str):
        super().__init__()
        if residual_type not in RESIDUAL_TYPES:
            raise ValueError(f"residual_type {residual_type!r}: expected one of {RESIDUAL_TYPES}")
        if residual_type == "concat" and output_dim % 2:
            raise ValueError(f"a concat factorized interaction needs an even width, got {output_dim}")
        self.residual_type = residual_type
        self.linear = nn.Linear(input_dim, output_dim if residual_type == "concat" else 2 * output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.linear(x).chunk(2, dim=-1)
        if self.residual_type == "concat":
            return torch.cat([u, u * v], dim=-1)
        return u + u * v


class FinalBlock(LowPrecisionCompute, nn.Module):
    """``[B, input_dim] -> [B, hidden_units[-1]]``: an MLP whose linear layers are
    ``FactorizedInteraction`` layers. Each layer is FactorizedInteraction -> BatchNorm (if
    ``batch_norm``) -> activation -> Dropout (drop probability ``dropout``), FuxiCTR's order."""

    def __init__(
        self,
        input_dim: int,
        hidden_units: Sequence[int],
        *,
        activation: str,
        dropout: float,
        batch_norm: bool,
        residual_type: str,
    ):
        super().__init__()
        if not hidden_units:
            raise ValueError("a FinalBlock needs at least one layer")
        layers, width = hidden_stack(
            input_dim,
            hidden_units,
            lambda width, units: FactorizedInteraction(width, units, residual_type),
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
        )
        self.output_dim = width
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is None:
            return self.layers(inputs)
        with self.low_precision(inputs):
            hidden = self.layers(inputs)
        return hidden.float()  # the heads after the block compute in float32


@dataclass(frozen=True)
class FinalBlockSpec(Spec):
    """One FinalBlock as ``conf/model/finalnet.yaml`` gives it (``FinalBlock`` says what each field
    means), and ``distill``, which the block itself does not read: whether FinalNet 2B also trains
    this block's own prediction toward the averaged one (see ``models.FinalNet``)."""

    hidden_units: tuple[int, ...]
    activation: str
    dropout: float
    batch_norm: bool
    residual_type: str
    distill: bool

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(int(units) for units in self.hidden_units))

    def build(self, input_dim: int) -> FinalBlock:
        return FinalBlock(
            input_dim,
            self.hidden_units,
            activation=self.activation,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            residual_type=self.residual_type,
        )
