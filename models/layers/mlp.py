"""The multilayer perceptron every deep model ends in."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "prelu": nn.PReLU,
               "identity": nn.Identity}


class MLP(nn.Module):
    """``[B, input_dim] -> [B, output_dim]`` (or ``[B, hidden_units[-1]]`` when ``output_dim`` is None).

    Each hidden layer is Linear -> BatchNorm (if ``batch_norm``) -> activation -> Dropout, with
    ``dropout`` the probability of dropping a unit (torch's convention; the DeepFM paper quotes the
    keep probability, and at 0.5 the two agree). The output layer is a plain Linear.
    """

    def __init__(self, input_dim: int, hidden_units: Sequence[int], *, activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False, output_dim: Optional[int] = 1):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is a drop probability in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = input_dim
        for units in (int(u) for u in hidden_units):
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.output_dim = width
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)
