"""Data pipeline benchmark (on demand, not part of the tests): writes ``results/benchmarks/data/benchmark_data.md``.

    python -m experiments.benchmark.data [--rows 1000000 10000000] [--repeats 3] [--workdir .cache/bench-data]
    python -m experiments.benchmark.data --before DIR --before-name 'before (abc1234)'   # + another tree's, as before

For each row count: writes a Criteo-shaped raw TSV from the synthetic generator (label, 13 integer
fields with empty values, 26 8-hex-digit categorical fields), then, in a fresh process each time so
that peak memory is that of the step alone:
- encode (``--repeats`` times, each into an empty cache folder): the cache built from the TSV with
  the Criteo paper settings (random 81/9/10 split, min_count 10, log_square): rows/s, CPU seconds
  (all threads), peak RSS, and the manifest's phase times;
- load: one training epoch of shuffled batches of 4096 plus one pass over the test split, read from
  the memory-mapped cache: samples/s.
The machine may be shared: medians over repeats are reported, with the 1-minute load average
before each run. ``--before DIR`` times the ``datamodules`` package found in DIR the same way,
interleaved with the current one (e.g. ``git archive <commit> datamodules | tar -x -C DIR``), for a
before/after table. Peak RSS includes the interpreter with torch, Lightning, pandas and pyarrow
imported (reported as ``baseline``). The raw results go to ``<workdir>/bench_data.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from experiments.benchmark.machine import code_of, environment
from experiments.report.layout import BENCHMARKS
from experiments.run.config import REPO
from measures.environment import cpu_seconds, load_average, peak_rss_mib

HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
BATCH_SIZE = 4096
DEFAULT_OUT = BENCHMARKS / "data" / "benchmark_data.md"


def hex8(values: np.ndarray) -> np.ndarray:
    """uint32-range int64 ``[N]`` -> ``S8`` ``[N]`` lowercase hex, as Criteo writes hashed categories."""
    shifts = np.arange(28, -1, -4, dtype=np.int64)
    digits = HEX_DIGITS[(values[:, None] >> shifts) & 0xF]
    return np.ascontiguousarray(digits).view("S8").ravel()


def write_criteo_tsv(path: Path, rows: int, seed: int = 0) -> None:
    """Raw Criteo-format TSV of ``rows`` synthetic rows, written block by block."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    from datamodules import SyntheticSource

    source = SyntheticSource(rows=rows, seed=seed)
    names = ["label", *source.numeric_fields, *source.categorical_fields]
    schema = pa.schema(list(zip(names, [pa.int8()] + [pa.int64()] * 13 + [pa.string()] * 26)))
    options = arrow_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    temporary = path.with_suffix(".partial")
    with arrow_csv.CSVWriter(str(temporary), schema, write_options=options) as writer:
        for chunk in source.read("all", rejects=None):
            columns = [pa.array(chunk.labels.astype(np.int8))]
            numeric = chunk.numeric
            columns += [
                pa.array(np.nan_to_num(numeric[:, j]).astype(np.int64), mask=np.isnan(numeric[:, j]))
                for j in range(numeric.shape[1])
            ]
            for column in chunk.categorical:
                text = hex8(column.uniques[np.maximum(column.codes, 0)])
                columns.append(pa.array(text, type=pa.binary(), mask=column.codes < 0).cast(pa.string()))
            writer.write_table(pa.Table.from_arrays(columns, names=names))
    temporary.rename(path)


def datamodule(path: Path, cache_dir: Path):
    from datamodules import CriteoSource, CTRDataModule

    return CTRDataModule(
        CriteoSource(path=str(path)),
        split={"kind": "random", "ratios": [0.81, 0.09, 0.10]},
        encoding={"min_count": 10},
        name="bench",
        cache_dir=str(cache_dir),
        batch_size=BATCH_SIZE,
        progress=False,
    )


def encode_step(path: Path, cache_dir: Path, make=datamodule) -> dict:
    started, cpu = time.perf_counter(), cpu_seconds()
    dm = make(path, cache_dir)
    dm.prepare_data()
    seconds = time.perf_counter() - started
    manifest = dm.manifest
    return {
        "rows": manifest["rows_read"],
        "seconds": round(seconds, 2),
        "rows_per_second": round(manifest["rows_read"] / seconds),
        "cpu_seconds": round(cpu_seconds() - cpu, 2),
        "peak_rss_mib": round(peak_rss_mib()),
        "num_ids": manifest["schema"]["num_ids"],
        "phases_s": manifest["seconds"],
        **({"multi_valued": manifest["multi_valued"]} if "multi_valued" in manifest else {}),
    }


