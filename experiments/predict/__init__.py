"""Scoring raw rows with a finished run: ``python -m experiments.predict RUN_DIR INPUT [--out OUTPUT]``.

The run folder's ``encoding/`` (``datamodules.bundle``) names the source that reads the input and
holds the fitted encoding; ``checkpoints/best.ckpt`` holds the weights. ``score.py`` streams the
input chunk by chunk through the source's reader and ``Encoding.encode`` (the cache's own code), in
batches of the run's evaluation batch size, and writes ``probability`` per row.

Imports ``experiments.run`` (atomic writes), ``models`` (``CTRModule.from_checkpoint``),
``datamodules`` (sources, encoding) and ``measures``; nothing above them.
"""
