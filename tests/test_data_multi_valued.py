"""Multi-valued columns (issue 35): declaring, reading (CSV, TSV, Parquet), encoding, cache and errors."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodules import CTRDataModule, TableSource
from datamodules.errors import BadInputError
from datamodules.sources.multi import LengthStats, MultiValued, multi_column, multi_valued_options

ALL_TRAIN = {"kind": "auto", "ratios": [1.0, 0.0, 0.0]}


def write_csv(path, rows, header="label,user,genres"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def module(tmp_path, multi_valued, path, **source):
    source = TableSource(label="label", categorical=["user"], path=str(path), multi_valued=multi_valued, **source)
    return CTRDataModule(source, split=ALL_TRAIN, cache_dir=str(tmp_path / "cache"), progress=False)


def tokens(dm, row: int) -> list[int]:
    """Row ``row``'s multi-valued ids, local to the field, padding left out."""
    field = dm.schema.multi_fields[0]
    local = np.asarray(dm.split_arrays("train").x_multi[row]) - field.offset
    return [int(i) for i in local if i != field.padding_id]


def test_cells_are_split_stripped_and_padded(tmp_path):
    rows = ['1,a,"Action|Comedy"', "0,b,", '1,a," Drama | Action "', '0,b,"Action|Action|Drama"', "1,a, | "]
    dm = module(tmp_path, ["genres"], write_csv(tmp_path / "t.csv", rows))
    field = dm.schema.multi_fields[0]
    assert (field.name, field.max_len, field.pooling, field.padding_id) == ("genres", 20, "mean", 1)
    # ids by training frequency: Action 4 times (repeats count), Drama twice, Comedy once
    action, drama, comedy = 2, 3, 4
    assert [tokens(dm, r) for r in range(5)] == [[action, comedy], [], [drama, action], [action, action, drama], []]
    assert field.vocab_size == 3 + 2  # three tokens, OOV and padding
    assert dm.split_arrays("train").x_multi.shape == (5, 20)
    stats = dm.manifest["multi_valued"]["genres"]
    assert {k: stats[k] for k in ("rows", "mean", "p50", "max", "empty", "truncated")} == {
        "rows": 5,
        "mean": 1.4,
        "p50": 2,
        "max": 3,
        "empty": 2,
        "truncated": 0,
    }


def test_a_quoted_cell_may_hold_the_separator_of_the_row(tmp_path):
    rows = ['1,u,"x,y,z"', '0,v,"y"', "1,u,"]
    dm = module(tmp_path, {"genres": {"sep": ","}}, write_csv(tmp_path / "t.csv", rows))
    assert [len(tokens(dm, r)) for r in range(3)] == [3, 1, 0]
    assert tokens(dm, 0)[1] == tokens(dm, 1)[0]  # the same 'y'


@pytest.mark.parametrize("keep, expected", [("first", ["a", "b", "c"]), ("last", ["c", "d", "e"])])
def test_long_lists_are_truncated_at_the_kept_end_and_counted(keep, expected):
    column = pa.array(["a|b|c|d|e", "a", None, "b|c|d"])
    multi = multi_column(column, MultiValued(max_len=3, keep=keep))
    assert [
        str(multi.uniques.astype("<i8").view("S8")[c].tobytes().rstrip(b"\0"), "ascii") for c in multi.codes[0]
    ] == (expected)
    assert multi.lengths.tolist() == [5, 1, 0, 3]
    assert multi.codes[2].tolist() == [-1, -1, -1]
    stats = LengthStats({"g": MultiValued(max_len=3)})
    stats.add([multi])
    assert stats.summary()["g"]["truncated"] == 1
    assert stats.summary()["g"]["p99"] == 5


def test_unseen_and_rare_tokens_are_oov(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["1,a,x|y", "0,a,x|z", "1,b,x"])
    test = write_csv(tmp_path / "test.csv", ["1,a,x|new|z|y"])
    files = {"train": str(train), "val": str(test), "test": str(test)}
    source = TableSource(label="label", categorical=["user"], files=files, multi_valued=["genres"])
    dm = CTRDataModule(source, encoding={"min_count": 2}, cache_dir=str(tmp_path / "c"))
    field = dm.schema.multi_fields[0]
    assert field.vocab_size == 1 + 2  # only x was seen twice
    local = np.asarray(dm.split_arrays("test").x_multi[0, :4]) - field.offset
    assert local.tolist() == [2, 0, 0, 0]  # x, then three OOV tokens


