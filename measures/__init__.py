"""Measurements that need no framework, for every other package to share:

- ``metrics``: exact AUC, LogLoss and calibration of predictions (numpy);
- ``environment``: the machine, libraries, git commit and process a number was measured on (stdlib).

A leaf: imports nothing of ``models``, ``datamodules`` or ``experiments``, nor torch, pandas,
pyarrow or Lightning, so that anything may import it, the reports and the cache builder included.
"""
