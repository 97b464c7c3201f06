"""``python -m experiments.benchmark.serving``: the latency a serving system sees, per model and runtime.

    python -m experiments.benchmark.serving                        # every model of the zoo
    python -m experiments.benchmark.serving --models deepfm,dcn_v2 --calls 200

Each model is built from its config (``conf/model/<name>.yaml``, as ``run.py`` builds it) over a
Criteo-shaped schema of ``--num-ids`` ids, then scored as the exported graph scores
(``experiments.export.graph.ScoringGraph``: ids in, probabilities out) by three runtimes, each on
one thread: torch eager (``inference_mode``), TorchScript (the traced graph) and ONNX Runtime (the
exported ``model.onnx``). Per runtime: p50 and p99 of the wall time of one call at batches of 1,
64 and 1,024 rows (``--calls`` timed calls each, after ``--warmup`` untimed ones, on rows drawn
as ``workload.id_rows`` draws them), and rows per second at 4,096 (median call). Sizes on disk:
the weights (``state_dict``), ``model.pt`` and ``model.onnx``.

Writes ``<out>/serving.md`` and ``<out>/serving.csv``.
"""

from __future__ import annotations

import argparse
import csv
import io
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from experiments.benchmark.machine import utc_now
from experiments.benchmark.workload import build_model, criteo_schema, id_rows
from experiments.export.graph import ScoringGraph, export_onnx, export_torchscript
from experiments.report.layout import BENCHMARKS
from experiments.run.atomic import write_text
from measures.environment import LoadNotes, cpu_name, describe, git_commit
from models.registry import ZOO

LATENCY_BATCHES, THROUGHPUT_BATCH = (1, 64, 1024), 4096
RUNTIMES = ("eager", "torchscript", "onnxruntime")
COLUMNS = ["model", "runtime", *(f"p{q}_ms_b{b}" for b in LATENCY_BATCHES for q in (50, 99))]
COLUMNS += [f"rows_per_s_b{THROUGHPUT_BATCH}", "weights_mb", "graph_mb"]


def runners(graph: ScoringGraph, folder: Path) -> dict[str, tuple[Callable[[np.ndarray], object], int]]:
    """Runtime -> (score int64 ``[B, S]`` ids, bytes of its graph on disk); each on one thread."""
    import onnxruntime

    export_torchscript(graph, folder / "model.pt")
    export_onnx(graph, folder / "model.onnx")
    traced = torch.jit.load(str(folder / "model.pt"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def eager(ids: np.ndarray):
        with torch.inference_mode():
            return graph(torch.from_numpy(ids))

    def script(ids: np.ndarray):
        with torch.inference_mode():
            return traced(torch.from_numpy(ids))

    return {
        "eager": (eager, 0),
        "torchscript": (script, (folder / "model.pt").stat().st_size),
        "onnxruntime": (lambda ids: session.run(None, {"ids": ids}), (folder / "model.onnx").stat().st_size),
    }


def call_times(score: Callable[[np.ndarray], object], rows: np.ndarray, batch: int, calls: int, warmup: int):
    """Seconds of each of ``calls`` timed calls on consecutive ``batch``-row slices of ``rows``."""
    starts = [(i * batch) % (len(rows) - batch + 1) for i in range(warmup + calls)]
    times = np.empty(calls)
    for i, start in enumerate(starts):
        ids = np.ascontiguousarray(rows[start : start + batch])
        began = time.perf_counter()
        score(ids)
        if i >= warmup:
            times[i - warmup] = time.perf_counter() - began
    return times


def measure_model(name: str, num_ids: int, calls: int, warmup: int, seed: int = 0) -> list[dict]:
    """One row per runtime (see the module docstring)."""
    schema = criteo_schema(num_ids)
    model, _ = build_model(name, schema, seed)
    graph = ScoringGraph(model)
    rows = id_rows(schema, max(THROUGHPUT_BATCH * 2, 1 << 14), seed)[0].astype(np.int64)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for runtime, (score, graph_bytes) in runners(graph, Path(scratch)).items():
            row = {"model": name, "runtime": runtime}
            for batch in LATENCY_BATCHES:
                times = call_times(score, rows, batch, calls, warmup) * 1e3
                row |= {f"p50_ms_b{batch}": np.percentile(times, 50), f"p99_ms_b{batch}": np.percentile(times, 99)}
            times = call_times(score, rows, THROUGHPUT_BATCH, max(calls // 20, 5), warmup)
            row[f"rows_per_s_b{THROUGHPUT_BATCH}"] = THROUGHPUT_BATCH / np.median(times)
            row |= {"weights_mb": buffer.tell() / 2**20, "graph_mb": graph_bytes / 2**20 if graph_bytes else None}
            results.append(row)
    return results


def render(rows: list[dict], command: str, num_ids: int, calls: int, loads: str = "") -> tuple[str, str]:
    """-> (serving.md, serving.csv)."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    header = "| model | runtime | " + " | ".join(f"b={b} p50 / p99 ms" for b in LATENCY_BATCHES)
    header += f" | rows/s at {THROUGHPUT_BATCH} | weights MB | graph MB |"
    lines = [header, "|" + "---|" * (len(LATENCY_BATCHES) + 5)]
    for row in rows:
        latency = [f"{row[f'p50_ms_b{b}']:.3f} / {row[f'p99_ms_b{b}']:.3f}" for b in LATENCY_BATCHES]
        graph_mb = "" if row["graph_mb"] is None else f"{row['graph_mb']:.1f}"
        rate = f"{row[f'rows_per_s_b{THROUGHPUT_BATCH}']:,.0f}"
        lines.append(f"| {row['model']} | {row['runtime']} | " + " | ".join(latency) + f" | {rate} | ")
        lines[-1] += f"{row['weights_mb']:.1f} | {graph_mb} |"
    markdown = (
        "# Serving latency\n\n"
        f"`{command}`: one thread per runtime, a Criteo-shaped schema of {num_ids:,} ids (39 fields), "
        f"{calls} timed calls per batch size; {cpu_name()}, {describe(git_commit())}, {utc_now()}. "
        "Each call scores ids to probabilities as the exported graph does (`python -m experiments.export`)."
        + (f" Load average (1, 5, 15 min): {loads}." if loads else "")
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return markdown, table.getvalue()


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(e.name for e in ZOO), help="comma-separated model names")
    parser.add_argument("--num-ids", type=int, default=1_000_000, help="vocabulary size over all fields")
    parser.add_argument("--calls", type=int, default=500, help="timed calls per batch size (p99 needs hundreds)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "serving", help="folder for serving.{md,csv}")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    loads = LoadNotes()
    loads.note_load("start")
    torch.set_num_threads(1)
    try:
        rows = []
        for name in [m for m in args.models.split(",") if m]:
            rows += measure_model(name, args.num_ids, args.calls, args.warmup)
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads)
    command = "python -m experiments.benchmark.serving " + shlex.join(argv if argv is not None else sys.argv[1:])
    loads.note_load("end")
    markdown, table = render(rows, command.strip(), args.num_ids, args.calls, loads.loads_noted())
    write_text(args.out / "serving.md", markdown)
    write_text(args.out / "serving.csv", table)
    return rows


if __name__ == "__main__":
    main()
