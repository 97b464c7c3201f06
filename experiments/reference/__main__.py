"""``python -m experiments.reference``: ctr-bench's BARS presets against FuxiCTR, side by side.

    pip install -e ".[reference]"          # FuxiCTR 2.3.10 and what it needs (never the main install)
    python -m experiments.reference --criteo-sample DIR           # every part, ~1.5 h on 2 cores
    python -m experiments.reference --parts steps --models deepfm --rows 20000   # a quick look

Data: a generated Frappe-shaped dataset (``experiments.reference.data``: Frappe's 10 fields and
cardinalities, Frappe_x1's 288,609 rows split 7:2:1, labels from planted first-order, pairwise
and higher-order effects), written as NFM libfm files and as BARS's CSV; and, with
``--criteo-sample DIR``, the raw Criteo sample files there (``wide_resdnn_criteo_{train,dev,test}.tsv``)
rewritten as BARS's Criteo_x4 CSV. The parts (``check``'s docstring says what each compares):
preprocessing, steps, training. Writes ``<out>/README.md`` and ``<out>/reference.json``; exits
with status 1 when a comparison misses its bar (every id equal; step losses in float64 within ``--step-tolerance``;
mean AUC within ``--auc-tolerance``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from experiments.reference import check
from experiments.reference.data import (
    CRITEO_X4_COLUMNS,
    CRITEO_X4_LABEL,
    FRAPPE_COLUMNS,
    FRAPPE_LABEL,
    FRAPPE_ROWS,
    criteo_x4_csv,
    write_frappe_like,
)
from experiments.reference.report import Outcome, write_report
from experiments.reference.zoo import zoo_models, zoo_version
from experiments.report.layout import CHECKS
from experiments.run.config import CONF
from measures.environment import describe, git_commit

MODELS = ("lr", "fm", "ffm", "dnn", "ipnn", "lr_dnn", "deepfm", "dcn", "xdeepfm")
# checked against FuxiCTR's model zoo (--fuxictr-zoo DIR)
LEADERS = tuple(zoo_models())
CRITEO_SAMPLE_FILES = {
    "train": "wide_resdnn_criteo_train.tsv",
    "val": "wide_resdnn_criteo_dev.tsv",
    "test": "wide_resdnn_criteo_test.tsv",
}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.reference", description="ctr-bench's BARS presets against FuxiCTR on the same data"
    )
    parser.add_argument("--parts", default="preprocessing,steps,training")
    parser.add_argument(
        "--models", help=f"models of the step-by-step comparison (default: the nine, and with --fuxictr-zoo {LEADERS})"
    )
    parser.add_argument(
        "--fuxictr-zoo",
        type=Path,
        help="the model_zoo folder of a checkout of FuxiCTR's repository: the reference models of the newer models",
    )
    parser.add_argument(
        "--training-models",
        default="lr,fm,dnn,deepfm,dcn",
        help="models of the full-training comparison (each costs minutes per seed)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--more-seeds",
        default="",
        metavar="MODEL=N,...",
        help="models whose runs vary more: their number of seeds (e.g. lr_dnn=6)",
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rows", type=int, default=FRAPPE_ROWS, help="rows of the Frappe-shaped dataset")
    parser.add_argument("--criteo-sample", type=Path, help="folder of the raw Criteo sample files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--step-tolerance",
        type=float,
        default=check.STEP_TOLERANCE,
        help="largest relative loss gap per step, in float64",
    )
    parser.add_argument("--auc-tolerance", type=float, default=0.001, help="largest gap of mean AUC")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/reference"))
    parser.add_argument("--out", type=Path, default=CHECKS / "reference")
    parser.add_argument(
        "--resume", action="store_true", help="keep the comparisons of <out>/reference.json and run only those it lacks"
    )
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ",".join(MODELS + (LEADERS if args.fuxictr_zoo else ()))
    return args


def datasets(args) -> list[dict]:
    """Each dataset of the check: its files for our reader and FuxiCTR's, its preset, its config."""
    frappe = write_frappe_like(args.workdir / "frappe_like", rows=args.rows)
    out = [
        {
            "name": "frappe_like",
            "experiment": "bars_frappe_x1",
            "ours": frappe["libfm"],
            "theirs": frappe["csv"],
            "columns": FRAPPE_COLUMNS,
            "label": FRAPPE_LABEL,
            "processor": "FeatureProcessor",
            "min_counts": [1],
        }
    ]
    if args.criteo_sample:
        tsv = {split: args.criteo_sample / name for split, name in CRITEO_SAMPLE_FILES.items()}
        csv = criteo_x4_csv(tsv, args.workdir / "criteo_x4_sample")
        out.append(
            {
                "name": "criteo_sample",
                "experiment": "bars_criteo_x4",
                "ours": csv,
                "theirs": csv,
                "columns": CRITEO_X4_COLUMNS,
                "label": CRITEO_X4_LABEL,
                "processor": "CustomizedFeatureProcessor",
                "min_counts": [10, 2, 1],
            }
        )
    return out