def encode_multi_step(path: Path, cache_dir: Path) -> dict:
    """``encode_step`` for a table with a multi-valued column (``experiments.benchmark.multi``)."""
    from experiments.benchmark import multi

    return encode_step(path, cache_dir, multi.datamodule)


def load_step(path: Path, cache_dir: Path) -> dict:
    dm = datamodule(path, cache_dir)
    dm.setup("fit")
    result = {}
    for name, loader in (("train_epoch", dm.train_dataloader()), ("test_pass", dm.test_dataloader())):
        started, samples = time.perf_counter(), 0
        for batch in loader:
            samples += batch.size
        seconds = time.perf_counter() - started
        result[name] = {
            "samples": samples,
            "seconds": round(seconds, 3),
            "samples_per_second": round(samples / max(seconds, 1e-9)),
        }
    result["peak_rss_mib"] = round(peak_rss_mib())
    return result


def baseline_step(path: Path, cache_dir: Path) -> dict:
    return {"peak_rss_mib": round(peak_rss_mib())}


STEPS = {"baseline": baseline_step, "encode": encode_step, "encode_multi": encode_multi_step, "load": load_step}


def run_step(step: str, path: Path, cache_dir: Path, code_root: Optional[Path] = None) -> dict:
    """One step in a fresh interpreter (its peak RSS is the step's alone), importing ``datamodules``
    from ``code_root`` when given, else from this repository."""
    command = [
        sys.executable,
        "-m",
        "experiments.benchmark.data",
        "--step",
        step,
        "--file",
        str(path),
        "--cache-dir",
        str(cache_dir),
    ] + (["--code-root", str(code_root)] if code_root else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(output.stdout.strip().splitlines()[-1])


def measure(rows: int, tsv: Path, workdir: Path, repeats: int, trees: dict[str, Optional[Path]]) -> dict:
    """Encode ``tsv`` ``repeats`` times per tree (interleaved, so that load bursts hit all), then
    load the last cache of each tree once."""
    runs: dict[str, list[dict]] = {label: [] for label in trees}
    for repeat in range(repeats):
        for label, root in trees.items():
            cache_dir = workdir / f"cache_{rows}_{label}"
            shutil.rmtree(cache_dir, ignore_errors=True)
            before = load_average()
            result = run_step("encode", tsv, cache_dir, root)
            result["load_average"] = before
            runs[label].append(result)
            print(
                f"{rows:,} rows, {label}, run {repeat + 1}/{repeats}: {result['rows_per_second']:,} rows/s "
                f"({result['seconds']} s, cpu {result['cpu_seconds']} s, peak RSS {result['peak_rss_mib']} MiB, "
                f"load {before})",
                flush=True,
            )
    loads = {}
    for label, root in trees.items():
        cache_dir = workdir / f"cache_{rows}_{label}"
        loads[label] = run_step("load", tsv, cache_dir, root)
    return {"rows": rows, "file_gib": round(tsv.stat().st_size / 2**30, 3), "encode_runs": runs, "load": loads}


def summary(runs: list[dict]) -> dict:
    """Median of each encode measure over repeats (phases too), and the range of rows/s."""
    median = lambda values: statistics.median(values)  # noqa: E731
    rates = [r["rows_per_second"] for r in runs]
    return {
        "runs": len(runs),
        "seconds": median([r["seconds"] for r in runs]),
        "rows_per_second": round(median(rates)),
        "min_rows_per_second": min(rates),
        "max_rows_per_second": max(rates),
        "cpu_seconds": median([r["cpu_seconds"] for r in runs if "cpu_seconds" in r] or [float("nan")]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "num_ids": runs[0]["num_ids"],
        "phases_s": {phase: round(median([r["phases_s"][phase] for r in runs]), 2) for phase in runs[0]["phases_s"]},
        "load_average": [r["load_average"] for r in runs],
    }


def markdown(results: list[dict], env: dict, baseline_mib: dict, command: str, trees: dict) -> str:
    lines = [
        "# Data pipeline benchmark",
        "",
        f"Generated by `{command}` ({env['date_utc']}).",
        "",
        f"- machine: {env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB RAM, shared with other jobs "
        f"(1-minute load average before each encode run in the last column)",
        f"- software: Python {env['python']}, numpy {env['numpy']}, pandas {env['pandas']}, pyarrow "
        f"{env['pyarrow']} (CSV parsing on {env['pyarrow_threads']} threads); the encoder runs its reader "
        f"one chunk ahead in a second thread",
        f"- code: {code_of(env)}"
        + (
            f"; rows labelled `{next(iter(trees))}` time another tree's `datamodules` (`--before`)"
            if len(trees) > 1
            else ""
        ),
        "- input: Criteo-format TSV from the synthetic generator (label, 13 integers with empty values, 26 "
        "8-hex-digit categories); encoding with the DeepFM paper's Criteo settings (random 81/9/10 split, "
        "min_count 10, log_square buckets)",
        "- peak RSS includes the interpreter with the imports alone: "
        + ", ".join(f"{mib} MiB ({label})" for label, mib in baseline_mib.items()),
        "",
        "## Encoding (TSV -> cache)",
        "",
        "| code | rows | file GiB | runs | median s | median rows/s | rows/s range | CPU s (all threads) | "
        "count rows s | pass 1 s | pass 2 s | peak RSS MiB | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        for label, runs in r["encode_runs"].items():
            s = summary(runs)
            p = s["phases_s"]
            lines.append(
                f"| {label} | {r['rows']:,} | {r['file_gib']} | {s['runs']} | {s['seconds']:.1f} | "
                f"{s['rows_per_second']:,} | {s['min_rows_per_second']:,}–{s['max_rows_per_second']:,} | "
                f"{s['cpu_seconds']:.1f} | {p['count_rows']} | {p['pass1_fit']} | {p['pass2_encode']} | "
                f"{s['peak_rss_mib']:,} | {', '.join(map(str, s['load_average']))} |"
            )
    lines += [
        "",
        "## Loading (cache -> batches of 4096)",
        "",
        "| code | rows | training epoch samples/s (shuffled) | test pass samples/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for label, load in r["load"].items():
            lines.append(
                f"| {label} | {r['rows']:,} | {load['train_epoch']['samples_per_second']:,} | "
                f"{load['test_pass']['samples_per_second']:,} | {load['peak_rss_mib']:,} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmark.data",
        description="Time encoding and batch loading of Criteo-shaped files.",
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="encode runs per row count (and per tree)")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench-data"))
    parser.add_argument("--before", type=Path, help="a tree whose datamodules to time as 'before'")
    parser.add_argument("--before-name", default="before", help="how the report names that tree (e.g. its commit)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown report")
    parser.add_argument("--keep", action="store_true", help="keep the generated TSV files and caches")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code-root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        if args.code_root:
            sys.path.insert(0, str(args.code_root.resolve()))
        # imported before any step's clock starts: ``datamodules`` loads these (Lightning with
        # CTRDataModule) on first use, which would otherwise be timed as encoding
        from datamodules import CriteoSource, CTRDataModule, TableSource  # noqa: F401

        print(json.dumps(STEPS[args.step](args.file, args.cache_dir)))
        return

    trees = {args.before_name: args.before, "after": None} if args.before else {"current": None}
    args.workdir.mkdir(parents=True, exist_ok=True)
    baseline = {
        label: run_step("baseline", args.workdir, args.workdir, root)["peak_rss_mib"] for label, root in trees.items()
    }
    print(f"baseline: {baseline} MiB peak RSS after imports", flush=True)
    results = []
    for rows in args.rows:
        tsv = args.workdir / f"criteo_like_{rows}.tsv"
        if not tsv.exists():
            started = time.perf_counter()
            write_criteo_tsv(tsv, rows)
            print(
                f"wrote {tsv} ({tsv.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        results.append(measure(rows, tsv, args.workdir, args.repeats, trees))
        if not args.keep:
            for label in trees:
                shutil.rmtree(args.workdir / f"cache_{rows}_{label}", ignore_errors=True)
            tsv.unlink()

    env = environment()
    given = list(argv if argv is not None else sys.argv[1:])
    if args.before:  # a folder of this machine: named, not shown
        given[given.index("--before") + 1] = "DIR"
    report = markdown(results, env, baseline, shlex.join(["python", "-m", "experiments.benchmark.data", *given]), trees)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    (args.workdir / "bench_data.json").write_text(
        json.dumps({"environment": env, "baseline_rss_mib": baseline, "results": results}, indent=2)
    )
    print(report)


if __name__ == "__main__":
    main()
