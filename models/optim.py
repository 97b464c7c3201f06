"""Optimisers by name, including FTRL-Proximal (McMahan et al. 2013), which the DeepFM paper
used for LR."""
from __future__ import annotations

from typing import Iterable

import torch
from torch.optim import Optimizer

# The constructor arguments of CTRModule that only one optimiser reads.
OPTIMIZER_KEYS: dict[str, tuple[str, ...]] = {
    "adam": ("adam_beta1", "adam_beta2", "adam_eps"),
    "adagrad": ("adagrad_initial_accumulator", "adagrad_eps"),
    "sgd": ("sgd_momentum",),
    "ftrl": ("ftrl_beta", "ftrl_l1", "ftrl_l2"),
}
# Optimisers whose update accepts the sparse gradients of ``sparse_embeddings=True`` tables.
SPARSE_OPTIMIZERS = ("adagrad", "sgd", "ftrl")


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, **options) -> Optimizer:
    """``name`` in ``OPTIMIZER_KEYS``; ``options`` holds (at least) that optimiser's keys."""
    if name not in OPTIMIZER_KEYS:
        raise ValueError(f"optimizer {name!r}: expected one of {sorted(OPTIMIZER_KEYS)}")
    missing = [key for key in OPTIMIZER_KEYS[name] if key not in options]
    if missing:
        raise ValueError(f"optimizer {name!r} needs {missing}")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(options["adam_beta1"], options["adam_beta2"]),
                                eps=options["adam_eps"])
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=options["adagrad_eps"],
                                   initial_accumulator_value=options["adagrad_initial_accumulator"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=options["sgd_momentum"])
    return FTRL(params, lr=lr, beta=options["ftrl_beta"], l1=options["ftrl_l1"], l2=options["ftrl_l2"])


class FTRL(Optimizer):
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
            raise ValueError(f"FTRL needs lr > 0 and beta, l1, l2 >= 0; got lr={lr}, beta={beta}, "
                             f"l1={l1}, l2={l2}")
        super().__init__(params, dict(lr=lr, beta=beta, l1=l1, l2=l2))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha, beta, l1, l2 = group["lr"], group["beta"], group["l1"], group["l2"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["n"] = torch.zeros_like(param)
                    state["z"] = -(param * (beta / alpha + l2) + torch.sign(param) * l1)
                z, n = state["z"], state["n"]
                grad = param.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    new_w, new_z, new_n = _ftrl_update(param[rows], values, z[rows], n[rows],
                                                       alpha, beta, l1, l2)
                    param.index_copy_(0, rows, new_w)
                    z.index_copy_(0, rows, new_z)
                    n.index_copy_(0, rows, new_n)
                else:
                    new_w, new_z, new_n = _ftrl_update(param, grad, z, n, alpha, beta, l1, l2)
                    param.copy_(new_w)
                    z.copy_(new_z)
                    n.copy_(new_n)
        return loss


def _ftrl_update(w, g, z, n, alpha, beta, l1, l2):
    """One FTRL-Proximal step on matching slices; returns the new ``(w, z, n)``."""
    n_new = n + g * g
    sigma = (n_new.sqrt() - n.sqrt()) / alpha
    z_new = z + g - sigma * w
    shrunk = z_new - torch.sign(z_new) * l1
    w_new = torch.where(z_new.abs() <= l1, torch.zeros_like(w),
                        -shrunk / ((beta + n_new.sqrt()) / alpha + l2))
    return w_new, z_new, n_new
