"""How ``benchmark.md`` shows the reports of the benchmarks run apart from it (the full-scale run
takes hours, the peers need optional libraries): each is copied below a line naming its file, its
headings one level down, and a new run of any of them rewrites that tail.

In the committed layout each benchmark has its own folder of ``results/benchmarks/`` (the training
benchmark's is ``training``), so a report is looked for in its folder beside the training one's; a
call that writes every report into one other ``--out`` finds them side by side instead."""

from __future__ import annotations

import os
from pathlib import Path

TRAINING = "training"
# (folder in results/benchmarks/, file) of each embedded report
EMBEDDED = (
    ("peers", "benchmark_peers.md"),
    ("scale", "benchmark_scale.md"),
    ("paper_scale", "benchmark_paper_scale.md"),
)
MARK = "\n_Embedded from ["


def header(name: str) -> str:
    return f"{MARK}{name}]({name}):_\n"


def _home(out: Path, folder: str) -> Path:
    """Where the report of ``folder`` is, for a report written to ``out``."""
    committed_layout = out.name in {TRAINING, *(f for f, _ in EMBEDDED)}
    return out.parent / folder if committed_layout else out


def with_embedded(text: str, out: Path) -> str:
    """``text`` (its own part, anything embedded before dropped) followed by each report of ``EMBEDDED``
    that exists, linked relative to ``out``."""
    text = text.split(MARK)[0]
    for folder, name in EMBEDDED:
        path = _home(out, folder) / name
        if path.exists():
            lines = path.read_text().splitlines()
            text += (
                header(Path(os.path.relpath(path, out)).as_posix())
                + "\n"
                + "\n".join("#" + line if line.startswith("#") else line for line in lines)
                + "\n"
            )
    return text


def refresh(out: Path) -> None:
    """Re-embed into the training benchmark's ``benchmark.md``, where it wrote one."""
    report = _home(out, TRAINING) / "benchmark.md"
    if report.exists():
        report.write_text(with_embedded(report.read_text(), report.parent))
