"""AFN's logarithmic transformation layer (Cheng, Shan and Zhang 2020): interactions of learned,
arbitrary orders as weighted sums in log space."""

from __future__ import annotations

import torch
from torch import nn

from models.layers.mlp import BatchNorm


class ChannelBatchNorm(BatchNorm):
    """``[B, C, L] -> [B, C, L]``: ``nn.BatchNorm1d(C)`` over a sequence input (each channel
    normalised over the batch and its ``L`` positions), with ``BatchNorm``'s thread-invariant
    statistics: the mean over the batch first, then over the positions."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats and self.momentum is not None):
            return nn.BatchNorm1d.forward(self, inputs)
        count = inputs.shape[0] * inputs.shape[2]
        if count < 2:
            raise ValueError(f"batch norm needs more than 1 value per channel when training, got {count}")
        mean = inputs.mean(0).mean(-1)
        centred = inputs - mean.unsqueeze(-1)
        var = centred.square().mean(0).mean(-1)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var, alpha=self.momentum * count / (count - 1))
        normalised = centred * torch.rsqrt(var + self.eps).unsqueeze(-1)
        return normalised * self.weight.unsqueeze(-1) + self.bias.unsqueeze(-1) if self.affine else normalised


class LogarithmicTransformation(nn.Module):
    """``[B, F, K] -> [B, N K]``: ``N`` logarithmic neurons, neuron ``j`` the elementwise product
    ``y_j = prod_i |e_i|^{w_ji} = exp(sum_i w_ji ln |e_i|)`` of the ``F`` field embeddings raised to
    learned powers (an interaction of order ``sum_i w_ji``), flattened.

    The logarithm needs positive inputs: each coordinate enters as ``max(|e|, floor)``, so a zero
    or tiny coordinate counts as ``floor`` (and passes no gradient). ``ln |e|`` is batch-normalised
    per field and ``y`` per neuron (``ChannelBatchNorm``), which keeps the exponentials in range.
    ``w`` is an unbiased ``nn.Linear(F, N)`` (torch's default initialisation).
    """

    def __init__(self, num_fields: int, num_neurons: int, floor: float):
        super().__init__()
        if num_neurons < 1 or not floor > 0:
            raise ValueError(f"need at least one neuron and a positive floor, got {num_neurons} and {floor}")
        self.floor = floor
        self.log_norm = ChannelBatchNorm(num_fields)
        self.powers = nn.Linear(num_fields, num_neurons, bias=False)
        self.exp_norm = ChannelBatchNorm(num_neurons)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        logs = self.log_norm(torch.log(embedded.abs().clamp(min=self.floor)))  # [B, F, K]
        neurons = torch.exp(self.powers(logs.transpose(1, 2)).transpose(1, 2))  # [B, N, K]
        return self.exp_norm(neurons).flatten(1)

    def output_dim(self, embedding_dim: int) -> int:
        return self.powers.out_features * embedding_dim
