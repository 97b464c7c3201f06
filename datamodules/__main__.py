"""Build (or find) a dataset's cache and print its schema and manifest summary.

    python -m datamodules [DATA_CONFIG] [OVERRIDE ...]

DATA_CONFIG names a ``conf/data/*.yaml`` file (default: synthetic); overrides use Hydra syntax,
with or without the ``data.`` prefix that ``run.py`` needs, e.g.

    python -m datamodules criteo data.source.path=train.txt on_bad_line=skip
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from datamodules.errors import BadInputError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def load_datamodule(config: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [o if o.startswith(("data.", "+data.", "~data.")) else f"data.{o}" for o in overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        cfg = compose(config_name=None, overrides=[f"+data={config}", "+seed=0", *overrides])
    return instantiate(cfg.data, _execution_whitelist_=["datamodules.*"])


def summary(dm) -> str:
    m = dm.manifest
    lines = [
        f"dataset {dm.name}: cache {dm.cache_path}",
        f"rows read {m['rows_read']:,}, kept {m['rows_kept']:,}, rejected {m['rows_rejected']:,}",
    ]
    lines += [f"  rejected: {n:,} {reason}" for reason, n in m["rejected_by_reason"].items()]
    for split, s in m["splits"].items():
        rate = "unlabelled" if s["positive_rate"] is None else f"positive rate {s['positive_rate']:.4f}"
        lines.append(f"  {split:5s} {s['rows']:>12,} rows, {rate}")
    lines.append(f"built in {m['seconds']['total']} s ({m['rows_per_second']:,} rows/s)")
    schema = dm.schema
    multi = f" + {len(schema.multi_fields)} multi-valued" if schema.multi_fields else ""
    lines.append(f"schema: {schema.num_sparse} sparse{multi} + {schema.num_dense} dense fields, {schema.num_ids:,} ids")
    lines += [
        f"  {f.name:16s} {f.kind:11s} "
        + ("dense" if f.dense else f"vocab {f.vocab_size:,} from id {f.offset:,}")
        + (f", up to {f.max_len} per row, {f.pooling}-pooled" if f.multi else "")
        for f in schema.fields
    ]
    for name, stats in m.get("multi_valued", {}).items():
        lines.append(
            f"  {name}: list length mean {stats['mean']}, p50 {stats['p50']}, p99 {stats['p99']}, max {stats['max']}; "
            f"{stats['truncated']:,} lists cut to {stats['max_len']} (keep {stats['keep']}), {stats['empty']:,} empty"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="synthetic", help="conf/data/<config>.yaml")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. source.path=train.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        dm = load_datamodule(args.config, args.overrides)
        print(summary(dm))
    except Exception as error:  # Hydra wraps what the datamodule raised; show the data problem alone
        cause = error
        while cause is not None and not isinstance(cause, BadInputError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        sys.exit(f"error: {cause}")


if __name__ == "__main__":
    main()
