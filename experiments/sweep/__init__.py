"""Optuna sweeps: the sweeper behind ``python run.py -m hparams_search=...`` and the tuned comparison.

- ``sweeper``: ``DistributedOptunaSweeper`` (many workers on one study, heartbeats, retries, time
  limit), its sampler and the storage callback;
- ``pruning``: the sweeper's side of pruning (the run's side is ``experiments.run.trial``);
- ``tuned``: ``python -m experiments.sweep.tuned``, every model tuned on one budget, then re-run
  over seeds and reported.

May import ``experiments.run``, ``experiments.report`` and ``measures``.
"""
