"""Splits and the on-disk cache: sizes, disjointness, reuse, invalidation, atomic builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import datamodules.cache as cache_module
from datamodules import CTRDataModule, SyntheticSource
from datamodules.cache import Cache
from datamodules.encode import Encoding
from datamodules.prefetch import read_ahead
from datamodules.sources import CriteoSource, TableSource
from datamodules.splits import SplitConfig
from tests.test_data_formats import write_criteo, write_text


def row_numbered_table(tmp_path, rows: int) -> TableSource:
    """A CSV whose dense numeric column 'row' identifies each row (its encoding is monotonic)."""
    lines = ["label,row,city"] + [f"{i % 3 == 0:d},{i + 1},c{i % 7}" for i in range(rows)]
    return TableSource(
        label="label", categorical=["city"], numeric=["row"], path=str(write_text(tmp_path / "t.csv", lines))
    )


def rows_of(dm: CTRDataModule, split: str) -> np.ndarray:
    """Which source rows (0-based) ``split`` holds, recovered from the dense 'row' column."""
    everything = np.concatenate([np.asarray(dm.split_arrays(s).x_dense[:, 0]) for s in ("train", "val", "test")])
    return np.searchsorted(np.sort(everything), np.asarray(dm.split_arrays(split).x_dense[:, 0]))


@pytest.mark.parametrize(
    "ratios,sizes",
    [
        ([0.8, 0.1, 0.1], [80, 10, 10]),
        ([0.81, 0.09, 0.10], [81, 9, 10]),
        ([8, 1, 1], [80, 10, 10]),
        ([0.5, 0.0, 0.5], [50, 0, 50]),
    ],
)
def test_random_split_sizes_are_exact_and_disjoint(tmp_path, ratios, sizes):
    dm = CTRDataModule(
        row_numbered_table(tmp_path, 100),
        split={"kind": "random", "ratios": ratios, "seed": 3},
        encoding={"numeric": "dense"},
        cache_dir=str(tmp_path / "c"),
    )
    assert [dm.num_rows(s) for s in ("train", "val", "test")] == sizes
    held = [set(rows_of(dm, s).tolist()) for s in ("train", "val", "test")]
    assert set().union(*held) == set(range(100)) and sum(map(len, held)) == 100
    assert held[0] != set(range(sizes[0]))  # shuffled, not the first rows


def test_random_split_depends_on_its_seed_only(tmp_path):
    first, second, other = (
        SplitConfig(kind="random", seed=s).resolved(("all",)).assign("all", 1000) for s in (1, 1, 2)
    )
    np.testing.assert_array_equal(first, second)
    assert (first != other).any()
    assert np.bincount(first).tolist() == [800, 100, 100]


def test_sequential_split_keeps_file_order(tmp_path):
    dm = CTRDataModule(
        row_numbered_table(tmp_path, 20),
        split={"kind": "sequential", "ratios": [0.6, 0.2, 0.2]},
        encoding={"numeric": "dense"},
        cache_dir=str(tmp_path / "c"),
    )
    assert [rows_of(dm, s).tolist() for s in ("train", "val", "test")] == [
        list(range(12)),
        list(range(12, 16)),
        list(range(16, 20)),
    ]


def test_predefined_files_with_validation_carved_from_train(tmp_path):
    train, test = write_criteo(tmp_path / "train.tsv", 50), write_criteo(tmp_path / "test.tsv", 7, seed=1)
    dm = CTRDataModule(
        CriteoSource(files={"train": str(train), "test": str(test)}),
        split={"val_from_train": 0.2},
        cache_dir=str(tmp_path / "c"),
    )
    assert [dm.num_rows(s) for s in ("train", "val", "test")] == [40, 10, 7]
    assert dm.manifest["split"]["kind"] == "predefined"


def test_predefined_split_without_validation_data_is_refused(tmp_path):
    train = write_criteo(tmp_path / "train.tsv", 5)
    dm = CTRDataModule(CriteoSource(files={"train": str(train), "test": str(train)}), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"no val file \(or set split.val_from_train"):
        dm.prepare_data()


def synthetic_dm(tmp_path, **kwargs) -> CTRDataModule:
    options = dict(source=SyntheticSource(rows=3000, seed=1), cache_dir=str(tmp_path / "cache"), batch_size=256)
    return CTRDataModule(**{**options, **kwargs})


def test_cache_layout_and_manifest(tmp_path):
    dm = synthetic_dm(tmp_path)
    folder = dm.cache_path
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("synthetic-")
    for split in ("train", "val", "test"):
        for array in ("x", "y", "p_true"):
            assert (folder / split / f"{array}.npy").is_file()
    assert not (folder / "train" / "x_dense.npy").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == dm.manifest
    assert manifest["rows_read"] == manifest["rows_kept"] == 3000 and manifest["rows_rejected"] == 0
    assert sum(s["rows"] for s in manifest["splits"].values()) == 3000
    assert manifest["splits"]["train"]["positives"] == int(dm.labels("train").sum())
    assert set(manifest["seconds"]) == {"count_rows", "pass1_fit", "pass2_encode", "total"}
    assert Encoding.load(folder / "encoding.npz").schema == dm.schema
    x = np.load(folder / "train" / "x.npy", mmap_mode="r")
    assert isinstance(x, np.memmap) and x.dtype == np.int32 and x.shape == (2400, dm.schema.num_sparse)


def test_cache_is_reused_across_run_seeds_and_batch_sizes(tmp_path, monkeypatch):
    first = synthetic_dm(tmp_path, seed=0).cache_path

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(cache_module, "_build", no_rebuild)
    assert synthetic_dm(tmp_path, seed=7, batch_size=64, on_bad_line="skip").cache_path == first


@pytest.mark.parametrize(
    "change",
    [
        dict(source=SyntheticSource(rows=3000, seed=2)),
        dict(source=SyntheticSource(rows=3001, seed=1)),
        dict(source=SyntheticSource(rows=3000, seed=1, pairwise=0.0)),
        dict(split={"seed": 5}),
        dict(split={"ratios": [0.9, 0.05, 0.05]}),
        dict(encoding={"min_count": 3}),
        dict(encoding={"numeric": "dense"}),
    ],
    ids=["generator seed", "rows", "effects", "split seed", "ratios", "min_count", "numeric mode"],
)
def test_cache_key_changes_with_preprocessing(tmp_path, change):
    assert synthetic_dm(tmp_path).cache_path != synthetic_dm(tmp_path, **change).cache_path


def test_cache_invalidated_when_a_file_changes_even_with_the_same_size_and_time(tmp_path):
    path = write_criteo(tmp_path / "train.tsv", 40)
    make = lambda: CTRDataModule(CriteoSource(path=str(path)), cache_dir=str(tmp_path / "c"))  # noqa: E731
    before = make().cache_path
    text, stat = path.read_text(), path.stat()
    path.write_text(("1" if text[0] == "0" else "0") + text[1:])  # flip the first label: same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = make()
    assert after.cache_path != before
    assert sum(after.labels(s).sum() for s in ("train", "val", "test")) == sum(
        int(line[0]) for line in path.read_text().splitlines()
    )


def test_interrupted_build_leaves_nothing_usable(tmp_path, monkeypatch):
    def interrupted(self, uniques):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # pass 2, after pass 1 has written every split's files
        patch.setattr(Encoding, "lookup_table", interrupted)
        with pytest.raises(KeyboardInterrupt):
            synthetic_dm(tmp_path).prepare_data()
    assert list((tmp_path / "cache").iterdir()) == []  # the temporary folder is gone too
    assert synthetic_dm(tmp_path).manifest["rows_kept"] == 3000  # and the next run builds it


def test_a_killed_build_is_ignored_and_cleaned_up(tmp_path):
    final = synthetic_dm(tmp_path).cache_path
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = final.parent / f".tmp-{final.name}-{int(dead.stdout)}-deadbeef"
    (leftover / "train").mkdir(parents=True)  # what a killed build leaves: a temporary folder, no manifest
    (final / "manifest.json").unlink()  # and a folder without a manifest is no cache either
    assert not Cache.is_complete(final)
    rebuilt = synthetic_dm(tmp_path)
    assert rebuilt.cache_path == final and Cache.is_complete(final) and rebuilt.manifest["rows_kept"] == 3000
    assert not leftover.exists()


@pytest.mark.parametrize("numeric", ["log_square", "dense"])
def test_arrays_do_not_depend_on_the_chunking(tmp_path, numeric):
    # Pass 1 writes per-chunk provisional ids that pass 2 rewrites in place: many small chunks, each
    # with its own keys, must give the arrays that one chunk gives.
    path = write_criteo(tmp_path / "train.tsv", 400, seed=2)
    arrays = {}
    for block_bytes in (1 << 20, 2000):
        dm = CTRDataModule(
            CriteoSource(path=str(path)),
            split={"kind": "random", "seed": 1},
            encoding={"min_count": 2, "numeric": numeric},
            cache_dir=str(tmp_path / f"c{block_bytes}"),
            block_bytes=block_bytes,
        )
        arrays[block_bytes] = {
            (s, name): np.asarray(getattr(dm.split_arrays(s), name))
            for s in ("train", "val", "test")
            for name in ("x", "y", "x_dense")
            if getattr(dm.split_arrays(s), name) is not None
        }
        assert sorted(p.name for p in dm.cache_path.rglob("*") if p.is_file()) == sorted(
            ["manifest.json", "schema.json", "encoding.npz"] + [f"{a}.npy" for (_, a) in arrays[block_bytes]]
        )
    assert arrays[1 << 20].keys() == arrays[2000].keys()
    for key, whole in arrays[1 << 20].items():
        np.testing.assert_array_equal(whole, arrays[2000][key], err_msg=str(key))
    assert len(arrays[2000][("train", "x")]) == 320


def test_read_ahead_keeps_order_raises_in_place_and_stops_its_thread():
    def numbers(stop_at=None, closed=None):
        try:
            for i in range(6):
                if i == stop_at:
                    raise ValueError(f"bad item {i}")
                yield i
        finally:
            if closed is not None:
                closed.append(True)

    assert list(read_ahead(numbers())) == list(range(6))
    seen = []
    with pytest.raises(ValueError, match="bad item 4"):
        for item in read_ahead(numbers(stop_at=4)):
            seen.append(item)
    assert seen == [0, 1, 2, 3]  # everything before the error first
    closed, before = [], threading.active_count()
    reader = read_ahead(numbers(closed=closed))
    assert next(reader) == 0
    reader.close()  # the consumer stops early
    assert closed == [True] and threading.active_count() == before
