"""The multilayer perceptron every deep model ends in."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from models.layers.precision import LowPrecisionCompute
from models.spec import Spec

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "prelu": nn.PReLU, "identity": nn.Identity}


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` (same parameters, buffers and running-statistics rule) whose training-mode
    batch statistics are plain column means. Torch's fused CPU kernel sums in an order that depends
    on the thread count, and ``threads: auto`` changes that count mid-run: column means give the
    same bits at any count, so a run's numbers do not depend on the machine's load."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = at_least_float32(inputs)  # statistics in float32, also behind a bf16 linear layer
        if not (self.training and self.track_running_stats and self.momentum is not None):
            return super().forward(inputs)
        rows = inputs.shape[0]
        if rows < 2:
            raise ValueError(f"batch norm needs more than 1 row per batch when training, got {rows}")
        mean = inputs.mean(0)
        centred = inputs - mean
        var = centred.square().mean(0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var, alpha=self.momentum * rows / (rows - 1))
        normalised = centred * torch.rsqrt(var + self.eps)
        return normalised * self.weight + self.bias if self.affine else normalised


class LayerNorm(nn.LayerNorm):
    """``[..., D] -> [..., D]``: layer normalisation over the last dimension only,
    ``(x - mean) / sqrt(var + eps) * weight + bias``, with ``weight`` and ``bias`` of
    ``normalized_shape``: ``D`` alone, or ``(F, D)`` to give each of ``F`` rows its own gain and shift.

    Its statistics and their gradients are plain means and broadcast products: torch's fused CPU
    kernel sums the gain's and shift's gradients over rows in an order that depends on the thread
    count, which these keep fixed (the same bits at any count, as ``BatchNorm``).
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        centred = inputs - inputs.mean(dim=-1, keepdim=True)
        normalised = centred * torch.rsqrt(centred.square().mean(dim=-1, keepdim=True) + self.eps)
        return normalised * self.weight + self.bias if self.elementwise_affine else normalised


def hidden_stack(
    input_dim: int,
    hidden_units: Sequence[int],
    make_map: Callable[[int, int], nn.Module],
    *,
    activation: str,
    dropout: float,
    batch_norm: bool,
) -> tuple[list[nn.Module], int]:
    """``(layers, output width)`` of hidden layers ``map -> BatchNorm (if batch_norm) -> activation ->
    Dropout (if dropout)``, one per ``hidden_units`` entry, ``make_map(width_in, width_out)`` making
    each map (a ``nn.Linear`` in an MLP, a factorized interaction in a FinalBlock)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a drop probability in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = input_dim
    for units in (int(u) for u in hidden_units):
        layers.append(make_map(width, units))
        if batch_norm:
            layers.append(BatchNorm(units))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = units
    return layers, width


class MLP(LowPrecisionCompute, nn.Module):
    """``[B, input_dim] -> [B, output_dim]`` (or ``[B, hidden_units[-1]]`` when ``output_dim`` is None).

    Each hidden layer is Linear -> BatchNorm (if ``batch_norm``) -> activation -> Dropout, with
    ``dropout`` the probability of dropping a unit (torch's convention; the DeepFM paper quotes the
    keep probability, and at 0.5 the two agree). The output layer is a plain Linear.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_units: Sequence[int],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_dim: Optional[int] = 1,
    ):
        super().__init__()
        layers, width = hidden_stack(
            input_dim, hidden_units, nn.Linear, activation=activation, dropout=dropout, batch_norm=batch_norm
        )
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.output_dim = width
        self.layers = nn.Sequential(*layers)
        self.hidden_layers = len(layers) - (output_dim is not None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is None:
            return self.layers(inputs)
        with self.low_precision(inputs):
            hidden = self.layers[: self.hidden_layers](inputs)
        return self.layers[self.hidden_layers :](hidden.float())  # the output layer in float32


@dataclass(frozen=True)
class MLPSpec(Spec):
    """The hidden layers of a model's MLP, as ``conf/model/mlp/<name>.yaml`` gives them (``MLP``
    says what each field means): one argument for every model that ends in an MLP."""

    hidden_units: tuple[int, ...]
    activation: str
    dropout: float
    batch_norm: bool

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(int(units) for units in self.hidden_units))

    def build(self, input_dim: int, output_dim: Optional[int] = 1) -> MLP:
        return MLP(
            input_dim,
            self.hidden_units,
            activation=self.activation,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            output_dim=output_dim,
        )


