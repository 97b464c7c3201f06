"""``examples/score_onnx.py``, the stand-alone ONNX scorer: on the same raw files (CSV and Parquet,
labelled or not, with a bad row) it writes what ``python -m experiments.predict`` writes, the
probabilities within 1e-5, and it imports nothing of ctr-bench."""

from __future__ import annotations

import ast
import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from experiments.export.graph import export_run
from experiments.predict.score import score_file
from tests.helpers import REPO
from tests.serving import criteo_files, files_override, tiny_genre_run, tiny_run

pytest.importorskip("onnxruntime", reason="needs the [export] extra: pip install -e '.[export]'")
SCRIPT = REPO / "examples" / "score_onnx.py"
ALLOWED = {"onnxruntime", "numpy", "pyarrow"}


def example():
    spec = importlib.util.spec_from_file_location("score_onnx", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_imports_only_the_standard_library_numpy_onnxruntime_and_pyarrow():
    imported = {
        alias.name.split(".")[0] if isinstance(node, ast.Import) else node.module.split(".")[0]
        for node in ast.walk(ast.parse(SCRIPT.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
        for alias in node.names
    }
    assert imported - set(sys.stdlib_module_names) == ALLOWED


def both(tmp_path, bundle, run_dir, input_path, suffix: str, id_column=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The example's and experiments.predict's output for ``input_path``."""
    read = pd.read_parquet if suffix == ".parquet" else pd.read_csv
    ours, theirs = tmp_path / f"example{suffix}", tmp_path / f"predict{suffix}"
    example().score(bundle, input_path, ours, id_column)
    score_file(run_dir, input_path, theirs, id_column, progress=False)
    return read(ours), read(theirs)


@pytest.mark.parametrize("encoding", [[], ["data.encoding.numeric=dense"]], ids=["buckets", "dense"])
def test_the_example_scores_raw_rows_as_experiments_predict_does(encoding, tmp_path):
    run_dir = tiny_run("deepfm", tmp_path, "data.on_bad_line=skip", *encoding, bad_test_line=True)
    export_run(run_dir, "onnx", tmp_path / "bundle")
    test_file = tmp_path / "data" / "test.csv"
    ours, theirs = both(tmp_path, tmp_path / "bundle", run_dir, test_file, ".csv", "row_id")
    assert list(ours.columns) == list(theirs.columns) == ["row_id", "label", "probability"] and len(ours) == 300
    assert ours["row_id"].equals(theirs["row_id"]) and ours["label"].equals(theirs["label"])
    assert np.abs(ours["probability"] - theirs["probability"]).max() <= 1e-5

    frame = pd.read_csv(test_file, nrows=300).drop(columns="label")  # the bad last row left out
    frame.to_parquet(tmp_path / "unlabelled.parquet")
    ours, theirs = both(tmp_path, tmp_path / "bundle", run_dir, tmp_path / "unlabelled.parquet", ".parquet")
    assert list(ours.columns) == list(theirs.columns) == ["probability"] and len(ours) == 300
    assert np.abs(ours["probability"] - theirs["probability"]).max() <= 1e-5


def test_a_bad_row_stops_the_example_naming_its_line_as_predict_does(tmp_path):
    run_dir = tiny_run("lr", tmp_path)
    export_run(run_dir, "onnx", tmp_path / "bundle")
    lines = (tmp_path / "data" / "test.csv").read_text().splitlines()
    lines[5] = "r,1,u1,category-number-1,3,1.0,x"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match=r"bad.csv, line 6: n1='x' is not a valid number"):
        example().score(tmp_path / "bundle", tmp_path / "bad.csv", tmp_path / "out.csv", None)
    with pytest.raises(ValueError, match=r"bad.csv, line 6: numeric field not a valid number: n1='x'"):
        score_file(run_dir, tmp_path / "bad.csv", tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_the_example_scores_criteo_tsv_as_experiments_predict_does(tmp_path):
    files = criteo_files(tmp_path / "raw")
    run_dir = tiny_run("deepfm", tmp_path, "data.encoding.min_count=2", data=["data=criteo", files_override(files)])
    export_run(run_dir, "onnx", tmp_path / "bundle")
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("".join(line.split("\t", 1)[1] for line in (tmp_path / "raw" / "test.txt").open()))
    for raw in (tmp_path / "raw" / "test.txt", unlabelled):
        ours, theirs = both(tmp_path, tmp_path / "bundle", run_dir, raw, ".csv")
        assert list(ours.columns) == list(theirs.columns) and len(ours) == 300
        assert np.abs(ours["probability"] - theirs["probability"]).max() <= 1e-5


@pytest.mark.parametrize("table", ["csv", "parquet"])
def test_the_example_encodes_list_columns_as_the_run_did_and_scores_as_experiments_predict(table, tmp_path):
    """Lists with stray whitespace, empty and repeated tokens, unseen tokens, empty lists and lists
    longer than max_len (CSV keeps the last 4, Parquet the first 4; a bad CSV row is skipped)."""
    bad = table == "csv"
    run_dir = tiny_genre_run("deepfm", tmp_path, "data.on_bad_line=skip", parquet=not bad, bad_test_line=bad)
    export_run(run_dir, "onnx", tmp_path / "bundle")
    test_file = next((tmp_path / "data").glob("test.*"))
    module = example()
    encoder, skipped = module.Encoder(tmp_path / "bundle" / "encoding"), []
    chunks = module.parquet_chunks(test_file) if table == "parquet" else module.text_chunks(test_file, encoder)
    multi = np.concatenate([module.encoded_rows(encoder, test_file, *chunk, skipped)[2] for chunk in chunks])
    cached = np.load(next((tmp_path / "cache").iterdir()) / "test" / "x_multi.npy")
    assert np.array_equal(multi, cached) and multi.shape == (300, 4) and skipped == [302] * bad

    ours, theirs = both(tmp_path, tmp_path / "bundle", run_dir, test_file, ".csv", "row_id")
    assert len(ours) == 300 and ours["row_id"].equals(theirs["row_id"]) and ours["label"].equals(theirs["label"])
    assert np.abs(ours["probability"] - theirs["probability"]).max() <= 1e-5
