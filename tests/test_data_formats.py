"""Parsing of each source format, and the fixture writers the other data tests share.

Every fixture is a small real file written into pytest's ``tmp_path``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datamodules.sources.criteo as criteo_module
from datamodules.errors import BadInputError, RejectLog
from datamodules.sources import CriteoSource, LibFMSource, TableSource
from datamodules.sources.base import WHOLE, RawChunk, Source
from datamodules.sources.values import fixed_width_keys, string_keys

CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]


# --------------------------------------------------------------------------- fixture writers


def write_text(path: Path, lines: list[str], final_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""))
    return path


def criteo_rows(count: int, seed: int = 0, labelled: bool = True) -> list[str]:
    """Valid raw Criteo lines: integer fields (some empty, some negative), 8-hex categories (some
    empty); category values repeat so that vocabularies have frequent and rare values."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        ints = ["" if rng.random() < 0.2 else str(int(rng.integers(-2, 1000))) for _ in CRITEO_NUMERIC]
        cats = [
            "" if rng.random() < 0.1 else f"{int(rng.zipf(1.5)) % 50 + 16 * j:08x}"
            for j in range(len(CRITEO_CATEGORICAL))
        ]
        label = [str(int(rng.random() < 0.3))] if labelled else []
        lines.append("\t".join(label + ints + cats))
    return lines


def criteo_line(label: str | None, ints: dict[int, str] | None = None, cats: dict[int, str] | None = None) -> str:
    """One Criteo line with the given I<k> / C<k> values (1-based) and the rest empty."""
    ints, cats = ints or {}, cats or {}
    fields = (
        ([] if label is None else [label])
        + [ints.get(i, "") for i in range(1, 14)]
        + [cats.get(i, "") for i in range(1, 27)]
    )
    return "\t".join(fields)


def write_criteo(path: Path, count: int, seed: int = 0, labelled: bool = True) -> Path:
    return write_text(path, criteo_rows(count, seed, labelled))


def libfm_rows(count: int, fields: int = 3, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join([str(int(rng.choice([-1, 1])))] + [f"{100 * f + int(rng.integers(0, 5))}:1" for f in range(fields)])
        for _ in range(count)
    ]


def avazu_like_rows(count: int, seed: int = 0) -> list[str]:
    """Rows of ``AVAZU_COLUMNS``: id, click, then categorical values (hex and small integers)."""
    rng = np.random.default_rng(seed)
    return [
        f"{1000 + i},{int(rng.random() < 0.2)},{['1fbe01fe', 'e151e245', '85f751fd'][int(rng.integers(0, 3))]},"
        f"{int(rng.integers(0, 3))},{int(rng.integers(100, 104))}"
        for i in range(count)
    ]


AVAZU_COLUMNS = ["id", "click", "site_id", "banner_pos", "C14"]


def read_all(
    source: Source, part: str = WHOLE, mode: str = "error", block_bytes: int = 1 << 20
) -> tuple[list[RawChunk], RejectLog]:
    rejects = RejectLog(mode)
    return list(source.read(part, rejects, block_bytes)), rejects


def keys_of(chunk: RawChunk, field: int) -> np.ndarray:
    """int64 ``[N]`` keys of categorical field ``field`` (-1 where missing)."""
    column = chunk.categorical[field]
    return np.where(column.codes >= 0, column.uniques[np.maximum(column.codes, 0)], -1)


def text_key(text: str) -> int:
    return int(string_keys(pa.array([text]))[0])


# --------------------------------------------------------------------------- Criteo TSV


def test_criteo_values_missing_and_negative(tmp_path):
    path = write_text(
        tmp_path / "train.tsv",
        [
            criteo_line("1", {1: "5", 2: "-1", 13: "70"}, {1: "68fd1e64", 26: "9727dd16"}),
            criteo_line("0", {2: "0"}, {1: "68fd1e64"}),
        ],
    )
    (chunk,), rejects = read_all(CriteoSource(path=str(path)))
    assert chunk.labels.tolist() == [1.0, 0.0]
    assert chunk.row_index.tolist() == [0, 1]
    np.testing.assert_array_equal(chunk.numeric[0, [0, 1, 12]], [5, -1, 70])
    assert np.isnan(chunk.numeric[0, 2:12]).all() and np.isnan(chunk.numeric[1, 0])
    assert keys_of(chunk, 0).tolist() == [text_key("68fd1e64")] * 2
    assert keys_of(chunk, 25).tolist() == [text_key("9727dd16"), -1]  # empty = missing
    assert rejects.total == 0


