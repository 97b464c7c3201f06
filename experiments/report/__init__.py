"""Results: run folders -> ``results/tables/<dataset>/table.{md,csv,tex}``, plots and the report's README;
``results/README.md``, the index of everything under ``results/``.

- ``collect``: read finished run folders into one DataFrame (and the runs left out, with reasons);
- ``tables``: one table per dataset (means over seeds, the oracle and the published reference);
- ``predictions``: the runs' saved test predictions, read once per report;
- ``significance``: each model against the best (intervals, Holm-adjusted p-values), from those;
- ``render``: a table as table.md, table.csv and table.tex;
- ``stats``: which differences are real (DeLong, paired LogLoss, Holm) and calibration;
- ``plots``: the seaborn figures beside each table;
- ``ab``: two settings of the same runs side by side (``python -m experiments.report.ab``: e.g. bf16
  against float32), with the significance of each model's difference;
- ``scaling``: the data-scaling table and plot (test AUC against training rows, with the ceilings);
- ``references``/``references.yaml``: published numbers to compare with;
- ``naming``: the models' printed names and order;
- ``writer``: the whole report, ``python -m experiments.report``; ``readme``: its README;
- ``layout``: where the committed results live (``results/tables``, ``results/checks``, ``results/benchmarks``);
- ``index``: ``results/README.md``, the index of all of them (``python -m experiments.report.index``);
- ``callback``: the Hydra callback that reports a multirun when it ends.

Imports nothing else of ``experiments``, of ``models`` only ``models.registry`` (the zoo as data),
besides them only ``measures`` of the suite, and neither torch nor Lightning: reports can be made
where no model can be trained.
"""
