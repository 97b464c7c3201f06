"""What one run does around ``fit``: ``python run.py`` is ``train`` inside a Hydra job.

- ``config``: where the configs live, what they may instantiate, ``compose_config`` for tools and
  tests, and the resolvers the configs use;
- ``train``: fit, restore the best epoch, validate, test, write ``metrics.json``;
- ``objective``: which validation metrics are optimised, and in which direction;
- ``plateau``: after each validation, the best epoch, the learning-rate decay and early stopping;
- ``threads``: how many torch threads a run uses (``threads: auto`` follows the free CPUs);
- ``memory``: the run's own peak resident memory, also when a multirun's runs share a process;
- ``output``: per-epoch lines outside a terminal, library notices kept quiet;
- ``summary``: the lines a run ends with; ``errors``: a user's mistake as one or two lines;
- ``history``: ``history.csv``, one row per epoch, and the training throughput;
- ``ddp``: one DDP world per run, also inside multiruns;
- ``trial``: a sweep trial's pruning, reported to its study after every epoch.

May import ``models``, ``datamodules`` and ``measures``, never the other rooms of ``experiments``.
"""
