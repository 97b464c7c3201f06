"""Exported graphs (``python -m experiments.export``): ONNX Runtime and TorchScript give the
Lightning model's probabilities within 1e-5 on 10,000 rows, in batches of 4,096 (the last one
shorter) and of 1 (the first 256 rows), for every model of the zoo; the bundle holds the encoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.bundle import ENCODING_DIR
from datamodules.errors import BadInputError
from experiments.export.__main__ import main as export_main
from experiments.export.graph import EXPORT_FILE, export_run
from experiments.predict.score import RunModel
from models.registry import ZOO
from tests.serving import tiny_genre_run, tiny_run

QUICK = ("deepfm", "ffm", "hfm")  # the custom-gradient and FFT layers; the rest of the zoo runs in the slow suite
QUICK_LISTS = ("deepfm", "ffm")  # with a multi-valued field (input ``multi``)
ROWS, SINGLE_ROWS, BATCH, TOLERANCE = 10_000, 256, 4096, 1e-5


def random_rows(schema, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A graph's inputs by name: ``ids`` int64 ``[rows, S]``, each field's drawn over its own id range;
    ``dense`` float32 ``[rows, D]`` N(0, 1) where the schema has dense fields; ``multi`` int64 ``[rows, T]``
    where it has multi-valued ones: per field, lists of 0 to ``max_len`` ids, padded."""
    rng = np.random.default_rng(seed)
    ids = np.stack([f.offset + rng.integers(0, f.vocab_size, rows) for f in schema.sparse_fields], axis=1)
    inputs = {"ids": ids.astype(np.int64)}
    if schema.num_dense:
        inputs["dense"] = rng.standard_normal((rows, schema.num_dense)).astype(np.float32)
    if schema.multi_fields:
        columns = []
        for f in schema.multi_fields:
            tokens = f.offset + rng.integers(0, f.vocab_size, (rows, f.max_len))
            length = rng.integers(0, f.max_len + 1, (rows, 1))
            columns.append(np.where(np.arange(f.max_len) < length, tokens, f.offset + f.padding_id))
        inputs["multi"] = np.concatenate(columns, axis=1).astype(np.int64)
    return inputs


def reference(run: RunModel, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The checkpoint's model's probabilities, as experiments.predict scores with it."""
    return run.probabilities(inputs["ids"], inputs.get("dense"), inputs.get("multi"))


def onnx_scorer(bundle: Path):
    ort = pytest.importorskip("onnxruntime", reason="needs the [export] extra: pip install -e '.[export]'")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, {n: inputs[n] for n in names})[0]


def torchscript_scorer(bundle: Path):
    graph = torch.jit.load(str(bundle / "model.pt"))
    names = [i["name"] for i in json.loads((bundle / EXPORT_FILE).read_text())["inputs"]]

    def score(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return graph(*(torch.from_numpy(inputs[n]) for n in names)).numpy()

    return score


def largest_differences(score, expected: np.ndarray, inputs: dict[str, np.ndarray]) -> tuple[float, float]:
    """The largest |graph - expected| over all rows in batches of ``BATCH``, and over the first rows one by one."""

    def rows(start: int, stop: int) -> dict[str, np.ndarray]:
        return {n: a[start:stop] for n, a in inputs.items()}

    count = len(inputs["ids"])
    batched = np.concatenate([score(rows(i, i + BATCH)) for i in range(0, count, BATCH)])
    single = np.concatenate([score(rows(i, i + 1)) for i in range(SINGLE_ROWS)])
    assert batched.shape == expected.shape and batched.dtype == np.float32
    return float(np.abs(batched - expected).max()), float(np.abs(single - expected[:SINGLE_ROWS]).max())


@pytest.mark.parametrize(
    ("model", "lists"),
    [
        pytest.param(e.name, lists, marks=() if e.name in quick else pytest.mark.slow, id=e.name + "-lists" * lists)
        for lists, quick in ((False, QUICK), (True, QUICK_LISTS))
        for e in ZOO
    ],
)
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_the_exported_graph_gives_the_lightning_models_probabilities(model, lists, format, tmp_path):
    if format == "onnx":
        pytest.importorskip("onnx", reason="needs the [export] extra: pip install -e '.[export]'")
    run_dir = (tiny_genre_run if lists else tiny_run)(model, tmp_path, "data.encoding.numeric=dense")
    lightning = RunModel(run_dir)  # the checkpoint's model, as experiments.predict scores with it
    meta = export_run(run_dir, format, tmp_path / "bundle")
    shutil.rmtree(run_dir)  # the bundle stands alone
    assert [i["name"] for i in meta["inputs"]] == ["ids", "dense", *["multi"] * lists] and meta["model"] == model
    assert (tmp_path / "bundle" / ENCODING_DIR / "encoding.json").is_file()
    assert json.loads((tmp_path / "bundle" / EXPORT_FILE).read_text()) == meta
    scorer = (onnx_scorer if format == "onnx" else torchscript_scorer)(tmp_path / "bundle")
    inputs = random_rows(lightning.model.schema, ROWS)
    batched, single = largest_differences(scorer, reference(lightning, inputs), inputs)
    assert batched <= TOLERANCE and single <= TOLERANCE, (batched, single)


def test_export_refuses_an_unknown_format_and_a_folder_that_is_no_run(tmp_path, capsys):
    assert export_main([str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "b")]) == 2
    assert "no saved encoding" in capsys.readouterr().err and not (tmp_path / "b").exists()
    with pytest.raises(SystemExit):
        export_main([str(tmp_path), "--format", "tflite", "--out", str(tmp_path / "b")])


def test_a_bf16_run_exports_to_torchscript_and_onnx_says_why_not(tmp_path):
    run_dir = tiny_run("deepfm", tmp_path, "precision=bf16")
    with pytest.raises(BadInputError, match=r"no bfloat16 Gemm\); export it with --format torchscript"):
        export_run(run_dir, "onnx", tmp_path / "onnx")
    export_run(run_dir, "torchscript", tmp_path / "ts")
    lightning = RunModel(run_dir)
    inputs = random_rows(lightning.model.schema, 4096)
    batched, single = largest_differences(torchscript_scorer(tmp_path / "ts"), reference(lightning, inputs), inputs)
    assert batched <= TOLERANCE and single <= TOLERANCE
