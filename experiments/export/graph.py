"""A trained model as a graph of plain tensors: ``ScoringGraph`` and the two exporters."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from datamodules.bundle import ENCODING_DIR, replacing_folder
from datamodules.errors import BadInputError
from datamodules.schema import Batch
from experiments.predict.score import RunModel
from models.base import CTRModule
from models.registry import ZOO

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
EXPORT_FILE = "export.json"
OPSET = 18


class ScoringGraph(nn.Module):
    """``ids`` int64 ``[B, S]`` global ids (then ``dense`` float32 ``[B, D]`` where the schema has dense
    fields, then ``multi`` int64 ``[B, T]``, ``Batch.x_multi``, where it has multi-valued ones) ->
    float32 ``[B]`` click probabilities, ``sigmoid`` of the model's logit."""

    def __init__(self, model: CTRModule):
        super().__init__()
        self.model = model.eval()
        self.has_dense = model.schema.num_dense > 0
        self.has_multi = len(model.schema.multi_fields) > 0
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)  # the embeddings' plain lookup, not their training gradient
        self.eval()  # the exporters put back the mode they found, to this module and all it holds

    def forward(self, ids: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        # the inputs a schema has, in input_names' order: a graph takes no input it would ignore
        dense = more[0] if self.has_dense else None
        multi = more[-1] if self.has_multi else None
        return torch.sigmoid(self.model(Batch(ids, None, dense, multi)))

    def example(self, rows: int = 8) -> tuple[torch.Tensor, ...]:
        """Inputs of ``rows`` rows (id 0 of each field, zeros, lists of padding): what the exporters trace."""
        schema = self.model.schema
        inputs = [torch.tensor([[f.offset for f in schema.sparse_fields]] * rows, dtype=torch.int64)]
        if self.has_dense:
            inputs.append(torch.zeros(rows, schema.num_dense))
        if self.has_multi:
            padding = [f.offset + f.padding_id for f in schema.multi_fields for _ in range(f.max_len)]
            inputs.append(torch.tensor([padding] * rows, dtype=torch.int64))
        return tuple(inputs)

    def input_names(self) -> list[str]:
        return ["ids"] + (["dense"] if self.has_dense else []) + (["multi"] if self.has_multi else [])

    def inputs(self) -> list[dict]:
        """The inputs' names, types and shapes, for ``export.json``."""
        schema = self.model.schema
        shapes = {
            "ids": ("int64", schema.num_sparse),
            "dense": ("float32", schema.num_dense),
            "multi": ("int64", schema.multi_width),
        }
        return [{"name": n, "dtype": shapes[n][0], "shape": ["batch", shapes[n][1]]} for n in self.input_names()]


def export_torchscript(graph: ScoringGraph, path: Path) -> None:
    graph.model._jit_is_scripting = True  # Lightning's flag: its `trainer` property then answers None, not an error
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # shape checks of the layers (a dense width, a field count) are constants of the graph, as they should be
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(graph, graph.example(), check_trace=False)
    finally:
        graph.model._jit_is_scripting = False
    traced.save(str(path))


def export_onnx(graph: ScoringGraph, path: Path) -> None:
    """The TorchScript-based exporter (``dynamo=False``), batch axis dynamic."""
    names = graph.input_names()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            graph.example(),
            str(path),
            input_names=names,
            output_names=["probability"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "probability": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def export_run(run_dir: str | Path, format: str, out: str | Path) -> dict:
    """Write ``out`` (replaced whole, ``datamodules.bundle.replacing_folder``): the graph,
    ``encoding/`` and ``export.json``. -> the contents of ``export.json``."""
    if format not in FORMATS:
        raise BadInputError(f"--format must be one of {sorted(FORMATS)}, got {format!r}")
    run, out = RunModel(run_dir), Path(out)
    precision = str(run.saved.scoring.get("precision", "32"))
    if format == "onnx" and precision != "32":
        raise BadInputError(
            f"{run_dir}: a run at precision={precision} exports to ONNX as a graph that ONNX Runtime's CPU "
            f"provider cannot load (it has no bfloat16 Gemm); export it with --format torchscript"
        )
    graph = ScoringGraph(run.model)
    with replacing_folder(out) as temporary:
        (export_onnx if format == "onnx" else export_torchscript)(graph, temporary / FORMATS[format])
        shutil.copytree(run.saved.folder, temporary / ENCODING_DIR)
        meta = {
            "format": format,
            "graph": FORMATS[format],
            "model": model_name(run.model),
            "inputs": graph.inputs(),
            "output": {"name": "probability", "dtype": "float32", "shape": ["batch"], "is": "sigmoid(logit)"},
            "exporter": f"torch {torch.__version__} "
            + (f"torch.onnx.export(dynamo=False), opset {OPSET}" if format == "onnx" else "torch.jit.trace"),
            "encoding": ENCODING_DIR,
        }
        (temporary / EXPORT_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def model_name(model: CTRModule) -> str:
    """The zoo's name of the model's class, else the class name."""
    target = f"{type(model).__module__}:{type(model).__name__}"
    return next((e.name for e in ZOO if e.target == target), type(model).__name__)
