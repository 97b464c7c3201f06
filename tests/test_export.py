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
from tests.serving import tiny_run

QUICK = ("deepfm", "ffm", "hfm")  # the custom-gradient and FFT layers; the rest of the zoo runs in the slow suite
ROWS, SINGLE_ROWS, BATCH, TOLERANCE = 10_000, 256, 4096, 1e-5


def random_rows(schema, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``[rows, S]`` ids, each field's drawn over its own id range; float32 ``[rows, D]`` N(0, 1)."""
    rng = np.random.default_rng(seed)
    ids = np.stack([f.offset + rng.integers(0, f.vocab_size, rows) for f in schema.sparse_fields], axis=1)
    return ids.astype(np.int64), rng.standard_normal((rows, schema.num_dense)).astype(np.float32)


def onnx_scorer(bundle: Path):
    ort = pytest.importorskip("onnxruntime", reason="needs the [export] extra: pip install -e '.[export]'")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda ids, dense: session.run(None, dict(zip(names, (ids, dense))))[0]


def torchscript_scorer(bundle: Path):
    graph = torch.jit.load(str(bundle / "model.pt"))

    def score(ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            inputs = (ids, dense) if dense.shape[1] else (ids,)  # a schema without dense fields: ids alone
            return graph(*map(torch.from_numpy, inputs)).numpy()

    return score


def largest_differences(score, reference: np.ndarray, ids: np.ndarray, dense: np.ndarray) -> tuple[float, float]:
    """The largest |graph - reference| over all rows in batches of ``BATCH``, and over the first rows one by one."""
    batched = np.concatenate([score(ids[i : i + BATCH], dense[i : i + BATCH]) for i in range(0, len(ids), BATCH)])
    single = np.concatenate([score(ids[i : i + 1], dense[i : i + 1]) for i in range(SINGLE_ROWS)])
    assert batched.shape == reference.shape and batched.dtype == np.float32
    return float(np.abs(batched - reference).max()), float(np.abs(single - reference[:SINGLE_ROWS]).max())


@pytest.mark.parametrize(
    "model", [pytest.param(e.name, marks=() if e.name in QUICK else pytest.mark.slow) for e in ZOO]
)
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_the_exported_graph_gives_the_lightning_models_probabilities(model, format, tmp_path):
    if format == "onnx":
        pytest.importorskip("onnx", reason="needs the [export] extra: pip install -e '.[export]'")
    run_dir = tiny_run(model, tmp_path, "data.encoding.numeric=dense")
    lightning = RunModel(run_dir)  # the checkpoint's model, as experiments.predict scores with it
    meta = export_run(run_dir, format, tmp_path / "bundle")
    shutil.rmtree(run_dir)  # the bundle stands alone
    assert [i["name"] for i in meta["inputs"]] == ["ids", "dense"] and meta["model"] == model
    assert (tmp_path / "bundle" / ENCODING_DIR / "encoding.json").is_file()
    assert json.loads((tmp_path / "bundle" / EXPORT_FILE).read_text()) == meta
    scorer = (onnx_scorer if format == "onnx" else torchscript_scorer)(tmp_path / "bundle")
    ids, dense = random_rows(lightning.model.schema, ROWS)
    batched, single = largest_differences(scorer, lightning.probabilities(ids, dense), ids, dense)
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
    ids, dense = random_rows(lightning.model.schema, 4096)
    batched, single = largest_differences(
        torchscript_scorer(tmp_path / "ts"), lightning.probabilities(ids, dense), ids, dense[:, :0]
    )
    assert batched <= TOLERANCE and single <= TOLERANCE
