"""Scoring raw rows with a finished run (``python -m experiments.predict``): the run's own raw test file
scores to its saved test predictions bit for bit, for every model, once the cache and the training
files are gone; unlabelled, compressed and bad inputs; the readable encoding equals the cache's."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from datamodules.bundle import ENCODING_DIR, SavedEncoding
from datamodules.encode import Encoding
from datamodules.errors import BadInputError
from experiments.predict.__main__ import main as predict_main
from experiments.predict.score import score_file
from models.registry import ZOO
from tests.serving import (
    criteo_files,
    files_override,
    libfm_files,
    table_overrides,
    tiny_genre_run,
    tiny_run,
    write_tables,
)

QUICK = ("lr", "deepfm", "dcn_v2")  # the rest of the zoo runs in the slow suite
QUICK_LISTS = {"csv": ("deepfm",), "parquet": ("fm",)}  # with a multi-valued field


def self_contained(root: Path) -> tuple[Path, Path]:
    """The run folder and a copy of its raw test file, with the cache and the training files deleted."""
    raw = next((root / "data").glob("test.*"))
    test_file = root / "new" / raw.name
    test_file.parent.mkdir()
    shutil.copy(raw, test_file)
    shutil.rmtree(root / "data")
    shutil.rmtree(root / "cache")
    return root / "run", test_file


def saved_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return np.load(run_dir / "predictions" / "test_p.npy"), np.load(run_dir / "predictions" / "test_y.npy")


@pytest.mark.parametrize(
    "model", [pytest.param(e.name, marks=() if e.name in QUICK else pytest.mark.slow) for e in ZOO]
)
def test_scoring_the_runs_raw_test_file_reproduces_its_saved_test_predictions(model, tmp_path):
    tiny_run(model, tmp_path, "data.on_bad_line=skip", bad_test_line=True)
    run_dir, test_file = self_contained(tmp_path)
    summary = score_file(run_dir, test_file, tmp_path / "scored.csv", id_column="row_id", progress=False)
    p, y = saved_predictions(run_dir)
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert summary["rows_rejected"] == 1 and summary["rows_scored"] == len(p) == 300
    assert list(scored.columns) == ["row_id", "label", "probability"]
    assert np.array_equal(scored["probability"].to_numpy(np.float32), p)
    assert np.array_equal(scored["label"].to_numpy(), y)
    assert scored["row_id"].tolist() == [f"r2-{i}" for i in range(300)]


@pytest.mark.parametrize(
    ("model", "table"),
    [
        pytest.param(e.name, table, marks=() if e.name in quick else pytest.mark.slow)
        for table, quick in QUICK_LISTS.items()
        for e in ZOO
    ],
)
def test_a_run_with_a_multi_valued_field_scores_its_raw_test_file_to_its_test_predictions(model, table, tmp_path):
    bad = table == "csv"  # a bad test row too, in CSV: the run skipped it and so does scoring
    tiny_genre_run(model, tmp_path, "data.on_bad_line=skip", parquet=not bad, bad_test_line=bad)
    run_dir, test_file = self_contained(tmp_path)
    summary = score_file(run_dir, test_file, tmp_path / "scored.parquet", id_column="row_id", progress=False)
    p, y = saved_predictions(run_dir)
    scored = pq.read_table(tmp_path / "scored.parquet").to_pandas()
    assert summary["rows_scored"] == len(p) == 300 and summary["rows_rejected"] == (table == "csv")
    assert np.array_equal(scored["probability"].to_numpy(), p) and np.array_equal(scored["label"].to_numpy(), y)
    assert scored["row_id"].tolist() == [f"r2-{i}" for i in range(300)]
    genres = SavedEncoding(run_dir / ENCODING_DIR).meta["fields"][-1]
    declared = {"sep": "|", "max_len": 4, "pooling": "mean" if bad else "max", "keep": "last" if bad else "first"}
    assert genres["name"] == "genres" and genres["multi"] == declared and genres["vocab_size"] == 9 + 2


@pytest.fixture(scope="module")
def deepfm_run(tmp_path_factory) -> Path:
    return tiny_run("deepfm", tmp_path_factory.mktemp("deepfm"))


def test_the_readable_encoding_is_the_caches_encoding(deepfm_run):
    cache = next((deepfm_run.parent / "cache").iterdir())
    cached, saved = Encoding.load(cache / "encoding.npz"), SavedEncoding(deepfm_run / ENCODING_DIR).encoding
    assert saved.schema == cached.schema and saved.text == cached.text == [False, False, True, True, False]
    for a, b in zip(saved.vocabularies, cached.vocabularies):
        order_a, order_b = np.argsort(a.keys), np.argsort(b.keys)
        assert np.array_equal(a.keys[order_a], b.keys[order_b]) and np.array_equal(a.ids[order_a], b.ids[order_b])
        assert (a.oov_id, a.missing_id) == (b.oov_id, b.missing_id)
    vocab = pd.read_csv(deepfm_run / ENCODING_DIR / "vocab" / "02_c0.csv", keep_default_na=False)
    assert set(vocab["value"]) == {f"u{i}" for i in range(12)} and vocab["id"].tolist() == list(range(2, 14))


def test_rows_without_labels_compressed_or_as_parquet_score_the_same(deepfm_run, tmp_path):
    test_file = deepfm_run.parent / "data" / "test.csv"
    score_file(deepfm_run, test_file, tmp_path / "labelled.parquet", progress=False)
    labelled = pq.read_table(tmp_path / "labelled.parquet").to_pandas()
    assert np.array_equal(labelled["probability"].to_numpy(), saved_predictions(deepfm_run)[0])

    unlabelled = tmp_path / "unlabelled.csv.gz"
    with gzip.open(unlabelled, "wt") as f:
        pd.read_csv(test_file).drop(columns="label").to_csv(f, index=False)
    assert predict_main([str(deepfm_run), str(unlabelled), "--out", str(tmp_path / "u.csv"), "--no-progress"]) == 0
    scored = pd.read_csv(tmp_path / "u.csv")
    assert list(scored.columns) == ["probability"]
    assert np.array_equal(scored["probability"].to_numpy(np.float32), labelled["probability"].to_numpy())


def test_unseen_values_score_as_out_of_vocabulary(deepfm_run, tmp_path):
    rows = pd.read_csv(deepfm_run.parent / "data" / "test.csv").head(3)
    unseen = rows.assign(c0=["never-seen-a", "never-seen-b", "zz"], c2=[1000, 2000, 3000])
    oov = rows.assign(c0=["never-seen-c"] * 3, c2=[4000] * 3)
    for name, frame in (("unseen", unseen), ("oov", oov)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        score_file(deepfm_run, tmp_path / f"{name}.csv", tmp_path / f"{name}.out.csv", progress=False)
    a, b = (pd.read_csv(tmp_path / f"{n}.out.csv")["probability"].to_numpy() for n in ("unseen", "oov"))
    assert np.array_equal(a, b)  # any two unseen values share the OOV id


def test_a_bad_row_is_a_one_line_error_naming_file_and_line(deepfm_run, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    text = (deepfm_run.parent / "data" / "test.csv").read_text().splitlines()
    text[3] = "r,1,u1,category-number-1,3,x,1.0"
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(BadInputError, match=r"bad.csv, line 4: numeric field not a valid number: n0='x'"):
        score_file(deepfm_run, bad, tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out.csv*"))
    assert predict_main([str(deepfm_run), str(bad), "--out", str(tmp_path / "out.csv"), "--no-progress"]) == 2
    assert "bad.csv, line 4" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="extension"):
        score_file(deepfm_run, bad, tmp_path / "out.json", progress=False)


@pytest.mark.parametrize(
    "settings", [["data.encoding.numeric=dense"], ["+data.encoding.convention=fuxictr"], ["precision=bf16"]]
)
def test_dense_numbers_the_fuxictr_convention_and_bf16_reproduce_the_test_predictions(settings, tmp_path):
    tiny_run("deepfm", tmp_path, *settings)
    run_dir, test_file = self_contained(tmp_path)
    score_file(run_dir, test_file, tmp_path / "scored.parquet", progress=False)
    scored = pq.read_table(tmp_path / "scored.parquet").to_pandas()
    assert np.array_equal(scored["probability"].to_numpy(), saved_predictions(run_dir)[0])


@pytest.mark.parametrize("source", ["criteo", "libfm"])
def test_criteo_and_libfm_files_score_to_the_test_predictions(source, tmp_path):
    files = (criteo_files if source == "criteo" else libfm_files)(tmp_path / "raw")
    group = "criteo" if source == "criteo" else "movielens_tag"
    data = [f"data={group}", files_override(files)]
    run_dir = tiny_run("deepfm", tmp_path, "data.encoding.min_count=2", data=data)
    score_file(run_dir, files["test"], tmp_path / "scored.csv", progress=False)
    p, y = saved_predictions(run_dir)
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert np.array_equal(scored["probability"].to_numpy(np.float32), p) and np.array_equal(scored["label"], y)


def test_a_run_with_a_header_per_file_reads_the_input_as_its_test_file(tmp_path):
    files = write_tables(tmp_path / "data")
    lines = files["test"].read_text().splitlines()
    files["test"].write_text("\n".join(lines[1:]) + "\n")  # the test file without its header line
    data = table_overrides(files) + [
        "data.source.header={train: true, val: true, test: false}",
        f"data.source.column_names=[{','.join(lines[0].split(','))}]",
    ]
    run_dir = tiny_run("lr", tmp_path, data=data)
    score_file(run_dir, files["test"], tmp_path / "scored.csv", progress=False)
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 300
    assert np.array_equal(scored["probability"].to_numpy(np.float32), saved_predictions(run_dir)[0])