class Dropout(nn.Dropout):
    """Inverted dropout, ``[*] -> [*]``: each unit is zeroed with probability ``p`` and the kept
    ones are scaled by ``1 / (1 - p)``; the identity in eval mode.

    Same distribution as ``nn.Dropout``, drawn ~10x faster on CPU: torch's Bernoulli sampler costs
    about 10 ns per unit, which at batch 4096 made DeepFM's three dropouts cost as much as its
    matrix multiplies. Here units take ``b``-bit lanes of 64-bit draws from the same seeded
    generator (seeded runs stay reproducible), unit dropped when its lane is below ``p * 2^b``:
    ``b`` is the fewest bits that express ``p`` exactly (1 bit for the paper's 0.5), or 16 bits
    with ``p`` rounded to a multiple of 2^-16 (off by < 1e-5) when no ``b <= 8`` does. Lanes of
    up to 4 bits become the scaled mask in one table look-up per byte of draws (see
    ``scaled_keep_mask``).
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        bits, drop_level = lane_bits(self.p)
        if not self.training or drop_level == 0:
            return inputs
        # torch.compile draws its own masks with a fused generator (and cannot trace random_)
        if self.inplace or drop_level >= 1 << bits or torch.compiler.is_compiling():
            return super().forward(inputs)
        return inputs * scaled_keep_mask(inputs.shape, bits, drop_level, inputs.dtype, inputs.device)


def lane_bits(p: float) -> tuple[int, int]:
    """``(b, level)`` with ``p ~= level / 2^b``: the fewest bits ``b`` in 1, 2, 4, 8 that express ``p``
    exactly, else ``b = 16`` and ``p`` rounded."""
    for bits in (1, 2, 4, 8):
        level = p * (1 << bits)
        if level == int(level):
            return bits, int(level)
    return 16, round(p * (1 << 16))


def lane_draws(count: int, bits: int, device: torch.device) -> torch.Tensor:
    """int64 draws holding ``count`` lanes of ``bits`` bits, from the default seeded generator."""
    words = torch.empty(math.ceil(count * bits / 64), dtype=torch.int64, device=device)
    return words.random_(-(1 << 63), None)  # uniform over all of int64: every bit is a fair coin


def keep_mask(shape: torch.Size, bits: int, drop_level: int, device: torch.device) -> torch.Tensor:
    """bool ``shape``: each unit kept with probability ``1 - drop_level / 2^bits``, independently.

    Each unit reads its own ``bits``-bit lane (``bits`` in 1, 2, 4, 8, 16) of 64-bit draws."""
    count = math.prod(shape)
    words = lane_draws(count, bits, device)
    if bits == 16:  # signed lanes, uniform over [-2^15, 2^15): shift the level alike
        return (words.view(torch.int16)[:count] >= drop_level - (1 << 15)).view(shape)
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=device)
    lanes = (words.view(torch.uint8).unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return (lanes.flatten()[:count] >= drop_level).view(shape)


def scaled_keep_mask(
    shape: torch.Size, bits: int, drop_level: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``keep_mask(shape, bits, drop_level)`` (the same draws, the same units kept) as ``dtype``
    values: ``2^b / (2^b - level)`` where kept, 0 where dropped.

    With lanes of at most 4 bits, each byte of the draws looks up its lanes' values in a
    256-row table: one gather writes the mask, where shifting out the lanes, comparing them and
    converting the result made five passes over it (~5x slower for the paper's p = 0.5)."""
    scale = (1 << bits) / ((1 << bits) - drop_level)
    if bits > 4:  # one or no lane per byte: a table saves nothing; bytes convert 2x faster than bool
        keep = keep_mask(shape, bits, drop_level, device)
        return keep.view(torch.uint8).to(dtype).mul_(scale)
    count = math.prod(shape)
    words = lane_draws(count, bits, device)
    table = _lane_values(bits, drop_level, scale, dtype, device)
    return table.index_select(0, words.view(torch.uint8).int()).view(-1)[:count].view(shape)


@functools.lru_cache(maxsize=None)
def _lane_values(bits: int, drop_level: int, scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[256, 8 / bits]``: row ``v`` holds the mask values of byte ``v``'s lanes, low bits first
    (``keep_mask``'s order). The scale is rounded as multiplying a ``dtype`` mask by a Python
    float rounds it: to float32 (float64 for float64), then to ``dtype``."""
    lanes = (torch.arange(256).unsqueeze(-1) >> torch.arange(0, 8, bits)) & ((1 << bits) - 1)
    kept = torch.tensor(scale, dtype=torch.promote_types(dtype, torch.float32)).to(dtype)
    return torch.where(lanes >= drop_level, kept, torch.zeros((), dtype=dtype)).to(device)