def test_criteo_unlabelled_test_file_is_detected(tmp_path):
    train = write_criteo(tmp_path / "train.tsv", 20)
    test = write_criteo(tmp_path / "test.tsv", 5, seed=1, labelled=False)
    source = CriteoSource(files={"train": str(train), "test": str(test)})
    assert source.labelled == {"train": True, "test": False}
    (chunk,), _ = read_all(source, "test")
    assert chunk.num_rows == 5 and np.isnan(chunk.labels).all()
    np.testing.assert_array_equal(
        chunk.numeric[0],
        [np.nan if v == "" else float(v) for v in criteo_rows(1, seed=1, labelled=False)[0].split("\t")[:13]],
    )


def test_line_blocks_give_exact_row_positions(tmp_path):
    rows = criteo_rows(50)
    path = write_text(tmp_path / "train.tsv", rows, final_newline=False)
    chunks, _ = read_all(CriteoSource(path=str(path)), block_bytes=700)  # ~3 lines per block
    assert len(chunks) > 10
    assert np.concatenate([c.row_index for c in chunks]).tolist() == list(range(50))
    assert np.concatenate([c.labels for c in chunks]).tolist() == [float(r.split("\t")[0]) for r in rows]


# --------------------------------------------------------------------------- libfm


def test_libfm_labels_and_features(tmp_path):
    path = write_text(tmp_path / "frappe.libfm", ["-1 451:1 4149:1 5041:1", "1 451:1 7:1 5041:1 ", "0 2:1 7:1 9:1"])
    source = LibFMSource(path=str(path))
    assert source.categorical_fields == ("f1", "f2", "f3")  # counted on the first line
    (chunk,), _ = read_all(source)
    assert chunk.labels.tolist() == [0.0, 1.0, 0.0]
    assert [keys_of(chunk, f).tolist() for f in range(3)] == [[451, 451, 2], [4149, 7, 7], [5041, 5041, 9]]
    assert chunk.numeric.shape == (3, 0)


def test_libfm_named_fields(tmp_path):
    path = write_text(tmp_path / "ml.libfm", libfm_rows(4))
    assert LibFMSource(path=str(path), fields=["user", "item", "tag"]).categorical_fields == ("user", "item", "tag")


# --------------------------------------------------------------------------- tables


def test_csv_files_with_and_without_header(tmp_path):
    train = write_text(tmp_path / "train.csv", [",".join(AVAZU_COLUMNS)] + avazu_like_rows(30))
    val = write_text(tmp_path / "val.csv", avazu_like_rows(5, seed=1))
    source = TableSource(
        label="click",
        categorical=["site_id", "banner_pos", "C14"],
        files={"train": str(train), "val": str(val), "test": str(val)},
        header={"train": True, "val": False, "test": False},
        column_names=AVAZU_COLUMNS,
    )
    assert source.count_rows("train") == 30
    (chunk,), _ = read_all(source, "val")
    first = avazu_like_rows(5, seed=1)[0].split(",")
    assert chunk.labels[0] == float(first[1])
    assert keys_of(chunk, 0)[0] == text_key(first[2]) and keys_of(chunk, 2)[0] == text_key(first[4])


def test_csv_numeric_floats_and_missing(tmp_path):
    path = write_text(tmp_path / "sample.csv", ["label,price,city", "1,1382.0,paris", "0,,", "0,-2.5,rome"])
    (chunk,), _ = read_all(TableSource(label="label", categorical=["city"], numeric=["price"], path=str(path)))
    np.testing.assert_array_equal(chunk.numeric[:, 0], [1382.0, np.nan, -2.5])
    assert keys_of(chunk, 0).tolist() == [text_key("paris"), -1, text_key("rome")]


def test_parquet_typed_columns(tmp_path):
    path = tmp_path / "clicks.parquet"
    pq.write_table(
        pa.table(
            {
                "clicked": pa.array([1, 0, 1], pa.int8()),
                "ad": pa.array([7, None, 7], pa.int64()),
                "site": ["a", "b", None],
                "price": pa.array([1.5, None, 3.0]),
            }
        ),
        path,
    )
    (chunk,), _ = read_all(TableSource(label="clicked", categorical=["ad", "site"], numeric=["price"], path=str(path)))
    assert chunk.labels.tolist() == [1.0, 0.0, 1.0]
    assert keys_of(chunk, 0).tolist() == [7, -1, 7]
    assert keys_of(chunk, 1).tolist() == [text_key("a"), text_key("b"), -1]
    np.testing.assert_array_equal(chunk.numeric[:, 0], [1.5, np.nan, 3.0])


