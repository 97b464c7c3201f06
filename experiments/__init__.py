"""Everything around the models and the data, one concern per package:

- ``experiments.run``: what one run does around ``fit`` (config, training and testing, metrics,
  epoch history, the DDP world, reporting to a sweep's trial). ``run.py`` is its Hydra entry point.
- ``experiments.sweep``: Optuna sweeps (the sweeper, its storage, pruning) and the tuned comparison.
- ``experiments.report``: run folders -> tables and plots; ``results/README.md``, the index of the results.
- ``experiments.benchmark``: on-demand speed and memory benchmarks (throughput, data, full scale).
- ``experiments.reference``: the BARS presets side by side with FuxiCTR.
- ``experiments.predict``: a finished run scoring raw rows (its saved encoding and best checkpoint).
- ``experiments.export``: a finished run as an ONNX or TorchScript graph with its encoding beside it.

Imports run downward only (``tests/test_layering.py`` holds the rules as one table and checks them):
``run`` and ``report`` at the bottom, ``run`` importing only ``models``, ``datamodules`` and
``measures``, ``report`` only ``measures`` and ``models.registry``; above them ``sweep`` (``run``,
``report``), ``reference`` (``run``, ``report``, ``models``, ``datamodules``), ``predict`` (``run``,
``models``, ``datamodules``), ``export`` (``predict`` and what it imports) and ``benchmark`` (all of
these, ``reference``'s runner included). ``measures``, a leaf, is open to all. Nothing imports a
``__main__`` module or ``run.py``.
"""
