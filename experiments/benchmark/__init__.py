"""On-demand benchmarks (never part of the tests): their numbers go to ``results/benchmarks/<name>/``.

- ``python -m experiments.benchmark``: training throughput per model against this machine's
  matmul roofline, the Trainer against a bare loop (``workload``, ``throughput``, ``report``);
- ``python -m experiments.benchmark.data``: encoding and loading rates of Criteo-format files;
- ``python -m experiments.benchmark.scale``: the app on a full-Criteo-sized file, wall time and memory;
- ``python -m experiments.benchmark.paper_scale``: the paper's nine models one epoch each on such a file;
- ``python -m experiments.benchmark.serving``: serving latency per model (p50/p99 at 1, 64 and 1,024 rows,
  rows/s at 4,096) for torch eager, TorchScript and ONNX Runtime, the graphs of ``experiments.export``
  (which imports ``experiments.predict``), and their sizes on disk;
- ``python -m experiments.benchmark.peers``: ctr-bench against DeepCTR-Torch and FuxiCTR, side by side
  (each library's pipeline in ``peer_pipelines``);
- ``machine``: what the data benchmarks record of the machine and the code (from ``measures.environment``).

May import ``experiments.export``, ``experiments.predict``, ``experiments.run``, ``experiments.report``,
``experiments.reference`` (its runner and data), ``models``, ``datamodules`` and ``measures``.
"""
