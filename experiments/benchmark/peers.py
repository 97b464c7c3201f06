"""ctr-bench against DeepCTR-Torch and FuxiCTR, end to end on one generated Criteo-format file.

    pip install -e ".[peers]"     # deepctr-torch 0.3.0 (+ requests), FuxiCTR 2.3.10 (+ polars<2)
    python -m experiments.benchmark.peers --rows 500000 --threads 1,2

The file (``experiments.benchmark.data.write_criteo_tsv``: label, 13 integers, 26 hashed
categoricals from the synthetic generator) is cut into train/val/test files, 80/10/10. Each library
then runs, in a fresh process with ``--threads`` torch threads, from those files to test metrics
(``peer_pipelines``):

- preprocessing, from CSV copies of the files (BARS's Criteo_x4 layout, made before any clock
  starts): integers bucketized by log_square, categorical values seen fewer than 10 times in
  training share one id, every field embedded (BARS's Criteo_x4 encoding). ctr-bench: its
  datamodule (``data=criteo_x4``, ``data.encoding.convention=fuxictr``). FuxiCTR: its
  ``CustomizedFeatureProcessor`` (BARS's Criteo_x4 processor). DeepCTR-Torch ships no
  preprocessing: pandas and scikit-learn's ``LabelEncoder``, as its README's Criteo example does,
  plus the same buckets and min-count;
- training: one epoch, then one pass over the validation file, the same model settings for all
  (the DeepFM paper's: embedding 10, DNN 400-400-400, ReLU, dropout 0.5; Adam, lr 1e-3, no L2;
  batch 4096). ctr-bench: ``experiment=bars_criteo_x4`` with those settings and ``optim=adam``
  (plain Adam, like the peers; in torch's fused kernel, ctr-bench's default for it, where the
  peers run torch's per-tensor loop), ``precision=32``. FuxiCTR: its ``BaseModel.fit`` on the models
  of ``experiments.reference`` (its layers), fed by a torch ``DataLoader`` over its encoded arrays.
  DeepCTR-Torch: its ``DeepFM`` (FM: no DNN; LR: neither FM nor DNN) and ``fit``;
- test: AUC of the test file's predictions (scikit-learn's ``roc_auc_score`` for all).

Each runs in its own numerical mode: ctr-bench in MKL's strict reproducible mode (its default, set
when ``models`` is imported), the peers in MKL's default (``MKL_CBWR=AUTO`` in their processes).

Reported per library: preprocessing s, train s (the epoch and the validation pass), training
samples/s, CPU-s of the process, end-to-end s (process start to test AUC, imports included) and
ctr-bench's speed ratio over each peer on train s and end-to-end s. Libraries alternate within each
(threads, model) cell, the order rotating between repeats; medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from experiments.benchmark.embed import refresh
from experiments.benchmark.machine import utc_now
from experiments.benchmark.peer_pipelines import RUNNERS
from experiments.report.layout import BENCHMARKS
from experiments.run.config import REPO
from measures.environment import LoadNotes, cpu_name, cpu_seconds, describe, git_commit

STARTED = time.perf_counter()  # a child's clock starts at its imports
LIBRARIES = ("ctr-bench", "DeepCTR-Torch", "FuxiCTR")
MODELS = ("deepfm", "fm", "lr")
SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}


# -- files ----------------------------------------------------------------------------------------


def write_files(rows: int, folder: Path) -> dict[str, dict[str, Path]]:
    """``{"tsv": {split: path}, "csv": {split: path}}``: the generated file cut 80/10/10, and
    FuxiCTR's CSV copies (BARS's Criteo_x4 layout)."""
    from experiments.benchmark.data import write_criteo_tsv
    from experiments.reference.data import criteo_x4_csv

    folder.mkdir(parents=True, exist_ok=True)
    tsv = {split: folder / f"{split}.tsv" for split in SPLITS}
    if not all(p.exists() for p in tsv.values()):
        whole = folder / "all.tsv"
        write_criteo_tsv(whole, rows)
        lines = whole.read_bytes().splitlines(keepends=True)
        ends = np.cumsum([int(round(share * len(lines))) for share in SPLITS.values()])
        ends[-1] = len(lines)
        for path, start, end in zip(tsv.values(), [0, *ends[:-1]], ends):
            path.write_bytes(b"".join(lines[start:end]))
        whole.unlink()
    csv = {split: folder / "csv" / f"{'valid' if split == 'val' else split}.csv" for split in SPLITS}
    if not all(p.exists() for p in csv.values()):
        csv = criteo_x4_csv(tsv, folder / "csv")
    return {"tsv": tsv, "csv": csv}


# -- one library, one model (a child process) -----------------------------------------------------


def child(library: str, model: str, threads: int, files: dict, workdir: Path) -> dict:
    import torch

    torch.set_num_threads(threads)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    result = RUNNERS[library](model, files, workdir)
    return {
        **result,
        "library": library,
        "model": model,
        "threads": threads,
        "cpu_s": cpu_seconds(),
        "end_to_end_s": time.perf_counter() - STARTED,
        "mkl_cbwr": os.environ.get("MKL_CBWR", "unset"),
        "samples_per_s": result["train_rows"] / result["train_s"],
    }


def in_child(library: str, model: str, threads: int, files: dict, workdir: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "experiments.benchmark.peers",
        "--child",
        library,
        "--model",
        model,
        "--threads",
        str(threads),
        "--files",
        json.dumps({k: {s: str(p) for s, p in v.items()} for k, v in files.items()}),
        "--workdir",
        str(workdir),
    ]
    env = dict(os.environ)
    if library != "ctr-bench":
        # importing ctr-bench's layers (FuxiCTR's runner does, for the reference models) turns on MKL's
        # strict reproducible mode, ctr-bench's own choice; the peers run in MKL's default
        env["MKL_CBWR"] = "AUTO"
    started = time.perf_counter()
    output = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if output.returncode != 0:
        raise RuntimeError(f"{library} {model} failed:\n{output.stderr[-3000:]}")
    result = json.loads(output.stdout.strip().splitlines()[-1])
    return {**result, "process_s": time.perf_counter() - started}


# -- the comparison -------------------------------------------------------------------------------


class PeersReport(LoadNotes):
    def __init__(self, command: str, rows: int):
        super().__init__()
        self.command, self.rows, self.runs = command, rows, []
        self.started_utc, self.git = utc_now(), git_commit()

    def medians(self) -> list[dict]:
        cells: dict[tuple, list[dict]] = {}
        for run in self.runs:
            cells.setdefault((run["threads"], run["model"], run["library"]), []).append(run)
        out = []
        for (threads, model, library), runs in cells.items():
            row = {"threads": threads, "model": model, "library": library, "repeats": len(runs)}
            for key in ("preprocess_s", "train_s", "samples_per_s", "cpu_s", "end_to_end_s", "test_auc"):
                row[key] = statistics.median(r[key] for r in runs)
            out.append(row)
        for row in out:
            mine = next(
                r
                for r in out
                if (r["threads"], r["model"], r["library"]) == (row["threads"], row["model"], "ctr-bench")
            )
            row["train_ratio"] = row["train_s"] / mine["train_s"]
            row["end_to_end_ratio"] = row["end_to_end_s"] / mine["end_to_end_s"]
        return out

    def mkl_modes(self) -> dict[str, set[str]]:
        """Each library's ``MKL_CBWR`` values over its runs, in ``LIBRARIES`` order."""
        modes: dict[str, set[str]] = {}
        for run in sorted(self.runs, key=lambda r: LIBRARIES.index(r["library"])):
            modes.setdefault(run["library"], set()).add(run.get("mkl_cbwr", "not recorded"))
        return modes

    def markdown(self) -> str:
        import platform

        import torch

        lines = [
            "# ctr-bench against its peers, end to end",
            "",
            f"Generated by `{self.command}` ({self.started_utc}).",
            "",
            f"- hardware: {cpu_name()}; torch {torch.__version__}, Python {platform.python_version()}; "
            f"{', '.join(f'{lib} {_version(lib)}' for lib in LIBRARIES[1:])}; "
            f"commit {describe(self.git)}",
            f"- data: {self.rows:,} generated Criteo-format rows, 80/10/10 train/val/test files; the DeepFM "
            "paper's model settings, plain Adam, batch 4096, one epoch (see "
            "`experiments/benchmark/peers.py` for each library's pipeline)",
            "- MKL (its `MKL_CBWR`): "
            + "; ".join(f"{lib} {', '.join(sorted(modes))}" for lib, modes in self.mkl_modes().items()),
            f"- load average (1, 5, 15 min): {self.loads_noted()}",
            "",
            "| threads | model | library | preprocessing s | train s | train samples/s | CPU-s | end to end s "
            "| test AUC | ctr-bench faster, train | ctr-bench faster, end to end |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(
            self.medians(), key=lambda r: (r["threads"], MODELS.index(r["model"]), LIBRARIES.index(r["library"]))
        ):
            lines.append(
                f"| {r['threads']} | {r['model']} | {r['library']} | {r['preprocess_s']:.1f} | "
                f"{r['train_s']:.1f} | {r['samples_per_s']:,.0f} | {r['cpu_s']:.0f} | {r['end_to_end_s']:.1f} | "
                f"{r['test_auc']:.4f} | {r['train_ratio']:.2f}x | {r['end_to_end_ratio']:.2f}x |"
            )
        lines += [
            "",
            "Train s: the epoch and one pass over the validation file. End to end: the process from "
            "its start (imports included) to the test AUC. The ratios are the peer's seconds over "
            "ctr-bench's in the same cell (1.00x for ctr-bench itself).",
            "",
        ]
        return "\n".join(lines)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark_peers.md").write_text(self.markdown())
        refresh(out)  # the training benchmark's report shows this run
        (out / "benchmark_peers.json").write_text(
            json.dumps(
                {
                    "command": self.command,
                    "started_utc": self.started_utc,
                    "git": self.git,
                    "rows": self.rows,
                    "load": self.load_averages,
                    "runs": self.runs,
                },
                indent=1,
            )
        )