def test_parquet_lists_and_text_read_as_the_csv_does(tmp_path):
    lists = [["Action", "Comedy"], [], ["Drama", "Action"], None]
    pq.write_table(
        pa.table({"label": [1, 0, 1, 0], "user": ["a", "b", "a", "b"], "genres": lists}), tmp_path / "l.parquet"
    )
    pq.write_table(
        pa.table(
            {"label": [1, 0, 1, 0], "user": ["a", "b", "a", "b"], "genres": ["Action|Comedy", "", "Drama|Action", None]}
        ),
        tmp_path / "t.parquet",
    )
    csv = write_csv(tmp_path / "t.csv", ["1,a,Action|Comedy", "0,b,", "1,a,Drama|Action", "0,b,"])
    arrays = [
        np.asarray(module(tmp_path, ["genres"], path).split_arrays("train").x_multi)
        for path in (tmp_path / "l.parquet", tmp_path / "t.parquet", csv)
    ]
    np.testing.assert_array_equal(arrays[0], arrays[2])
    np.testing.assert_array_equal(arrays[1], arrays[2])


def test_integer_lists_are_keyed_as_integers(tmp_path):
    pq.write_table(pa.table({"label": [1, 0], "user": ["a", "b"], "genres": [[7, 3, 7], [3]]}), tmp_path / "i.parquet")
    dm = module(tmp_path, {"genres": {"max_len": 4, "pooling": "sum"}}, tmp_path / "i.parquet")
    assert tokens(dm, 0) == [3, 2, 3] and tokens(dm, 1) == [2]  # 7 and 3 twice each: the tie by value
    assert dm.schema.multi_fields[0].pooling == "sum"


def test_options_are_part_of_the_cache_key(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["1,a,x|y|z", "0,b,y"])
    folders = {module(tmp_path, {"genres": {"max_len": n}}, path).cache_path for n in (2, 3)}
    folders.add(module(tmp_path, {"genres": {"max_len": 2, "keep": "last"}}, path).cache_path)
    assert len(folders) == 3


def test_a_table_without_lists_keeps_its_identity_and_schema_file(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["1,a,x", "0,b,y"])
    dm = module(tmp_path, None, path)
    assert "multi_valued" not in dm.source.identity() and "multi_valued" not in dm.manifest
    assert "max_len" not in (dm.cache_path / "schema.json").read_text()
    assert dm.split_arrays("train").x_multi is None


def test_a_column_named_categorical_and_multi_valued_is_declared_once(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["1,a,x|y", "0,b,y"])
    source = TableSource(label="label", categorical=["user", "genres"], path=str(path), multi_valued=["genres"])
    assert source.categorical_fields == ("user",) and list(source.multi_valued) == ["genres"]


def test_bad_declarations_get_one_line_errors(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["1,a,x|y", "0,b,y"])
    with pytest.raises(BadInputError, match=r"t\.csv, line 1: column 'genres' is declared both numeric and multi"):
        TableSource(label="label", numeric=["genres"], path=str(path), multi_valued=["genres"])
    with pytest.raises(BadInputError, match="pooling one of"):
        multi_valued_options({"genres": {"pooling": "median"}})
    with pytest.raises(BadInputError, match=r"unknown option\(s\) \['size'\]"):
        multi_valued_options({"genres": {"size": 3}})


@pytest.mark.parametrize(
    "values, message",
    [
        ([[1.5], [2.0]], r"f\.parquet, row group 0, column 'genres': a list of double; .* strings or integers"),
        ([1.5, 2.0], r"f\.parquet, row group 0, column 'genres': holds double values, not text with separators"),
    ],
)
def test_parquet_columns_that_are_not_lists_of_tokens_are_refused(tmp_path, values, message):
    pq.write_table(pa.table({"label": [1, 0], "user": ["a", "b"], "genres": values}), tmp_path / "f.parquet")
    with pytest.raises(BadInputError, match=message) as error:
        TableSource(label="label", categorical=["user"], path=str(tmp_path / "f.parquet"), multi_valued=["genres"])
    assert "\n" not in str(error.value)


def test_tsv_cells_and_manifest_lengths(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text(
        "label\tuser\tgenres\n" + "".join(f"{i % 2}\tu\t{'|'.join('abcdefgh'[: i % 9])}\n" for i in range(90))
    )
    dm = module(tmp_path, {"genres": {"max_len": 5}}, path, delimiter="\t")
    stats = json.loads((dm.cache_path / "manifest.json").read_text())["multi_valued"]["genres"]
    assert (stats["mean"], stats["p50"], stats["p99"], stats["max"], stats["truncated"]) == (4.0, 4, 8, 8, 30)
    assert (np.asarray(dm.split_arrays("train").x_multi) != dm.schema.multi_fields[0].offset + 1).sum(1).max() == 5
