"""Data pipeline benchmark (on demand, not part of the tests).

    python -m experiments.bench_data [--rows 1000000 10000000] [--workdir .cache/bench-data]

For each row count: writes a Criteo-shaped raw TSV from the synthetic generator (label, 13 integer
fields with empty values, 26 8-hex-digit categorical fields), then, in a fresh process each time so
that peak memory is that of the step alone:
- encode: builds the cache from the TSV with the Criteo paper settings (random 81/9/10 split,
  min_count 10, log_square): rows/s, peak RSS;
- load: one training epoch of shuffled batches of 4096 plus one pass over the test split, read from
  the memory-mapped cache: samples/s.
Peak RSS includes the interpreter with torch, Lightning, pandas and pyarrow imported (reported
as ``baseline``). Results are printed as a table and written to ``<workdir>/bench_data.json``.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import csv as arrow_csv

from datamodules import CriteoSource, CTRDataModule, SyntheticSource

HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
BATCH_SIZE = 4096


def hex8(values: np.ndarray) -> np.ndarray:
    """uint32-range int64 ``[N]`` -> ``S8`` ``[N]`` lowercase hex, as Criteo writes hashed categories."""
    shifts = np.arange(28, -1, -4, dtype=np.int64)
    digits = HEX_DIGITS[(values[:, None] >> shifts) & 0xF]
    return np.ascontiguousarray(digits).view("S8").ravel()


def write_criteo_tsv(path: Path, rows: int, seed: int = 0) -> None:
    """Raw Criteo-format TSV of ``rows`` synthetic rows, written block by block."""
    source = SyntheticSource(rows=rows, seed=seed)
    names = ["label", *source.numeric_fields, *source.categorical_fields]
    options = arrow_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    temporary = path.with_suffix(".partial")
    with arrow_csv.CSVWriter(str(temporary), _criteo_schema(names), write_options=options) as writer:
        for chunk in source.read("all", rejects=None):
            columns = [pa.array(chunk.labels.astype(np.int8))]
            numeric = chunk.numeric
            columns += [pa.array(np.nan_to_num(numeric[:, j]).astype(np.int64), mask=np.isnan(numeric[:, j]))
                        for j in range(numeric.shape[1])]
            for column in chunk.categorical:
                text = hex8(column.uniques[np.maximum(column.codes, 0)])
                columns.append(pa.array(text, type=pa.binary(), mask=column.codes < 0).cast(pa.string()))
            writer.write_table(pa.Table.from_arrays(columns, names=names))
    temporary.rename(path)


def _criteo_schema(names: list[str]) -> pa.Schema:
    types = [pa.int8()] + [pa.int64()] * 13 + [pa.string()] * 26
    return pa.schema(list(zip(names, types)))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def datamodule(path: Path, cache_dir: Path) -> CTRDataModule:
    return CTRDataModule(CriteoSource(path=str(path)), split={"kind": "random", "ratios": [0.81, 0.09, 0.10]},
                         encoding={"min_count": 10}, name="bench", cache_dir=str(cache_dir), batch_size=BATCH_SIZE,
                         progress=False)


def encode_step(path: Path, cache_dir: Path) -> dict:
    started = time.perf_counter()
    dm = datamodule(path, cache_dir)
    dm.prepare_data()
    seconds = time.perf_counter() - started
    manifest = dm.manifest
    return {"rows": manifest["rows_read"], "seconds": round(seconds, 2),
            "rows_per_second": round(manifest["rows_read"] / seconds), "peak_rss_mib": round(peak_rss_mib()),
            "num_ids": manifest["schema"]["num_ids"], "phases_s": manifest["seconds"]}


def load_step(path: Path, cache_dir: Path) -> dict:
    dm = datamodule(path, cache_dir)
    dm.setup("fit")
    result = {}
    for name, loader in (("train_epoch", dm.train_dataloader()), ("test_pass", dm.test_dataloader())):
        started, samples = time.perf_counter(), 0
        for batch in loader:
            samples += batch.size
        seconds = time.perf_counter() - started
        result[name] = {"samples": samples, "seconds": round(seconds, 2), "samples_per_second": round(samples / seconds)}
    result["peak_rss_mib"] = round(peak_rss_mib())
    return result


def baseline_step(path: Path, cache_dir: Path) -> dict:
    return {"peak_rss_mib": round(peak_rss_mib())}


STEPS = {"baseline": baseline_step, "encode": encode_step, "load": load_step}


def run_step(step: str, path: Path, cache_dir: Path) -> dict:
    """One step in a fresh interpreter: its peak RSS is the step's alone."""
    output = subprocess.run([sys.executable, "-m", "experiments.bench_data", "--step", step, "--file", str(path),
                             "--cache-dir", str(cache_dir)], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time encoding and batch loading of Criteo-shaped files.")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench-data"))
    parser.add_argument("--keep", action="store_true", help="keep the generated TSV files and caches")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        print(json.dumps(STEPS[args.step](args.file, args.cache_dir)))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    baseline = run_step("baseline", args.workdir, args.workdir)["peak_rss_mib"]
    print(f"baseline: {baseline} MiB peak RSS after imports", flush=True)
    results = []
    for rows in args.rows:
        tsv = args.workdir / f"criteo_like_{rows}.tsv"
        if not tsv.exists():
            started = time.perf_counter()
            write_criteo_tsv(tsv, rows)
            print(f"wrote {tsv} ({tsv.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.0f} s",
                  flush=True)
        cache_dir = args.workdir / f"cache_{rows}"
        shutil.rmtree(cache_dir, ignore_errors=True)
        encode = run_step("encode", tsv, cache_dir)
        print(f"{rows:,} rows: encode {encode}", flush=True)
        load = run_step("load", tsv, cache_dir)
        print(f"{rows:,} rows: load {load}", flush=True)
        results.append({"rows": rows, "file_gib": round(tsv.stat().st_size / 2**30, 3), "encode": encode,
                        "load": load})
        if not args.keep:
            shutil.rmtree(cache_dir, ignore_errors=True)
            tsv.unlink()

    print("\n| rows | file GiB | encode s | encode rows/s | encode peak RSS MiB | train epoch samples/s "
          "(batch 4096, shuffled) | test pass samples/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        e, l = r["encode"], r["load"]
        print(f"| {r['rows']:,} | {r['file_gib']} | {e['seconds']} | {e['rows_per_second']:,} | {e['peak_rss_mib']:,} | "
              f"{l['train_epoch']['samples_per_second']:,} | {l['test_pass']['samples_per_second']:,} |")
    print(f"(peak RSS includes the {baseline} MiB of an interpreter with the imports alone)")
    (args.workdir / "bench_data.json").write_text(json.dumps({"baseline_rss_mib": baseline, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