def _version(library: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version({"DeepCTR-Torch": "deepctr-torch", "FuxiCTR": "fuxictr"}[library])
    except PackageNotFoundError:
        return "not installed"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark.peers", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path(".cache/peers"))
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "peers")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> Optional[PeersReport]:
    args = parse_args(argv)
    if args.child:
        files = {k: {s: Path(p) for s, p in v.items()} for k, v in json.loads(args.files).items()}
        print(json.dumps(child(args.child, args.model, int(args.threads), files, args.workdir)))
        return None
    libraries = args.libraries.split(",")
    missing = [lib for lib in libraries[1:] if _version(lib) == "not installed"]
    if missing:
        raise SystemExit(f'not installed: {", ".join(missing)}; pip install -e ".[peers]"')
    report = PeersReport(
        "python -m experiments.benchmark.peers " + " ".join(sys.argv[1:] if argv is None else argv), args.rows
    )
    files = write_files(args.rows, args.workdir / f"criteo_like_{args.rows}")
    report.note_load("start")
    for repeat in range(args.repeats):
        for threads in (int(t) for t in args.threads.split(",")):
            for model in args.models.split(","):
                order = libraries[repeat % len(libraries) :] + libraries[: repeat % len(libraries)]
                for library in order:
                    run = in_child(library, model, threads, files, args.workdir / "run")
                    report.runs.append(run)
                    print(
                        f"{threads} threads {model} {library}: train {run['train_s']:.1f} s, "
                        f"end to end {run['end_to_end_s']:.1f} s, AUC {run['test_auc']:.4f}",
                        flush=True,
                    )
    report.note_load("end")
    report.write(args.out)
    print(f"wrote {args.out / 'benchmark_peers.md'}")
    return report


if __name__ == "__main__":
    main()
