"""ctr-bench's newer models against FuxiCTR's model zoo: training steps per second on the same batches.

    pip install -e ".[reference]"
    python -m experiments.benchmark.zoo --fuxictr-zoo DIR          # every model of the zoo check
    python -m experiments.benchmark.zoo --fuxictr-zoo DIR --models finalmlp,dcn_v2 --repeats 5

Each model is built in both libraries from its BARS Frappe_x1 preset (the sizes BARS trains; the
reference check's builders: ``experiments.reference``), over Frappe's ten fields and
cardinalities, and fed the same batches of the preset's size (Zipf-distributed ids, random labels,
made before any clock starts). A step is the library's own training step: forward, the mean BCE
plus the regularisers, backward, gradient norm clipped at 10, the optimiser's step (ctr-bench: the
preset's Adam, in torch's fused kernel; FuxiCTR: its ``train_step`` with torch's Adam). Dropout is
on in both, as in training.

Each measurement runs in a fresh process at ``--threads`` torch threads (one by default), in the
library's own MKL mode (ctr-bench's strict reproducible one, FuxiCTR's default), ``--warmup``
untimed steps then ``--steps`` timed ones; the libraries alternate, ``--repeats`` times per model,
and the report gives medians. Writes ``<out>/benchmark_zoo.md`` and ``<out>/benchmark_zoo.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from experiments.benchmark.machine import utc_now
from experiments.report.layout import BENCHMARKS
from experiments.run.config import REPO
from measures.environment import LoadNotes, cpu_name, describe, git_commit, library_versions

LIBRARIES = ("ctr-bench", "FuxiCTR")


def batches(schema, batch_size: int, count: int, seed: int = 0) -> list:
    """``count`` batches of global ids (rows of Zipf-distributed local ids), labels at 1/3."""
    import torch

    from datamodules.schema import Batch
    from experiments.benchmark.workload import id_rows

    x, y = id_rows(schema, batch_size * count, seed)
    x, y = torch.from_numpy(x.astype("int64")), torch.from_numpy(y)
    return [Batch(x[i : i + batch_size], y[i : i + batch_size], None) for i in range(0, len(y), batch_size)]


def child(library: str, model: str, zoo: Path, threads: int, warmup: int, steps: int) -> dict:
    """One library's steps of ``model``: seconds per timed step."""
    import torch

    from datamodules.schema import Schema
    from datamodules.sources.frappe import FIELDS
    from experiments.reference.check import SplitTensors, build_reference, ours_step, theirs_step
    from experiments.reference.data import FRAPPE_CARDINALITIES
    from experiments.run.config import compose_config
    from experiments.run.train import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = compose_config(["experiment=bars_frappe_x1", f"model={model}", "logger=none"])
    schema = Schema.build([(name, "categorical", size) for name, size in zip(FIELDS, FRAPPE_CARDINALITIES)])
    data = batches(schema, cfg.data.batch_size, warmup + steps)
    clip = cfg.trainer.gradient_clip_val
    if library == "ctr-bench":
        step = ours_step(build_model(cfg, schema).train(), clip)
    else:
        reference = build_reference(model, cfg, schema, Path(".cache/benchmark_zoo"), zoo).train()
        step = theirs_step(reference, clip)
        offsets = torch.tensor([f.offset for f in schema.sparse_fields])
        names = [f.name for f in schema.sparse_fields]
        data = [SplitTensors.as_theirs(b.x, b.y, offsets, names) for b in data]
    for batch in data[:warmup]:
        step(batch)
    started = time.perf_counter()
    for batch in data[warmup:]:
        step(batch)
    seconds = (time.perf_counter() - started) / steps
    return {
        "library": library,
        "model": model,
        "threads": threads,
        "batch_size": cfg.data.batch_size,
        "step_s": seconds,
        "samples_per_s": cfg.data.batch_size / seconds,
        "mkl_cbwr": os.environ.get("MKL_CBWR", "unset"),
    }


