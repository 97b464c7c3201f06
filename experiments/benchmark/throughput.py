"""Training-throughput benchmark: samples/s, % of roofline, Lightning against a bare loop, data rates.

    python -m experiments.benchmark                                 # the defaults below, a few minutes
    python -m experiments.benchmark --models deepfm --steps 20 --repeats 7
    python -m experiments.benchmark --models deepfm,deepfm:adam     # row-sparse against dense Adam
    python -m experiments.benchmark --encode-rows 10000000          # the 10M-row encoding target

Models train in the DeepFM paper's Criteo setting: 39 fields (13 bucketized integers, 26
categoricals), a vocabulary of ``--num-ids`` ids (about Criteo's after min-count), each model's
``conf/model`` settings (embedding 10, DNN 400-400-400, dropout 0.5) and ``conf/optim/<optim>``.
Batches come from in-memory id arrays through the datamodule's own batching (a sorted slice of a
shuffled order per batch, one vectorised gather), so the data step is part of every training step.

For each model, in a fresh process (so that its peak RSS is its own), after ``--warmup`` steps:
``--repeats`` times, first the roofline, then ``--steps`` training steps. The roofline is this
machine's FLOP/s for a matmul shaped like the model's largest ``nn.Linear`` at this batch size
(``[B, in] x [in, out]``, ``F.linear``, in bf16 for a ``:bf16`` spec); the model's achieved FLOP/s
is its matmul FLOPs per sample (counted by ``torch.utils.flop_counter`` over one forward + backward:
the dense layers, CIN's filters, IPNN's Gram matrices) times training samples/s. ``% roofline`` is
the median over repeats of their ratio, so a burst of load on the shared machine hits both sides
of a ratio. Evaluation samples/s is forward-only in eval mode.

Lightning against a bare loop (``--lightning-models``): the real ``pl.Trainer`` as ``run.py``
builds it (``conf/trainer/<trainer>``, the CSV logger, ModelCheckpoint, EarlyStopping, EpochHistory)
against ``for batch in loader: zero_grad; backward; step`` on the same model class and batches, plus
one Trainer run per setting in ``TRAINER_VARIANTS`` to show what each costs. Validation is off: the
subject is the training step (data, forward, backward, optimiser, logging).

Data: the in-memory loader's samples/s (the one feeding training above) and, through
``experiments.benchmark.data``, a Criteo-format TSV of ``--encode-rows`` synthetic rows encoded into the
cache (rows/s, peak RSS) and read back by ``CTRDataModule`` (shuffled batches of 4096, samples/s).

The command line is ``experiments.benchmark.__main__``; the report ``experiments.benchmark.report``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from datamodules.schema import Batch, Schema
from experiments.benchmark.workload import Workload, build_model, compiled, endless, parse_spec, prepared
from experiments.run.config import REPO
from measures.environment import peak_rss_mib
from models.layers.precision import PRECISIONS

# Trainer settings whose per-step cost is reported: (label, overrides of conf/trainer).
TRAINER_VARIANTS = (
    ("deterministic=false", {"deterministic": False}),
    ("enable_progress_bar=false", {"enable_progress_bar": False}),
    ("log_every_n_steps=1", {"log_every_n_steps": 1}),
)


def largest_linear_shape(model: nn.Module, batch: Batch) -> Optional[tuple[int, int, int]]:
    """``(rows, in_features, out_features)`` of the ``nn.Linear`` with the most multiply-adds in a
    forward pass (the first of equals), rows being every leading dimension of its input (the batch,
    or batch x K for CIN's filters). The largest, not the first: a model whose first layer is small
    (FinalMLP's gates read one field) would get a roofline far below its main layers' rate."""
    shapes: list[tuple[int, int, int]] = []

    def record(layer, inputs, output):
        shapes.append((inputs[0].numel() // layer.in_features, layer.in_features, layer.out_features))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return max(shapes, key=lambda shape: shape[0] * shape[1] * shape[2]) if shapes else None


def matmul_flops_per_sample(model, batch: Batch) -> float:
    """Matrix-multiply FLOPs of one training step (forward + backward) per example."""
    with FlopCounterMode(display=False) as counter:
        model.losses(batch)[0].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch.size


def matmul_rate(shape: tuple[int, int, int], seconds: float = 0.25, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of ``F.linear`` on ``[rows, in] x [in, out]`` (+ bias) in ``dtype``, repeated for ~``seconds``."""
    rows, fan_in, fan_out = shape
    x, weight, bias = (torch.randn(*size, dtype=dtype) for size in ((rows, fan_in), (fan_out, fan_in), (fan_out,)))
    F.linear(x, weight, bias)
    calls, started = 0, time.perf_counter()
    while True:
        F.linear(x, weight, bias)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 3:
            return 2.0 * rows * fan_in * fan_out * calls / elapsed


def timed_steps(step: Callable[[Batch], None], batches: Iterator[Batch], steps: int) -> float:
    """Seconds for ``steps`` calls of ``step``, fetching each batch inside the clock."""
    started = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    return time.perf_counter() - started


def bare_training_step(model, optimizer) -> Callable[[Batch], None]:
    """The plain loop's body: zero_grad, forward, backward, step."""

    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        model.losses(batch)[0].backward()
        optimizer.step()

    return step


def evaluation_step(model) -> Callable[[Batch], None]:
    def step(batch: Batch) -> None:
        with torch.inference_mode():
            model(batch)

    return step


def measure_model(spec: str, workload: Workload) -> dict:
    """Throughput and roofline of one ``model[:optim]`` (runs in its own process)."""
    with prepared(workload) as (schema, loader):
        return _measure_model(spec, workload, schema, loader)


def _measure_model(spec: str, workload: Workload, schema: Schema, loader: DataLoader) -> dict:
    # probes first: dynamo gives up for good on a frame it first meets under a dispatch mode
    model, _ = build_model(spec, schema, workload.seed)
    probe = next(iter(loader))
    shape = largest_linear_shape(model, probe)
    flops = matmul_flops_per_sample(model, probe)
    compiled(model, workload)
    optimizer = model.build_optimizer()
    batches = endless(loader)
    name, optim, precision = parse_spec(spec)  # the roofline is a matmul's in the dtype the dense layers use
    train, evaluate = bare_training_step(model, optimizer), evaluation_step(model)
    model.train()
    warmup_seconds = timed_steps(train, batches, workload.warmup)
    train_seconds, rooflines, fractions = [], [], []
    for _ in range(workload.repeats):
        roofline = matmul_rate(shape, dtype=PRECISIONS[precision] or torch.float32) if shape else float("nan")
        timed_steps(train, batches, 1)  # the matmuls evicted the step's working set: warm it again
        seconds = timed_steps(train, batches, workload.steps)
        train_seconds.append(seconds)
        rooflines.append(roofline)
        fractions.append(flops * workload.steps * workload.batch_size / seconds / roofline)
    model.eval()
    timed_steps(evaluate, batches, 2)
    eval_seconds = [timed_steps(evaluate, batches, workload.steps) for _ in range(workload.repeats)]
    loader_seconds = [timed_steps(lambda batch: None, batches, workload.steps) for _ in range(workload.repeats)]
    samples = workload.steps * workload.batch_size
    return {
        "model": name,
        "optim": optim,
        "precision": precision,
        "params": sum(p.numel() for p in model.parameters()),
        "roofline_layer": list(shape) if shape else None,
        "mflop_per_sample": flops / 1e6,
        "warmup_s": warmup_seconds,
        "train_samples_per_s": samples / statistics.median(train_seconds),
        "eval_samples_per_s": samples / statistics.median(eval_seconds),
        "loader_samples_per_s": samples / statistics.median(loader_seconds),
        "roofline_gflops": statistics.median(rooflines) / 1e9 if shape else None,
        "achieved_gflops": flops * samples / statistics.median(train_seconds) / 1e9,
        "roofline_fraction": statistics.median(fractions) if shape else None,
        "train_samples_per_s_runs": [samples / s for s in train_seconds],
        "multi_len": workload.multi_len,
        "peak_rss_mib": peak_rss_mib(),
    }


class StepClock(pl.Callback):
    """Wall time at the end of every training batch."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())


def lightning_seconds(
    spec: str, workload: Workload, schema: Schema, loader: DataLoader, trainer_overrides: dict, folder: Path
) -> float:
    """Seconds for ``workload.steps`` training steps after ``workload.warmup`` under the Trainer
    ``run.py`` builds (same callbacks and logger), with ``trainer_overrides`` on top."""
    from experiments.run.history import EpochHistory
    from experiments.run.train import build_trainer, plateau_schedule

    model, cfg = build_model(spec, schema, workload.seed)
    compiled(model, workload)
    clock = StepClock()
    callbacks = [
        EpochHistory(folder / "history.csv"),
        plateau_schedule(cfg, folder / "checkpoints" / "best.ckpt"),
        clock,
    ]
    trainer = build_trainer(
        cfg,
        folder,
        callbacks,
        max_steps=workload.warmup + workload.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **trainer_overrides,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no validation: Lightning notes the missing monitor
        trainer.fit(model, train_dataloaders=loader)
    return clock.ends[-1] - clock.ends[workload.warmup - 1]


def measure_lightning(spec: str, workload: Workload) -> dict:
    """Samples/s of a bare loop and of the Trainer (as configured, then each ``TRAINER_VARIANTS``
    setting), interleaved over ``workload.repeats`` rounds; medians (runs in its own process)."""
    if workload.rows < (workload.warmup + workload.steps + 1) * workload.batch_size:
        raise ValueError("--rows must hold warmup + steps + 1 batches: the Trainer runs one epoch")
    with prepared(workload) as (schema, loader):
        return _measure_lightning(spec, workload, schema, loader)


def _measure_lightning(spec: str, workload: Workload, schema: Schema, loader: DataLoader) -> dict:
    settings = [("bare loop", None), ("Trainer as configured", {})] + list(TRAINER_VARIANTS)
    seconds: dict[str, list[float]] = {label: [] for label, _ in settings}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(workload.repeats):
            for index, (label, overrides) in enumerate(settings):
                if overrides is None:
                    model, _ = build_model(spec, schema, workload.seed)
                    compiled(model, workload).train()
                    batches = iter(loader)
                    step = bare_training_step(model, model.build_optimizer())
                    timed_steps(step, batches, workload.warmup)
                    seconds[label].append(timed_steps(step, batches, workload.steps))
                else:
                    folder = Path(scratch) / f"{repeat}-{index}"
                    seconds[label].append(lightning_seconds(spec, workload, schema, loader, overrides, folder))
    samples = workload.steps * workload.batch_size
    bare = statistics.median(seconds["bare loop"])
    name, optim, precision = parse_spec(spec)
    return {
        "model": name,
        "optim": optim,
        "precision": precision,
        "settings": [
            {
                "setting": label,
                "samples_per_s": samples / statistics.median(s),
                "step_ms": 1e3 * statistics.median(s) / workload.steps,
                "ratio_to_bare": statistics.median(s) / bare,
            }
            for label, s in seconds.items()
        ],
    }


# -- processes ------------------------------------------------------------------------------------


def in_subprocess(task: str, spec: str, workload: Workload, *options: str) -> dict:
    """Run ``task`` for ``spec`` in a fresh interpreter: its peak RSS and allocator are its own."""
    command = [
        sys.executable,
        "-m",
        "experiments.benchmark",
        "--task",
        task,
        "--spec",
        spec,
        "--workload",
        json.dumps(asdict(workload)),
        *options,
    ]
    output = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if output.returncode != 0:
        raise RuntimeError(f"{task} {spec} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def measure_data(rows: int, workdir: Path) -> dict:
    """Encoding and cache-loading rates of ``rows`` Criteo-format rows (``experiments.benchmark.data``)."""
    from experiments.benchmark import data as bench_data

    workdir.mkdir(parents=True, exist_ok=True)
    tsv, cache_dir = workdir / f"criteo_like_{rows}.tsv", workdir / f"cache_{rows}"
    try:
        started = time.perf_counter()
        bench_data.write_criteo_tsv(tsv, rows)
        written = time.perf_counter() - started
        encode = bench_data.run_step("encode", tsv, cache_dir)
        load = bench_data.run_step("load", tsv, cache_dir)
        return {
            "rows": rows,
            "file_mib": tsv.stat().st_size / 2**20,
            "write_s": written,
            "encode": encode,
            "load": load,
            "encode_multi": measure_multi_encoding(rows, workdir),
        }
    finally:
        tsv.unlink(missing_ok=True)
        shutil.rmtree(cache_dir, ignore_errors=True)


def measure_multi_encoding(rows: int, workdir: Path) -> dict:
    """Encoding rate and peak RSS of ``rows`` rows of a table with a list column (``experiments.benchmark.multi``)."""
    from experiments.benchmark import data as bench_data
    from experiments.benchmark import multi

    csv, cache_dir = workdir / f"genres_{rows}.csv", workdir / f"cache_genres_{rows}"
    try:
        multi.write_genres_csv(csv, rows)
        return {"file_mib": csv.stat().st_size / 2**20, **bench_data.run_step("encode_multi", csv, cache_dir)}
    finally:
        csv.unlink(missing_ok=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
