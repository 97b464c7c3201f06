"""The benchmark's workload: a Criteo-shaped schema, id rows, served by ``CTRDataModule``'s own
loader, and models built from the app's own configs."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from datamodules.cache import SplitArrays
from datamodules.ctr import batch_loader
from datamodules.sampling import ShuffledBatches
from datamodules.schema import Batch, Schema
from experiments.benchmark.multi import multi_rows, with_multi_field

DEFAULT_OPTIM = "lazy_adam"

# Criteo's 26 categorical cardinalities in the whole Kaggle train.txt (as commonly reported), C1..C26.
CRITEO_RAW_CARDINALITIES = (
    1460,
    583,
    10131227,
    2202608,
    305,
    24,
    12517,
    633,
    3,
    93145,
    5683,
    8351593,
    3194,
    27,
    14992,
    5461306,
    10,
    5652,
    2173,
    4,
    7046547,
    18,
    15,
    286181,
    105,
    142572,
)
# log_square buckets of Criteo's 13 integer fields (tens each; their exact counts barely matter here).
CRITEO_INTEGER_BUCKETS = (64, 100, 128, 48, 220, 100, 72, 64, 100, 8, 32, 56, 64)
ZIPF_EXPONENT = 1.2  # of the id frequencies within a field: a few head ids, a long tail
POSITIVE_RATE = 0.25


def criteo_schema(num_ids: int) -> Schema:
    """39 sparse fields, integers first, totalling about ``num_ids`` ids.

    A min-count trims the long-tailed fields most, so the categorical cardinalities are Criteo's
    raw ones capped at one common ceiling, chosen so that everything sums to ``num_ids``."""
    fixed = sum(CRITEO_INTEGER_BUCKETS)
    if num_ids < fixed + len(CRITEO_RAW_CARDINALITIES):
        raise ValueError(f"num_ids must be at least {fixed + len(CRITEO_RAW_CARDINALITIES)}, got {num_ids}")
    raw = np.array(CRITEO_RAW_CARDINALITIES)
    low, high = 1, int(raw.max())
    while low < high:  # the largest ceiling that keeps the total within num_ids
        ceiling = (low + high + 1) // 2
        low, high = (ceiling, high) if fixed + np.minimum(raw, ceiling).sum() <= num_ids else (low, ceiling - 1)
    fields = [(f"I{i + 1}", "numeric", v) for i, v in enumerate(CRITEO_INTEGER_BUCKETS)]
    fields += [(f"C{i + 1}", "categorical", int(v)) for i, v in enumerate(np.minimum(raw, low))]
    return Schema.build(fields)


def id_rows(schema: Schema, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x int32 [rows, F] global ids, y float32 [rows])``: Zipf-distributed ids per field (the
    encoder numbers values by frequency, so low local ids are the frequent ones); random labels."""
    rng = np.random.default_rng(seed)
    sizes = np.array([f.vocab_size for f in schema.sparse_fields])
    offsets = np.array([f.offset for f in schema.sparse_fields])
    local = (rng.zipf(ZIPF_EXPONENT, size=(rows, len(sizes))) - 1) % sizes
    x = (local + offsets).astype(np.int32)
    y = (rng.random(rows) < POSITIVE_RATE).astype(np.float32)
    return x, y


def split_loader(
    folder: Path,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    prefetch: int = 0,
    x_multi: Optional[np.ndarray] = None,
) -> Iterable[Batch]:
    """Writes ``x``, ``y`` (and ``x_multi``) as a cache split into ``folder`` and serves it with the loader of
    ``CTRDataModule.train_dataloader`` (memory-mapped, shuffled sorted slices), last partial batch dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    if x_multi is not None:
        np.save(folder / "x_multi.npy", x_multi)
    arrays = SplitArrays.open(folder)
    return batch_loader(
        arrays, ShuffledBatches(arrays.num_rows, batch_size, seed, drop_last=True), num_workers, prefetch=prefetch
    )


def endless(loader: Iterable[Batch]) -> Iterator[Batch]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


# -- models as run.py builds them ------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``"model[:optim[:precision]]"`` -> ``(model, optim, precision)``, defaulting to ``DEFAULT_OPTIM``
    and float32 (``"32"``): ``deepfm::bf16`` is DeepFM with the default optimiser in bf16."""
    model, optim, precision = (spec.split(":") + ["", ""])[:3]
    return model, optim or DEFAULT_OPTIM, precision or "32"


def spec_label(model: str, optim: str, precision: str) -> str:
    """The CSV's name of a measured configuration: ``model:optim``, ``:bf16`` appended when not float32."""
    return f"{model}:{optim}" + ("" if precision == "32" else f":{precision}")


def build_model(spec: str, schema: Schema, seed: int):
    """``(model, cfg)``: ``conf/model/<model>`` + ``conf/optim/<optim>`` instantiated like ``run.py``,
    at the spec's precision. FNN's FM pre-training is a separate stage and is left out
    (``pretrain_epochs=0``)."""
    from experiments.run.config import compose_config
    from experiments.run.train import build_model as build_run_model

    model, optim, precision = parse_spec(spec)
    overrides = [f"model={model}", f"optim={optim}", f"precision={precision}"]
    overrides += ["model.pretrain_epochs=0"] if model == "fnn" else []
    cfg = compose_config(overrides)
    torch.manual_seed(seed)
    return build_run_model(cfg, schema), cfg


def compiled(model: nn.Module, workload: "Workload") -> nn.Module:
    """``model``, compiled in place (``nn.Module.compile``) when the workload asks for it."""
    if workload.compile:
        model.compile()
    return model


@dataclass
class Workload:
    """What every measurement of one run shares."""

    num_ids: int
    rows: int
    batch_size: int
    threads: int
    warmup: int
    steps: int
    repeats: int
    seed: int = 0
    compile: bool = False
    multi_len: int = 0  # > 0: one more field, multi-valued, of up to this many ids per row


@contextmanager
def prepared(workload: Workload, num_workers: int = 0, prefetch: int = 0) -> Iterator[tuple[Schema, Iterable[Batch]]]:
    """Sets the threads; yields the schema and a loader over freshly written id rows (batches made
    in ``num_workers`` worker processes, or in the caller's if 0, ``prefetch`` ahead on a thread)."""
    torch.set_num_threads(workload.threads)
    schema = criteo_schema(workload.num_ids)
    x, y = id_rows(schema, workload.rows, workload.seed)
    x_multi = None
    if workload.multi_len:
        schema = with_multi_field(schema, workload.multi_len)
        x_multi = multi_rows(schema, workload.rows, workload.seed)
    with tempfile.TemporaryDirectory() as scratch:
        loader = split_loader(
            Path(scratch), x, y, workload.batch_size, workload.seed, num_workers, prefetch, x_multi=x_multi
        )
        yield schema, loader