def in_child(library: str, model: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "experiments.benchmark.zoo", "--child", library, "--models", model]
    command += ["--fuxictr-zoo", str(args.fuxictr_zoo), "--threads", str(args.threads)]
    command += ["--warmup", str(args.warmup), "--steps", str(args.steps)]
    env = dict(os.environ)
    if library != "ctr-bench":
        env["MKL_CBWR"] = "AUTO"  # FuxiCTR's own mode (importing ctr-bench's models would set the strict one)
    output = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if output.returncode != 0:
        raise RuntimeError(f"{library} {model} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


class ZooSpeedReport(LoadNotes):
    def __init__(self, command: str, zoo: str):
        super().__init__()
        self.command, self.zoo, self.runs, self.git = command, zoo, [], git_commit()
        self.started_utc = utc_now()

    def medians(self) -> list[dict]:
        """Per model: each library's median samples/s and ctr-bench's ratio to FuxiCTR's."""
        rows = []
        for model in dict.fromkeys(run["model"] for run in self.runs):
            rates = {
                library: statistics.median(
                    r["samples_per_s"] for r in self.runs if (r["model"], r["library"]) == (model, library)
                )
                for library in LIBRARIES
            }
            repeats = sum(r["model"] == model for r in self.runs) // len(LIBRARIES)
            rows.append({"model": model, "repeats": repeats, **rates, "ratio": rates["ctr-bench"] / rates["FuxiCTR"]})
        return rows

    def markdown(self, target: float) -> str:
        import platform

        versions = library_versions(("torch", "fuxictr"))
        first = self.runs[0]
        lines = [
            "# ctr-bench's newer models against FuxiCTR's model zoo: training steps",
            "",
            f"Generated by `{self.command}` ({self.started_utc}).",
            "",
            f"- code: commit {describe(self.git)}",
            f"- hardware: {cpu_name()}; torch {versions['torch']}, FuxiCTR {versions['fuxictr']}, Python "
            f"{platform.python_version()}",
            f"- FuxiCTR's model zoo: {self.zoo}",
            f"- each model at its BARS Frappe_x1 preset's sizes over Frappe's fields, batches of "
            f"{first['batch_size']:,}, {first['threads']} torch thread(s), each library in a fresh process "
            "and its own MKL mode, the libraries alternating (see `experiments/benchmark/zoo.py`)",
            f"- load average (1, 5, 15 min): {self.loads_noted()}",
            "",
            f"| model | repeats | ctr-bench samples/s | FuxiCTR samples/s | ctr-bench / FuxiCTR | at least {target}x |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in self.medians():
            lines.append(
                f"| {r['model']} | {r['repeats']} | {r['ctr-bench']:,.0f} | {r['FuxiCTR']:,.0f} | "
                f"{r['ratio']:.2f}x | {'yes' if r['ratio'] >= target else 'no'} |"
            )
        return "\n".join(lines + [""])

    def write(self, out: Path, target: float) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark_zoo.md").write_text(self.markdown(target))
        saved = {"command": self.command, "started_utc": self.started_utc, "zoo": self.zoo, "git": self.git}
        saved["load"] = self.load_averages
        (out / "benchmark_zoo.json").write_text(json.dumps({**saved, "runs": self.runs}, indent=1))


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark.zoo", description=__doc__.split("\n")[0])
    parser.add_argument("--fuxictr-zoo", type=Path, required=True, help="the model_zoo folder of FuxiCTR's repository")
    parser.add_argument("--models", help="comma-separated (default: every model of the reference check's zoo)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=1.5, help="the ratio each model should reach")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "zoo")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> Optional[ZooSpeedReport]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.models, args.fuxictr_zoo, args.threads, args.warmup, args.steps)))
        return None
    from experiments.reference.zoo import zoo_models, zoo_version

    report = ZooSpeedReport(
        shlex.join(["python", "-m", "experiments.benchmark.zoo", *argv]), zoo_version(args.fuxictr_zoo)
    )
    report.note_load("start")
    for model in (args.models or ",".join(zoo_models())).split(","):
        for _ in range(args.repeats):
            for library in LIBRARIES:
                report.runs.append(in_child(library, model, args))
        row = report.medians()[-1]
        print(
            f"{model}: {row['ctr-bench']:,.0f} against {row['FuxiCTR']:,.0f} samples/s, {row['ratio']:.2f}x", flush=True
        )
        report.write(args.out, args.target)
    report.note_load("end")
    report.write(args.out, args.target)
    print(f"wrote {args.out / 'benchmark_zoo.md'}")
    return report


if __name__ == "__main__":
    main()
