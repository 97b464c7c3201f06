"""Where the committed results live, relative to the repository root (the commands run from there).

- ``results/tables/<name>/``: comparison tables of models (``python -m experiments.report``, its
  ``scaling`` report, the tuned protocol);
- ``results/checks/<name>/``: the checks behind a default or a claim (``python -m experiments.report.ab``,
  ``python -m experiments.reference``);
- ``results/benchmarks/<name>/``: speed and memory (``python -m experiments.benchmark`` and its modules);
- ``results/README.md``: the index of all of them (``python -m experiments.report.index``).
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")
TABLES = RESULTS / "tables"
CHECKS = RESULTS / "checks"
BENCHMARKS = RESULTS / "benchmarks"
# how each report's numbers were made (command, date, commit, machine): what the index reads first
PROVENANCE_FILE = "provenance.json"
STUDIES_DIR = "studies"  # a report's Optuna studies, one folder each
