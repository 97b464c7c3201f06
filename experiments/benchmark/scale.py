"""Full-Criteo-scale run (on demand, not part of the tests): writes ``benchmark_scale.{md,csv}`` into
``results/benchmarks/scale/``.

    python -m experiments.benchmark.scale --rows 45000000 --workdir .cache/scale               # ~18 GB of scratch
    python -m experiments.benchmark.scale --rows 3000 --workdir tmp --model fm logger=none     # a quick check

Writes a Criteo-format TSV of ``--rows`` rows from the synthetic generator
(``experiments.benchmark.data.write_criteo_tsv``; kept in ``--workdir`` and reused on the next call,
its row count recorded in a sidecar), then runs the real app on it in a child process, as a user
would: ``python run.py model=deepfm optim=lazy_adam data=criteo data.source.path=<tsv>`` at the
DeepFM paper's batch size of 4096 for one epoch, with the cache built afresh in
``<workdir>/cache`` (``--reuse-cache`` keeps an existing one). Extra arguments are passed to
``run.py`` as Hydra overrides.

Measured: wall time of the whole run, the child's peak RSS (from ``wait4``, which the kernel keeps
per child) and, sampled every second from ``/proc``, its peak anonymous and file-backed resident
memory (memory-mapped cache pages count in RSS, but the kernel can drop them), CPU seconds;
encoding time and rows/s from the cache manifest; training samples/s and val/test AUC and LogLoss
from the run's ``metrics.json``; the cache's size on disk. The issue's target is a peak RSS under
16 GiB; the script exits with status 1 when it is missed (after writing the report). The child's
log goes to ``<workdir>/app.log``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from experiments.benchmark.data import write_criteo_tsv
from experiments.benchmark.embed import refresh
from experiments.benchmark.machine import code_of, environment
from experiments.report.layout import BENCHMARKS
from experiments.run.config import REPO

RSS_TARGET_GIB = 16
PROC_FIELDS = {"RssAnon": "peak_rss_anon_mib", "RssFile": "peak_rss_file_mib"}


def ensure_tsv(path: Path, rows: int) -> bool:
    """Write the Criteo-format TSV of ``rows`` rows unless ``path`` already holds it; True if written.

    ``write_criteo_tsv`` renames a finished file into place, so a file that exists is complete;
    the sidecar says how many rows it was written with (the name alone could be reused)."""
    sidecar = path.with_name(path.name + ".json")
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text()).get("rows") == rows:
        return False
    sidecar.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_criteo_tsv(path, rows)
    sidecar.write_text(json.dumps({"rows": rows, "bytes": path.stat().st_size}))
    return True


def app_overrides(args: argparse.Namespace, tsv: Path, cache_dir: Path, run_dir: Path) -> list[str]:
    """The ``run.py`` overrides of the measured run (paths absolute: the child runs in the repository)."""
    overrides = [
        f"model={args.model}",
        f"optim={args.optim}",
        "data=criteo",
        f"data.source.path={tsv}",
        f"data.cache_dir={cache_dir}",
        f"data.batch_size={args.batch_size}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    if args.threads:
        overrides.append(f"threads={args.threads}")
    return overrides + args.overrides


class MemorySampler(threading.Thread):
    """Peaks of the ``/proc/<pid>/status`` fields in ``PROC_FIELDS`` (MiB), sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 1.0):
        super().__init__(daemon=True)
        self.status, self.period = Path(f"/proc/{pid}/status"), period
        self.peaks = {name: 0.0 for name in PROC_FIELDS.values()}
        self.done = threading.Event()

    def sample(self) -> None:
        try:
            lines = self.status.read_text().splitlines()
        except OSError:  # gone, or not Linux
            return
        for line in lines:
            key, _, value = line.partition(":")
            if key in PROC_FIELDS:  # "RssAnon:   123456 kB"
                name = PROC_FIELDS[key]
                self.peaks[name] = max(self.peaks[name], int(value.split()[0]) / 1024)

    def run(self) -> None:
        while not self.done.wait(self.period):
            self.sample()


def run_child(command: list[str], log: Path) -> dict:
    """Run ``command`` in the repository, output to ``log``; wall time, peak RSS, CPU seconds.

    ``os.wait4`` returns the resource usage of that one child (its peak RSS, not the largest of
    every child this process ever had, as ``RUSAGE_CHILDREN`` would)."""
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        sampler = MemorySampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        sampler.done.set()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(f"run.py exited with status {process.returncode}; end of {log}:\n{tail}")
    return {
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        **{name: round(peak) for name, peak in sampler.peaks.items()},
    }