def has_preset(experiment: str, model: str) -> bool:
    return (CONF / "preset" / experiment / f"{model}.yaml").is_file()


def start(args, argv: list[str]) -> Outcome:
    """A new outcome, or with ``--resume`` the saved one, whose comparisons are not run again."""
    command = shlex.join(["python", "-m", "experiments.reference", *argv])
    saved = args.out / "reference.json"
    if not (args.resume and saved.is_file()):
        return Outcome(command=command, args=vars(args), commits=[describe(git_commit())])
    outcome = Outcome.from_json(json.loads(saved.read_text()))
    outcome.command = f"{outcome.command}; then {command}"
    outcome.commits.append(describe(git_commit()))
    return outcome


def run(args, outcome: Outcome, save) -> Outcome:
    """Every comparison of ``args`` that ``outcome`` lacks; ``save(outcome)`` after each, so that an
    interrupted check keeps what it measured."""
    torch.set_num_threads(args.threads)
    if args.fuxictr_zoo:
        outcome.zoo = zoo_version(args.fuxictr_zoo)
    parts = args.parts.split(",")
    outcome.note_load("start")
    cache = args.workdir / "cache"
    for data in datasets(args):
        if "preprocessing" in parts:
            compare_preprocessing(data, cache, outcome, save)
        if "steps" in parts:
            compare_steps(args, data, cache, outcome, save)
        if "training" in parts and data["name"] == "frappe_like":
            compare_training(args, data, cache, outcome, save)
    return outcome


def compare_preprocessing(data: dict, cache: Path, outcome: Outcome, save) -> None:
    for min_count in data["min_counts"]:
        if outcome.has("preprocessing", dataset=data["name"], min_count=min_count):
            continue
        cfg = check.preset_config(
            data["experiment"], "deepfm", data["ours"], cache, [f"data.encoding.min_count={min_count}"]
        )
        sizes, encoded = check.fuxictr_encoding(
            check.processor_class(data["processor"]), data["columns"], data["label"], data["theirs"], min_count
        )
        result = check.compare_preprocessing(data["name"], check.datamodule(cfg), sizes, encoded, min_count)
        outcome.preprocessing.append(result)
        save(outcome)
        print(
            f"preprocessing {data['name']} min_count {min_count}: {result.mismatched_ids} of "
            f"{result.total_ids:,} ids differ",
            flush=True,
        )


def compare_steps(args, data: dict, cache: Path, outcome: Outcome, save) -> None:
    for name in [m for m in args.models.split(",") if has_preset(data["experiment"], m)]:
        if outcome.has("steps", dataset=data["name"], model=name):
            continue
        cfg = check.preset_config(data["experiment"], name, data["ours"], cache)
        result = check.compare_steps(
            name, cfg, check.datamodule(cfg), data["name"], args.steps, 0, args.workdir / "steps", args.fuxictr_zoo
        )
        outcome.steps.append(result)
        save(outcome)
        print(
            f"steps {data['name']} {name}: relative loss gap {result.max_relative_gap_64:.1e} in float64, "
            f"{result.max_relative_gap:.1e} in float32 (FuxiCTR against itself: "
            f"{result.max_relative_floor:.1e})",
            flush=True,
        )


def compare_training(args, data: dict, cache: Path, outcome: Outcome, save) -> None:
    seeds = dict(item.split("=") for item in filter(None, args.more_seeds.split(",")))
    for name in [m for m in args.training_models.split(",") if has_preset(data["experiment"], m)]:
        cfg = check.preset_config(data["experiment"], name, data["ours"], cache)
        dm = check.datamodule(cfg)
        for seed in range(int(seeds.get(name, args.seeds))):
            for library in ("ctr-bench", "FuxiCTR"):
                if outcome.has("training", dataset=data["name"], model=name, seed=seed, library=library):
                    continue
                if library == "ctr-bench":
                    runs = args.workdir / "runs" / f"{name}_{seed}"
                    result = check.train_ours(name, cfg, data["name"], seed, runs)
                else:
                    result = check.train_theirs(
                        name, cfg, dm, data["name"], seed, args.workdir / "runs", args.fuxictr_zoo
                    )
                outcome.training.append(result)
                save(outcome)
                print(
                    f"training {name} seed {seed} {result.library}: test AUC {result.test_auc:.5f} after "
                    f"{result.epochs} epochs, {result.seconds:.0f} s",
                    flush=True,
                )


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    outcome = start(args, argv)
    started, earlier = time.perf_counter(), outcome.seconds

    def save(outcome: Outcome) -> bool:
        outcome.seconds = earlier + time.perf_counter() - started
        passed = write_report(outcome, args.out, args.step_tolerance, args.auc_tolerance)
        (args.out / "reference.json").write_text(json.dumps(outcome.to_json(), indent=1, default=str))
        return passed

    outcome = run(args, outcome, save)
    outcome.note_load("end")
    passed = save(outcome)
    print(f"wrote {args.out / 'README.md'}: {'every comparison passed' if passed else 'some comparisons FAILED'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
