"""How ``benchmark.md`` shows the reports of the benchmarks run apart from it (the full-scale run
takes hours, the peers need optional libraries): each is copied below a line naming its file, its
headings one level down, and a new run of any of them rewrites that tail."""
from __future__ import annotations

from pathlib import Path

EMBEDDED = ("benchmark_peers.md", "benchmark_scale.md", "benchmark_paper_scale.md")
MARK = "\n_Embedded from ["


def header(name: str) -> str:
    return f"{MARK}{name}]({name}):_\n"


def with_embedded(text: str, out: Path) -> str:
    """``text`` (its own part, anything embedded before dropped) followed by each report of ``EMBEDDED``
    that exists in ``out``."""
    text = text.split(MARK)[0]
    for name in EMBEDDED:
        if (out / name).exists():
            lines = (out / name).read_text().splitlines()
            text += header(name) + "\n" + "\n".join("#" + line if line.startswith("#") else line
                                                    for line in lines) + "\n"
    return text


def refresh(out: Path) -> None:
    """Re-embed into ``out/benchmark.md``, where the training benchmark wrote one."""
    report = out / "benchmark.md"
    if report.exists():
        report.write_text(with_embedded(report.read_text(), out))
