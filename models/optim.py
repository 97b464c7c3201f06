"""Optimisers by name, including FTRL-Proximal (McMahan et al. 2013), which the DeepFM paper
used for LR, and a lazy (row-sparse) Adam for large id tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
from torch.optim import Optimizer

from models.spec import Spec


@dataclass(frozen=True)
class OptimSpec(Spec):
    """How a model is trained, as ``conf/optim/<name>.yaml`` gives it: one object for ``CTRModule``.

    - ``name``: a key of ``OPTIMIZERS``; ``lr`` its learning rate (FTRL's alpha);
      ``options``: the optimiser class's own keyword arguments (Adam's ``betas``, ``eps``, ...);
    - ``sparse_embeddings``: id tables get sparse gradients, so a step updates only the rows its
      batch read (optimisers in ``SPARSE_OPTIMIZERS`` only);
    - the four L2 terms of the objective (their two forms are described in ``CTRModule``); 0 is off.

    Adding an optimiser is one entry in ``OPTIMIZERS`` (and ``SPARSE_OPTIMIZERS`` if it takes sparse
    gradients) plus its config file.
    """

    name: str
    lr: float
    options: Mapping[str, Any] = field(default_factory=dict)
    sparse_embeddings: bool = False
    embedding_l2: float = 0.0
    weight_l2: float = 0.0
    embedding_table_l2: float = 0.0
    net_l2: float = 0.0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.name!r}: expected one of {sorted(OPTIMIZERS)}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be > 0, got {self.lr}")
        if self.sparse_embeddings and self.name not in SPARSE_OPTIMIZERS:
            raise ValueError(
                f"sparse_embeddings=True needs an optimizer with a sparse update {SPARSE_OPTIMIZERS}, not {self.name!r}"
            )
        if self.sparse_embeddings and self.embedding_table_l2:
            raise ValueError(
                "embedding_table_l2 penalises every row of the id tables at every step, so their "
                "gradients are dense: it needs sparse_embeddings=False (e.g. optim=adam)"
            )
        # YAML gives sequences as lists; the optimisers keep tuples (Adam's betas)
        object.__setattr__(
            self,
            "options",
            {key: tuple(value) if isinstance(value, list) else value for key, value in dict(self.options).items()},
        )

    def build(self, params: Iterable[torch.nn.Parameter]) -> Optimizer:
        return OPTIMIZERS[self.name](params, lr=self.lr, **self.options)


class PerParameterOptimizer(Optimizer):
    """An optimiser defined by its update of one parameter that has a gradient:
    ``update(param, grad, group, state)``, where ``state`` is that parameter's (empty at first)."""

    def update(self, param: torch.Tensor, grad: torch.Tensor, group: dict, state: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self.update(param, param.grad, group, self.state[param])
        return loss


class FTRL(PerParameterOptimizer):
    """FTRL-Proximal with per-coordinate learning rates (McMahan et al. 2013, Algorithm 1).

    Per coordinate, with gradient g, ``lr`` = alpha:
    ``sigma = (sqrt(n + g^2) - sqrt(n)) / alpha;  z += g - sigma * w;  n += g^2``
    ``w = 0 if |z| <= l1 else -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)``.
    Accepts sparse gradients (only the coordinates of the batch's rows move). Our choice: the
    state starts at ``n = 0`` and the ``z`` whose closed-form weight is the parameter's current
    value, so a randomly initialised embedding is kept rather than snapped to zero on the first
    step (for zero-initialised weights that is the paper's ``z = 0``).
    """

    def __init__(self, params, lr: float = 0.1, beta: float = 1.0, l1: float = 0.0, l2: float = 0.0):
        if lr <= 0 or beta < 0 or l1 < 0 or l2 < 0:
            raise ValueError(f"FTRL needs lr > 0 and beta, l1, l2 >= 0; got lr={lr}, beta={beta}, l1={l1}, l2={l2}")
        super().__init__(params, dict(lr=lr, beta=beta, l1=l1, l2=l2))

    def update(self, param, grad, group, state) -> None:
        alpha, beta, l1, l2 = group["lr"], group["beta"], group["l1"], group["l2"]
        if not state:
            state["n"] = torch.zeros_like(param)
            state["z"] = -(param * (beta / alpha + l2) + torch.sign(param) * l1)
        z, n = state["z"], state["n"]
        if grad.is_sparse:
            rows, values = distinct_rows(grad)
            updated = _ftrl_update(param[rows], values, z[rows], n[rows], alpha, beta, l1, l2)
            for full, part in zip((param, z, n), updated):
                full.index_copy_(0, rows, part)
        else:
            for full, part in zip((param, z, n), _ftrl_update(param, grad, z, n, alpha, beta, l1, l2)):
                full.copy_(part)


class LazyAdam(PerParameterOptimizer):
    """Adam (Kingma & Ba 2015) that moves a sparse-gradient parameter only at its gradient's rows.

    Dense gradients get torch's Adam update exactly (no weight decay, no amsgrad). For a sparse
    gradient (id tables with ``sparse_embeddings=True``) the rows of the batch take that same
    update; the other rows, and their moment estimates, are left untouched instead of decaying,
    which is the "lazy Adam" of TensorFlow Addons and torch's ``SparseAdam``. Bias correction uses
    the global step count. A step then costs O(rows in the batch), not O(vocabulary): on a
    Criteo-sized table (1M ids x 11 floats) dense Adam spends ~10x the rest of DeepFM's step.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if lr <= 0 or eps < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(
                f"LazyAdam needs lr > 0, eps >= 0 and betas in [0, 1); got lr={lr}, betas={betas}, eps={eps}"
            )
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    def update(self, param, grad, group, state) -> None:
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step_size = group["lr"] / (1 - beta1 ** state["step"])
        correction2_sqrt = math.sqrt(1 - beta2 ** state["step"])
        tensors = (param, state["exp_avg"], state["exp_avg_sq"])
        if not grad.is_sparse:
            _adam_update(*tensors, grad, beta1, beta2, step_size, correction2_sqrt, group["eps"])
            return
        # the batch's rows, updated as copies and written back (index_copy_ is ~10x cheaper than
        # an index_add_ with a step size on CPU)
        rows, values = distinct_rows(grad)
        row_tensors = [t.index_select(0, rows) for t in tensors]
        _adam_update(*row_tensors, values, beta1, beta2, step_size, correction2_sqrt, group["eps"])
        for full, part in zip(tensors, row_tensors):
            full.index_copy_(0, rows, part)


def distinct_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows [U], values [U, ...])`` of a sparse row gradient, each row once.

    ``RowSparseEmbedding`` makes gradients whose rows are already distinct and sorted, but autograd
    drops the coalesced flag when it stores ``.grad``; checking the order (O(U)) spares the sort
    of ``coalesce``, which is only called for gradients that need it."""
    rows = grad._indices()[0]
    if not grad.is_coalesced() and not bool((rows[1:] > rows[:-1]).all()):
        grad = grad.coalesce()
        rows = grad._indices()[0]
    return rows, grad._values()


def _adam_update(param, exp_avg, exp_avg_sq, grad, beta1, beta2, step_size, correction2_sqrt, eps) -> None:
    """One Adam step, in place on matching tensors (whole parameters or gathered rows), in
    torch.optim.Adam's arithmetic."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-step_size)


def _ftrl_update(w, g, z, n, alpha, beta, l1, l2):
    """One FTRL-Proximal step on matching slices; returns the new ``(w, z, n)``."""
    n_new = n + g * g
    sigma = (n_new.sqrt() - n.sqrt()) / alpha
    z_new = z + g - sigma * w
    shrunk = z_new - torch.sign(z_new) * l1
    w_new = torch.where(z_new.abs() <= l1, torch.zeros_like(w), -shrunk / ((beta + n_new.sqrt()) / alpha + l2))
    return w_new, z_new, n_new


# The optimisers by config name; each takes ``(params, lr=..., **OptimSpec.options)``.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adam": torch.optim.Adam,
    "lazy_adam": LazyAdam,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
    "ftrl": FTRL,
}
# Optimisers whose update accepts the sparse gradients of ``sparse_embeddings=True`` tables.
SPARSE_OPTIMIZERS = ("lazy_adam", "adagrad", "sgd", "ftrl")
