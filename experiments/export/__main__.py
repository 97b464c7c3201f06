"""``python -m experiments.export RUN_DIR --format onnx|torchscript --out DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.errors import BadInputError
from experiments.export.graph import FORMATS, export_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.export",
        description="Export a finished run's best checkpoint as a graph of plain tensors, its encoding beside it.",
    )
    parser.add_argument("run_dir", type=Path, help="a finished run's folder (checkpoints/best.ckpt, encoding/)")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--out", type=Path, required=True, help="the bundle's folder (replaced if it exists)")
    args = parser.parse_args(argv)
    try:
        meta = export_run(args.run_dir, args.format, args.out)
    except (BadInputError, ModuleNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    inputs = ", ".join(i["name"] for i in meta["inputs"])
    print(f"{args.out}: {meta['graph']} of {meta['model']}, inputs {inputs}, output probability")
    return 0


if __name__ == "__main__":
    sys.exit(main())
