"""What many test modules share: tiny schemas and batches, models built from their configs at
test sizes, and the app runner. Fixtures live in ``conftest.py``; these are plain functions."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Test sizes: embeddings of K, MLPs of HIDDEN without dropout; each model's other settings come
# from its config (conf/model/<name>.yaml) unless SMALL_KWARGS changes them too.
K, HIDDEN = 4, [8, 6]
SMALL_KWARGS = {
    "fnn": dict(pretrain_epochs=0),
    "wide_deep": dict(cross_buckets=10),
    "dnn": dict(batch_norm=True),
    "dcn": dict(cross_layers=2),
    "xdeepfm": dict(cin_layer_sizes=[4, 2]),
    "crossnet_v2": dict(cross=dict(layers=2, low_rank=None, num_experts=4)),
    "dcn_v2": dict(cross=dict(layers=2, low_rank=None, num_experts=4)),
    "autoint": dict(
        attention=dict(layers=2, dim=6, heads=2, residual=True, scale=False, layer_norm=False, dropout=0.0)
    ),
    # SENET 4 -> 4 -> 4: a single unit's relu often zeroes all but one field, and then no pair moves
    "fibinet": dict(senet={"reduction_ratio": 1, "squeeze": "mean"}),
    "masknet": dict(mask_blocks={"units": [6, 5], "reduction_ratio": 2, "layer_norm": True}),
    # context fields, so that step one moves the gates' first layers (a learned vector starts at zero)
    "finalmlp": dict(
        feature_selection=dict(enabled=True, stream1_context=["c0"], stream2_context=["c1"], hidden_units=[8, 6]),
        num_heads=2,
    ),
    "edcn": dict(
        towers=dict(
            layers=2,
            bridge="hadamard_product",
            regulation=True,
            temperature=2.0,
            batch_norm=False,
            activation="relu",
            dropout=0.0,
        )
    ),
}
SMALL_KWARGS["destine"] = dict(
    attention=dict(layers=2, dim=6, heads=2, residual="each_layer", scale=True, relu_before=False, dropout=0.0)
)
SMALL_KWARGS["autoint_plus"] = SMALL_KWARGS["autoint"]
SMALL_KWARGS["afm"] = dict(attention_dim=6)
# embeddings of about unit size: a fresh model's eval mode normalises with unit running statistics, where
# the powers of ln |e| for 0.01-sized embeddings reach e^10 and bf16's rounding of them swamps the logit
SMALL_KWARGS["afn"] = SMALL_KWARGS["afn_plus"] = dict(logarithmic_neurons=6, embedding_init_std=1.0)
SMALL_KWARGS.update(
    crossnet=SMALL_KWARGS["dcn"], cin=SMALL_KWARGS["xdeepfm"], dssm=dict(item_fields=["c1"], tower_dim=6)
)


def tiny_run(rows: int = 3000, epochs: int = 1, *extra: str) -> list[str]:
    """``run.py`` overrides for a run of seconds: ``rows`` synthetic rows, ``epochs`` epochs of
    512-row batches; ``extra`` overrides after them."""
    return [f"data.source.rows={rows}", "data.batch_size=512", f"trainer.max_epochs={epochs}", *extra]


def small_schema():
    from datamodules.schema import Schema

    return Schema.build([("c0", "categorical", 3), ("c1", "categorical", 5), ("n0", "numeric", 4)], dense=["d0"])


def random_batch(schema, size: int = 32, seed: int = 0):
    from datamodules.schema import Batch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.stack(
        [f.offset + torch.randint(0, f.vocab_size, (size,), generator=generator) for f in schema.sparse_fields], 1
    )
    dense = torch.randn(size, schema.num_dense, generator=generator) if schema.num_dense else None
    return Batch(ids, torch.randint(0, 2, (size,), generator=generator).float(), dense)


@functools.cache
def composed(name: str, optim: str = "adam") -> tuple[dict, dict]:
    """``(model, optim)`` settings of ``python run.py model=<name> optim=<optim>``, as plain dicts."""
    from experiments.run.config import compose_config

    cfg = compose_config([f"model={name}", f"optim={optim}"])
    return OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.optim, resolve=True)


def is_layer_spec(value) -> bool:
    """A setting that describes a stack of layers (``mlp``, FinalMLP's ``mlp1`` and ``mlp2``,
    FinalNet's blocks, ...): a mapping with ``hidden_units``."""
    return isinstance(value, dict) and "hidden_units" in value


def layer_specs(model: dict) -> list[dict]:
    return [value for value in model.values() if is_layer_spec(value)]


def model_settings(name: str, optimizer: str = "adam", **kwargs) -> dict:
    """The keyword arguments of ``models.MODELS[name]`` at test sizes: the model's config with
    ``SMALL_KWARGS`` and ``kwargs``, each routed to where it belongs (an ``OptimSpec`` field to
    ``optim``, an ``MLPSpec`` field to every layer spec that has it, anything else to the model).
    Every layer spec gets ``HIDDEN`` units and no dropout."""
    from models.layers import MLPSpec
    from models.optim import OptimSpec

    model, optim = (dict(part) for part in composed(name, optimizer))
    model.pop("_target_")
    if "embedding_dim" in model and name != "ffm":
        model["embedding_dim"] = K
    for key, spec in list(model.items()):
        if is_layer_spec(spec):
            model[key] = {**spec, "hidden_units": HIDDEN, **({"dropout": 0.0} if "dropout" in spec else {})}
    optim_keys, mlp_keys = {f.name for f in fields(OptimSpec)}, {f.name for f in fields(MLPSpec)}
    for key, value in {**SMALL_KWARGS.get(name, {}), **kwargs}.items():
        specs = [spec for spec in layer_specs(model) if key in spec]
        if key in optim_keys:
            optim[key] = value
        elif key in mlp_keys and specs:
            for spec in specs:
                spec[key] = value
        else:  # a copy: a later key may change a spec in it, and SMALL_KWARGS must stay as written
            model[key] = copy.deepcopy(value)
    return {**model, "optim": optim}


def build(name: str, schema, optimizer: str = "adam", **kwargs):
    """``models.MODELS[name]`` over ``schema`` at test sizes (see ``model_settings``), seeded."""
    import models

    torch.manual_seed(0)
    return models.MODELS[name](schema, **model_settings(name, optimizer, **kwargs))


def train_plain(model, batches, epochs):
    """A short plain-torch training loop (Lightning's overhead would dominate on this data)."""
    optimizer = model.build_optimizer()
    model.train()
    for _ in range(epochs):
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            model.losses(batch)[0].backward()
            optimizer.step()
    return model


def states_at_one_and_two_threads(name: str, schema, batch, steps: int = 3, **kwargs) -> list[dict]:
    """The state dicts of ``build(name, schema, **kwargs)`` after ``steps`` training steps on ``batch``
    at one thread and at two, from the same seed: equal bit for bit when the step does not depend on
    the thread count."""
    threads, states = torch.get_num_threads(), []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            model = build(name, schema, **kwargs)
            optimizer = model.build_optimizer()
            for _ in range(steps):
                optimizer.zero_grad()
                model.losses(batch)[0].backward()
                optimizer.step()
            states.append({k: v.clone() for k, v in model.state_dict().items()})
    finally:
        torch.set_num_threads(threads)
    return states


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """float64 normal draws from their own generator, for layers checked against loops."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def randomised(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """``module`` in float64 with every parameter drawn anew (no zeros, ones or identities left from
    its start), parameter ``i`` from seed ``seed + i``."""
    module = module.double()
    with torch.no_grad():
        for index, parameter in enumerate(module.parameters()):
            parameter.copy_(randn(*parameter.shape, seed=seed + index))
    return module


def run_app(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python run.py <args>`` in a fresh process (``env`` added to this one's), its output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
