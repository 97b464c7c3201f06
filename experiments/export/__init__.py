"""A finished run as a graph of plain tensors: ``python -m experiments.export RUN_DIR --format onnx|torchscript
--out DIR``.

``DIR`` holds the graph (``model.onnx`` or ``model.pt``), ``encoding/`` (the run's saved encoding,
``datamodules.bundle``) and ``export.json`` (inputs, output, model, exporter). The graph takes
``ids`` int64 ``[B, S]`` (global ids, the encoding's field order) and, where the schema has dense
fields, ``dense`` float32 ``[B, D]``; it returns ``probability`` float32 ``[B]``, the sigmoid of the
model's logit; ``B`` is dynamic. Both exporters trace the model under ``torch.no_grad`` (the
TorchScript tracer, and ONNX's TorchScript-based exporter, ``dynamo=False``).

Imports ``experiments.predict`` (the run's model and encoding), ``experiments.run``, ``models``,
``datamodules`` and ``measures``; nothing above them.
"""
