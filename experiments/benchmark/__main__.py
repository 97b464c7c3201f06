"""``python -m experiments.benchmark``: the training-throughput benchmark (see
``experiments.benchmark.throughput`` for what is measured and how).

    python -m experiments.benchmark                                 # the defaults below, a few minutes
    python -m experiments.benchmark --models deepfm --steps 20 --repeats 7
    python -m experiments.benchmark --models deepfm,deepfm:adam     # row-sparse against dense Adam
    python -m experiments.benchmark --encode-rows 10000000          # the 10M-row encoding target
    python -m experiments.benchmark --models '' --multi-models deepfm --multi-len 20   # with a list field
    python -m experiments.benchmark --models '' --lightning-models '' --encode-rows 0   # contention only

Writes ``<out>/benchmark.md`` and ``<out>/benchmark.csv`` (one row per measured value).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

from experiments.benchmark.contention import (
    INPUTS,
    POLICIES,
    SETTINGS,
    default_hogs,
    measure_contended,
    measure_contention,
)
from experiments.benchmark.report import Report, or_na
from experiments.benchmark.throughput import in_subprocess, measure_data, measure_lightning, measure_model
from experiments.benchmark.workload import DEFAULT_OPTIM, Workload
from experiments.report.layout import BENCHMARKS

DEFAULT_MODELS = (
    "deepfm,deepfm::bf16,deepfm:adam,lr,fm,fnn,ipnn,opnn,pnn_star,lr_dnn,fm_dnn,ffm,dnn,wide_deep,dcn,"
    "xdeepfm,xdeepfm::bf16,crossnet_v2,dcn_v2,autoint,autoint_plus,fibinet,dlrm,masknet,finalmlp,finalnet,aoanet,"
    "deepim,edcn,destine,nfm,afm,fwfm,fmfm,hofm,fignn,afn,afn_plus,sam,crossnet,cin,hfm,hfm_plus,dssm"
)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmark", description="The training-throughput benchmark"
    )
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated model[:optim[:precision]] (default {DEFAULT_OPTIM}, 32); '' for none",
    )
    parser.add_argument("--lightning-models", default="deepfm", help="model[:optim] to run under the Trainer too")
    parser.add_argument(
        "--multi-models", default="deepfm", help="model[:optim] to train with one more, multi-valued field too"
    )
    parser.add_argument("--multi-len", type=int, default=20, help="ids per row of that field (its max_len)")
    parser.add_argument("--num-ids", type=int, default=1_000_000, help="vocabulary size over all fields")
    parser.add_argument("--rows", type=int, default=1 << 17, help="in-memory training rows")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (medians are reported)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model first")
    parser.add_argument(
        "--contention",
        default="deepfm,fm",
        help="model[:optim] to train quiet and beside busy processes, per thread policy and way of "
        "making batches; '' for none",
    )
    parser.add_argument(
        "--hogs",
        type=int,
        default=default_hogs(),
        help="busy processes started for the contention rows (default: one per CPU)",
    )
    parser.add_argument(
        "--contention-seconds",
        default="4,8",
        help="warm-up and measured seconds of training per contention measurement",
    )
    parser.add_argument(
        "--encode-rows", type=int, default=1_000_000, help="rows of the Criteo-format file to encode and load; 0 skips"
    )
    parser.add_argument("--workdir", type=Path, default=Path(".cache/benchmark"), help="scratch for data files")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "training", help="folder for benchmark.{md,csv}")
    parser.add_argument("--task", choices=["model", "lightning", "contended"], help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument("--batches", choices=INPUTS, default="inline", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> Report:
    args = parse_args(argv)
    seconds = [float(s) for s in args.contention_seconds.split(",")]
    if args.task:  # a child process: one measurement, as JSON on the last line of stdout
        workload = Workload(**json.loads(args.workload))
        if args.task == "contended":
            print(json.dumps(measure_contended(args.spec, workload, args.policy, *seconds, batches=args.batches)))
        else:
            task = measure_model if args.task == "model" else measure_lightning
            print(json.dumps(task(args.spec, workload)))
        return None
    workload = Workload(
        num_ids=args.num_ids,
        rows=args.rows,
        batch_size=args.batch_size,
        threads=args.threads,
        warmup=args.warmup,
        steps=args.steps,
        repeats=args.repeats,
        compile=args.compile,
    )
    command = shlex.join(["python", "-m", "experiments.benchmark", *(sys.argv[1:] if argv is None else argv)])
    report = Report(workload, command)
    report.note_load("start")
    for spec in filter(None, args.models.split(",")):
        report.models.append(in_subprocess("model", spec, workload))
        m = report.models[-1]
        print(
            f"{spec}: {m['train_samples_per_s']:,.0f} train samples/s, roofline {or_na(m['roofline_fraction'], '.0%')}",
            flush=True,
        )
    for spec in filter(None, args.multi_models.split(",")):
        report.models.append(in_subprocess("model", spec, replace(workload, multi_len=args.multi_len)))
        print(f"{spec} + list of {args.multi_len}: {report.models[-1]['train_samples_per_s']:,.0f} train samples/s")
    for spec in filter(None, args.lightning_models.split(",")):
        report.lightning.append(in_subprocess("lightning", spec, workload))
        print(
            f"{spec} under Lightning: "
            + ", ".join(f"{s['setting']} x{s['ratio_to_bare']:.2f}" for s in report.lightning[-1]["settings"]),
            flush=True,
        )
    for spec in filter(None, args.contention.split(",")):
        report.contention += measure_contention(spec, workload, args.hogs, *seconds)
        print(
            f"{spec} beside {args.hogs} busy processes: "
            + ", ".join(
                f"{c['policy']}/{c['batches']} x{c['slowdown']:.2f}" for c in report.contention[-len(SETTINGS) :]
            ),
            flush=True,
        )
    report.note_load("after models")
    if args.encode_rows:
        report.data = measure_data(args.encode_rows, args.workdir)
        print(f"data: encode {report.data['encode']['rows_per_second']:,} rows/s", flush=True)
        report.note_load("after data")
    report.write(args.out)
    print(f"wrote {args.out / 'benchmark.md'} and {args.out / 'benchmark.csv'}")
    return report


if __name__ == "__main__":
    main()
