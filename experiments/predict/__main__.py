"""``python -m experiments.predict RUN_DIR INPUT [--out OUTPUT] [--id-column C]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from datamodules.errors import BadInputError
from experiments.predict.score import score_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.predict",
        description="Score raw rows (in the run's source format) with a finished run's best checkpoint.",
    )
    parser.add_argument("run_dir", type=Path, help="a finished run's folder (checkpoints/best.ckpt, encoding/)")
    parser.add_argument("input", type=Path, help="raw rows in the format the run's source reads")
    parser.add_argument("--out", type=Path, default=None, help="OUTPUT.csv or .parquet (default INPUT.scored.csv)")
    parser.add_argument("--id-column", default=None, help="a column of the input (CSV/Parquet) copied to the output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or args.input.with_name(args.input.name + ".scored.csv")
    try:
        summary = score_file(args.run_dir, args.input, out, args.id_column, progress=not args.no_progress)
    except (BadInputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{out}: {summary['rows_scored']} rows scored, {summary['rows_rejected']} rejected"
        + (f" ({summary['rejected_by_reason']})" if summary["rows_rejected"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