# --------------------------------------------------------------------------- keys


def test_string_keys_exact_when_short_and_stable_when_long():
    short = ["68fd1e64", "68fd1e65", "a", "ab", "1005"]
    long = ["a-value-longer-than-8-bytes", "a-value-longer-than-8-bytez", "another long one"]
    keys = string_keys(pa.array(short + long))
    assert len(set(keys.tolist())) == len(short) + len(long)
    assert keys[0] == int.from_bytes(b"68fd1e64", "little")  # packed byte for byte
    assert (
        string_keys(pa.array(["x", long[1], "y"]))[1] == keys[len(short) + 1]
    )  # a key does not depend on its neighbours


@pytest.mark.parametrize("text", ["", "ü-ünïcödé-über-8-bytes"])
def test_string_keys_of_edge_values(text):
    assert string_keys(pa.array([text, text])).tolist()[0] == string_keys(pa.array([text]))[0]


def test_string_keys_same_on_the_uniform_width_fast_path():
    # All values 8 bytes (or empty): the keys are a reshape of the bytes; the same keys as one at a time.
    values = ["68fd1e64", None, "0a519c5c", "", "68fd1e64"]
    expected = [
        int.from_bytes(b"68fd1e64", "little"),
        0,
        int.from_bytes(b"0a519c5c", "little"),
        0,
        int.from_bytes(b"68fd1e64", "little"),
    ]
    assert string_keys(pa.array(values)).tolist() == expected
    assert string_keys(pa.array(values).slice(2)).tolist() == expected[2:]  # an offset into the buffers
    assert [text_key(v) for v in ("abc", "abd")] == string_keys(pa.array(["abc", "abd"])).tolist()


@pytest.mark.parametrize("width", [3, 8])
def test_fixed_width_binary_keys_equal_string_keys(width):
    texts = ["".join(chr(97 + (i * 7 + j) % 26) for j in range(width)) for i in range(6)]
    fixed = pa.array([t.encode() for t in texts], pa.binary(width)).slice(1)
    np.testing.assert_array_equal(fixed_width_keys(fixed), string_keys(pa.array(texts[1:])))


def test_criteo_fast_and_text_paths_read_the_same(tmp_path, monkeypatch):
    # Many blocks, of which some can only be read as text (odd category widths, a '1.0' label): each
    # block's rows, labels, numbers and keys must not depend on which path read it.
    lines = criteo_rows(300, seed=4)
    lines[40] = criteo_line("1", {1: "3"}, {2: "abc", 3: "0123456789"})
    lines[170] = "1.0" + lines[170][1:]
    path = write_text(tmp_path / "train.tsv", lines)
    typed, paths_taken = criteo_module.parse_typed, []

    def recording(*args):
        parsed = typed(*args)
        paths_taken.append("text" if parsed is None else "fast")
        return parsed

    monkeypatch.setattr(criteo_module, "parse_typed", recording)
    fast, _ = read_all(CriteoSource(path=str(path)), block_bytes=4000)
    monkeypatch.setattr(criteo_module, "parse_typed", lambda *args: None)
    text, _ = read_all(CriteoSource(path=str(path)), block_bytes=4000)
    assert paths_taken.count("text") == 2 and paths_taken.count("fast") > 10
    assert len(fast) == len(text) == len(paths_taken)
    for a, b in zip(fast, text):
        np.testing.assert_array_equal(a.row_index, b.row_index)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.numeric, b.numeric)
        for field in range(26):
            np.testing.assert_array_equal(keys_of(a, field), keys_of(b, field))
    c2 = np.concatenate([keys_of(chunk, 1) for chunk in fast])
    labels = np.concatenate([chunk.labels for chunk in fast])
    assert c2[40] == text_key("abc") and labels[170] == float(lines[170].split("\t")[0]) == 1.0


def test_integers_with_spaces_stay_rejected_on_the_fast_path(tmp_path):
    # pyarrow's integer reader would accept ' 12'; the text path, which decides, does not.
    path = write_text(tmp_path / "train.tsv", criteo_rows(5) + [criteo_line("1", {3: " 12"})])
    with pytest.raises(BadInputError, match=re.escape(f"{path}, line 6: numeric field not a valid integer: I3=' 12'")):
        read_all(CriteoSource(path=str(path)))
