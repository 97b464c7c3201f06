"""Proof that the BARS presets run FuxiCTR's protocol: ``python -m experiments.reference``.

- ``fuxictr_models``: the reference models, composed from FuxiCTR's installed layers;
- ``weights``: their parameters copied into ours, for runs from identical weights;
- ``data``: a generated Frappe-shaped dataset in both Frappe formats, the Criteo sample as Criteo_x4;
- ``check``: the comparisons (preprocessing, step by step, full training);
- ``report``: ``results/checks/reference/README.md``.

Needs FuxiCTR (``pip install -e ".[reference]"``), which nothing else in the suite imports. May
import ``experiments.run``, ``experiments.report`` (where results go), ``models``, ``datamodules`` and
``measures``, never ``experiments.benchmark``.
"""
