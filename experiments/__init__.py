"""Everything around the models and the data, one concern per package:

- ``experiments.run``: what one run does around ``fit`` (config, training and testing, metrics,
  epoch history, the DDP world, reporting to a sweep's trial). ``run.py`` is its Hydra entry point.
- ``experiments.sweep``: Optuna sweeps (the sweeper, its storage, pruning) and the tuned comparison.
- ``experiments.report``: run folders -> tables and plots; ``results/README.md``, the index of the results.
- ``experiments.benchmark``: on-demand speed and memory benchmarks (throughput, data, full scale).

Imports run downward only: ``sweep`` and ``benchmark`` may import ``run`` and ``report``; ``report``
imports nothing else of ``experiments``; ``run`` imports only ``models`` and ``datamodules``;
nothing here imports ``run.py``.
"""
