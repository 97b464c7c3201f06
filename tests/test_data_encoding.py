"""Encoding: vocabularies fitted on the training split only, OOV / missing ids, numeric modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datamodules import CTRDataModule
from datamodules.encode import MISSING_ID, OOV_ID, ValueCounter, Vocabulary, log_square, signed_log
from datamodules.sources import CriteoSource, TableSource
from tests.test_data_formats import criteo_line, criteo_rows, write_text


def test_log_square_matches_the_criteo_winners_formula():
    values = np.array([-3.0, -1.0, 0.0, 1.0, 1.9, 2.0, 2.5, 3.0, 100.0, 1e6, 12345.0])
    expected = [math.floor(math.log(v) ** 2) if v > 2 else int(v) for v in values]
    assert log_square(values).tolist() == expected


def test_value_counter_merges_like_a_plain_count():
    rng = np.random.default_rng(0)
    counter, everything = ValueCounter(), []
    for _ in range(40):
        keys = rng.zipf(1.3, 5000).astype(np.int64) * 7919
        unique, counts = np.unique(keys, return_counts=True)
        counter.add(unique, counts)
        everything.append(keys)
    keys, counts = counter.result()
    expected_keys, expected_counts = np.unique(np.concatenate(everything), return_counts=True)
    np.testing.assert_array_equal(keys, expected_keys)
    np.testing.assert_array_equal(counts, expected_counts)


def test_vocabulary_ids_by_frequency_then_key():
    vocab = Vocabulary.fit(np.array([5, 9, 11, 20]), np.array([3, 7, 3, 1]), min_count=2)
    assert vocab.size == 3 + 2
    assert vocab.lookup(np.array([9, 5, 11, 20, 42])).tolist() == [2, 3, 4, OOV_ID, OOV_ID]


def predefined_criteo(tmp_path, train: list[str], val: list[str], test: list[str], **kwargs) -> CTRDataModule:
    files = {}
    for split, lines in (("train", train), ("val", val), ("test", test)):
        files[split] = str(write_text(tmp_path / f"{split}.tsv", lines))
    return CTRDataModule(CriteoSource(files=files), cache_dir=str(tmp_path / "cache"), **kwargs)


def test_vocabulary_is_fitted_on_train_only(tmp_path):
    # C1: 'aaaaaaaa' x3 and 'bbbbbbbb' x1 in train; 'cccccccc' x5 only in val/test; one row missing.
    train = [criteo_line("1", {1: "1"}, {1: "aaaaaaaa"})] * 3 + [
        criteo_line("0", {1: "1"}, {1: "bbbbbbbb"}),
        criteo_line("0", {1: "1"}, {}),
    ]
    unseen = [criteo_line("1", {1: "1"}, {1: "cccccccc"})] * 5
    dm = predefined_criteo(
        tmp_path, train, unseen, unseen + [criteo_line("0", {}, {1: "aaaaaaaa"})], encoding={"min_count": 2}
    )
    c1 = next(f for f in dm.schema.fields if f.name == "C1")
    assert c1.vocab_size == 2 + 1  # OOV, missing, 'aaaaaaaa' ('bbbbbbbb' is below min_count; 'cccccccc' unseen)
    column = [f.name for f in dm.schema.sparse_fields].index("C1")
    dm.setup()
    np.testing.assert_array_equal(
        np.asarray(dm.split_arrays("train").x[:, column]) - c1.offset, [2, 2, 2, OOV_ID, MISSING_ID]
    )
    np.testing.assert_array_equal(np.asarray(dm.split_arrays("val").x[:, column]) - c1.offset, [OOV_ID] * 5)
    np.testing.assert_array_equal(np.asarray(dm.split_arrays("test").x[:, column]) - c1.offset, [OOV_ID] * 5 + [2])


def test_numeric_fields_bucketized_with_missing_id(tmp_path):
    train = [criteo_line("1", {1: v}) for v in ["0", "1", "5", "5", "150", ""]]
    dm = predefined_criteo(tmp_path, train, train[:1], train[:1])
    i1 = dm.schema.fields[0]
    assert (i1.name, i1.kind, i1.dense) == ("I1", "numeric", False)
    dm.setup()
    local = np.asarray(dm.split_arrays("train").x[:, 0]) - i1.offset
    # buckets: 0 -> 0, 1 -> 1, 5 -> floor(ln(5)^2) = 2 (twice: the most frequent, id 2), 150 -> 25
    assert local[5] == MISSING_ID
    assert local[2] == local[3] == 2
    assert len(set(local[:5].tolist())) == 4 and min(local[:5]) >= 2
    assert i1.vocab_size == 2 + 4


def test_dense_numeric_fields_are_standardised_on_train(tmp_path):
    path = write_text(
        tmp_path / "t.csv",
        ["label,price,city"] + [f"{i % 2},{v},x" for i, v in enumerate([1, 10, 100, 1000, "", 5, 50, -3])],
    )
    dm = CTRDataModule(
        TableSource(label="label", categorical=["city"], numeric=["price"], path=str(path)),
        split={"kind": "sequential", "ratios": [6, 1, 1]},
        encoding={"numeric": "dense"},
        cache_dir=str(tmp_path / "c"),
    )
    assert [f.name for f in dm.schema.dense_fields] == ["price"] and dm.schema.num_sparse == 1
    batch = next(iter(dm.train_dataloader()))
    assert batch.x_dense.dtype.is_floating_point and tuple(batch.x_dense.shape) == (6, 1)
    train_logs = signed_log(np.array([1, 10, 100, 1000, 5], dtype=float))
    expected = (signed_log(np.array([1, 10, 100, 1000, np.nan, 5])) - train_logs.mean()) / train_logs.std()
    np.testing.assert_allclose(np.asarray(dm.split_arrays("train").x_dense[:, 0]), np.nan_to_num(expected), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(dm.split_arrays("test").x_dense[:, 0]),
        (signed_log(np.array([-3.0])) - train_logs.mean()) / train_logs.std(),
        rtol=1e-6,
    )


@pytest.mark.parametrize("numeric", ["log_square", "dense"])
def test_global_ids_stay_inside_their_field(tmp_path, numeric):
    dm = predefined_criteo(
        tmp_path,
        criteo_rows(200),
        criteo_rows(30, seed=1),
        criteo_rows(30, seed=2),
        encoding={"numeric": numeric, "min_count": 2},
    )
    dm.setup()
    for split in ("train", "val", "test"):
        x = np.asarray(dm.split_arrays(split).x)
        for j, field in enumerate(dm.schema.sparse_fields):
            assert field.offset <= x[:, j].min() and x[:, j].max() < field.offset + field.vocab_size
