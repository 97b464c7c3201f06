"""On-demand benchmarks (never part of the tests): their numbers go to ``results/benchmarks/<name>/``.

- ``python -m experiments.benchmark``: training throughput per model against this machine's
  matmul roofline, the Trainer against a bare loop (``workload``, ``throughput``, ``report``);
- ``python -m experiments.benchmark.data``: encoding and loading rates of Criteo-format files;
- ``python -m experiments.benchmark.scale``: the app on a full-Criteo-sized file, wall time and memory;
- ``python -m experiments.benchmark.paper_scale``: the paper's nine models one epoch each on such a file;
- ``python -m experiments.benchmark.peers``: ctr-bench against DeepCTR-Torch and FuxiCTR, side by side
  (each library's pipeline in ``peer_pipelines``);
- ``machine``: what the data benchmarks record of the machine and the code (from ``measures.environment``).

May import ``experiments.run``, ``experiments.report``, ``experiments.reference`` (its runner and
data), ``models``, ``datamodules`` and ``measures``.
"""
