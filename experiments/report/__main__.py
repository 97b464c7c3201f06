"""``python -m experiments.report <run or sweep folders> [--out DIR]``: see ``experiments.report.writer``."""

import sys

from experiments.report.writer import main

sys.exit(main())