def newest_manifest(cache_dir: Path) -> Path:
    manifests = sorted(cache_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        raise RuntimeError(f"no cache manifest under {cache_dir}")
    return manifests[-1]


def disk_usage_bytes(folder: Path) -> int:
    """Bytes the files under ``folder`` occupy on disk (allocated blocks)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def prepare_input(args: argparse.Namespace) -> tuple[Path, Path, Path, Optional[float]]:
    """``(workdir, tsv, cache_dir, seconds writing the TSV or None if reused)``: the file of
    ``args.rows`` rows in place, and the cache removed unless ``args.reuse_cache``."""
    workdir = args.workdir.resolve()
    tsv, cache_dir = workdir / f"criteo_like_{args.rows}.tsv", workdir / "cache"
    started = time.perf_counter()
    wrote = ensure_tsv(tsv, args.rows)
    write_s = time.perf_counter() - started
    print(f"{'wrote' if wrote else 'reusing'} {tsv} ({tsv.stat().st_size / 2**30:.2f} GiB)", flush=True)
    if not args.reuse_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return workdir, tsv, cache_dir, write_s if wrote else None


def encoding_summary(manifest: dict) -> dict:
    """What the reports show of a cache's encoding, from its manifest."""
    return {
        "encode_s": manifest["seconds"],
        "encode_rows_per_s": manifest["rows_per_second"],
        "encode_peak_rss_mib": manifest["process_peak_rss_mib"],
        "split_rows": {split: stats["rows"] for split, stats in manifest["splits"].items()},
        "num_ids": manifest["schema"]["num_ids"],
    }


def measure(args: argparse.Namespace) -> dict:
    workdir, tsv, cache_dir, write_s = prepare_input(args)
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = app_overrides(args, tsv, cache_dir, run_dir)
    print(f"running run.py {shlex.join(overrides)} (log: {workdir / 'app.log'})", flush=True)
    child_started = time.time()
    child = run_child([sys.executable, str(REPO / "run.py"), *overrides], workdir / "app.log")
    manifest_path = newest_manifest(cache_dir)
    manifest = json.loads(manifest_path.read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "tsv_gib": tsv.stat().st_size / 2**30,
        "tsv_written_s": write_s,
        "overrides": overrides,
        "workdir": str(workdir),
        **child,
        "cache_built": manifest_path.stat().st_mtime >= child_started,
        **encoding_summary(manifest),
        "cache_gib": disk_usage_bytes(cache_dir) / 2**30,
        "metrics": metrics,
    }


def versions() -> dict:
    return {name: importlib.metadata.version(name) for name in ("torch", "pytorch-lightning")}


def rss_target(result: dict) -> tuple[str, bool]:
    """``(measured, met)`` for the issue's peak-RSS target."""
    peak_gib = result["peak_rss_mib"] / 1024
    return f"{peak_gib:.2f} GiB", peak_gib < RSS_TARGET_GIB


def csv_rows(result: dict) -> list[tuple[str, object]]:
    m = result["metrics"]
    rows = [
        ("rows", result["rows"]),
        ("tsv_gib", round(result["tsv_gib"], 3)),
        ("wall_s", result["wall_s"]),
        ("cpu_s", result["cpu_s"]),
        ("peak_rss_mib", result["peak_rss_mib"]),
        ("peak_rss_anon_mib", result["peak_rss_anon_mib"]),
        ("peak_rss_file_mib", result["peak_rss_file_mib"]),
        ("encode_s", result["encode_s"]["total"]),
        ("encode_rows_per_s", result["encode_rows_per_s"]),
        ("encode_peak_rss_mib", result["encode_peak_rss_mib"]),
        ("num_ids", result["num_ids"]),
        ("cache_gib", round(result["cache_gib"], 3)),
        ("train_time_s", round(m["train_time_s"], 3)),
        ("train_samples_per_s", round(m["train_samples_per_s"])),
        ("epochs", m["epochs"]),
        ("num_params", m["num_params"]),
    ]
    rows += [(key, round(m[key], 5)) for key in ("val/auc", "val/logloss", "test/auc", "test/logloss")]
    return rows + [(f"{split}_rows", n) for split, n in result["split_rows"].items()]


def shown(text: str, workdir: str) -> str:
    """``text`` with this machine's scratch folder written as ``<workdir>``."""
    return text.replace(workdir, "<workdir>")


def markdown(result: dict, env: dict, command: str) -> str:
    m, e = result["metrics"], result["encode_s"]
    measured, met = rss_target(result)
    app = shown(shlex.join(["python", "run.py", *result["overrides"]]), result["workdir"])
    splits = ", ".join(f"{split} {n:,}" for split, n in result["split_rows"].items())
    written = (
        f"written in {result['tsv_written_s']:.0f} s"
        if result["tsv_written_s"] is not None
        else "reused from an earlier call"
    )
    lines = [
        "# Full-scale run: one epoch over a Criteo-sized file",
        "",
        f"Generated by `{shown(command, result['workdir'])}` ({env['date_utc']}).",
        "",
        f"- machine: {env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB RAM",
        f"- software: Python {env['python']}, torch {env['torch']}, pytorch-lightning "
        f"{env['pytorch-lightning']}, numpy {env['numpy']}, pyarrow {env['pyarrow']}; {code_of(env)}",
        f"- input: Criteo-format TSV of {result['rows']:,} rows from the synthetic generator "
        f"({result['tsv_gib']:.2f} GiB, {written}); its vocabulary ({result['num_ids']:,} ids after "
        f"min_count 10) is smaller than real Criteo's",
        f"- run (one process{', which built the cache' if result['cache_built'] else '; cache reused'}): `{app}`",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| wall time, {'encoding + ' if result['cache_built'] else ''}training + evaluation | "
        f"{result['wall_s']:,.0f} s |",
        f"| CPU time (all threads) | {result['cpu_s']:,.0f} s |",
        f"| peak RSS | {result['peak_rss_mib']:,} MiB |",
        f"| of which anonymous / file-backed (libraries, memory-mapped cache), peaks sampled each second | "
        f"{result['peak_rss_anon_mib']:,} / {result['peak_rss_file_mib']:,} MiB |",
        f"| encoding{'' if result['cache_built'] else ' (earlier run)'}: count rows / pass 1 (fit) / "
        f"pass 2 (encode) | {e['count_rows']:,.1f} / "
        f"{e['pass1_fit']:,.1f} / {e['pass2_encode']:,.1f} s |",
        f"| encoding: total, rate | {e['total']:,.1f} s, {result['encode_rows_per_s']:,} rows/s |",
        f"| peak RSS when encoding ended | {result['encode_peak_rss_mib']:,} MiB |",
        f"| cache on disk | {result['cache_gib']:.2f} GiB |",
        f"| split rows | {splits} |",
        f"| training (epochs: {m['epochs']}, batch {result['batch_size']:,}), validation included | "
        f"{m['train_time_s']:,.1f} s, {m['train_samples_per_s']:,.0f} samples/s |",
        f"| parameters | {m['num_params']:,} |",
        f"| val AUC / LogLoss | {m['val/auc']:.4f} / {m['val/logloss']:.4f} |",
        f"| test AUC / LogLoss | {m['test/auc']:.4f} / {m['test/logloss']:.4f} |",
        "",
        f"Target: peak RSS < {RSS_TARGET_GIB} GiB: {'PASS' if met else 'FAIL'} ({measured})",
        "",
    ]
    return "\n".join(lines)


def write_report(result: dict, env: dict, command: str, out: Path) -> Path:
    """``benchmark_scale.{md,csv}`` in ``out``, and the report's copy in ``out/benchmark.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark_scale.md").write_text(markdown(result, env, command))
    with (out / "benchmark_scale.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "value"])
        writer.writerows(csv_rows(result))
    refresh(out)  # the training benchmark's report shows this run instead of the last
    return out / "benchmark_scale.md"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=45_000_000, help="rows of the generated Criteo-format file")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/scale"), help="scratch: TSV, cache, run")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "scale", help="folder for benchmark_scale.{md,csv}")
    parser.add_argument("--model", default="deepfm")
    parser.add_argument("--optim", default="lazy_adam")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads of the run (default: torch's)")
    parser.add_argument("--reuse-cache", action="store_true", help="keep an existing cache instead of rebuilding")
    parser.add_argument("overrides", nargs="*", help="more run.py overrides, e.g. model.mlp.hidden_units=[16,16]")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    result = measure(args)
    env = {**environment(), **versions()}
    command = shlex.join(["python", "-m", "experiments.benchmark.scale", *(sys.argv[1:] if argv is None else argv)])
    report = write_report(result, env, command, args.out)
    measured, met = rss_target(result)
    print(report.read_text())
    print(f"peak RSS < {RSS_TARGET_GIB} GiB: {'PASS' if met else 'FAIL'} ({measured}); wrote {report}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
