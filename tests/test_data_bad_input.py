"""Bad input: every case gets a message naming file, line and problem (``error``), or a count by
reason in the manifest (``skip``), and rows read = kept + rejected."""

from __future__ import annotations

import re

import pytest

from datamodules import BadInputError, CTRDataModule
from datamodules.sources import CriteoSource, LibFMSource, TableSource
from tests.test_data_formats import (
    AVAZU_COLUMNS,
    avazu_like_rows,
    criteo_line,
    criteo_rows,
    libfm_rows,
    read_all,
    write_criteo,
    write_text,
)

CRITEO_HEADER = "\t".join(["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])


def criteo_with(tmp_path, bad_lines: dict[int, str], count: int = 12):
    """A Criteo file of ``count`` valid lines with ``bad_lines`` (1-based line number -> text) put in."""
    lines = criteo_rows(count)
    for number, text in sorted(bad_lines.items()):
        lines.insert(number - 1, text)
    return write_text(tmp_path / "train.tsv", lines)


CRITEO_CASES = {
    "header": ({1: CRITEO_HEADER}, 1, "unexpected header line"),
    "short line": ({4: "1\t2\t3"}, 4, "wrong number of fields: expected 40 tab-separated fields, found 3"),
    "long line": (
        {6: criteo_line("0") + "\textra"},
        6,
        "wrong number of fields: expected 40 tab-separated fields, found 41",
    ),
    "text in integer field": ({5: criteo_line("1", {5: "12a"})}, 5, "numeric field not a valid integer: I5='12a'"),
    "float in integer field": ({3: criteo_line("1", {2: "1.5"})}, 3, "numeric field not a valid integer: I2='1.5'"),
    "integer out of range": (
        {10: criteo_line("1", {3: "1" + "0" * 30})},
        10,
        "numeric field out of range: I3='1000000000000000000000000000000' is out of range",
    ),
    "label 2": ({7: criteo_line("2", {1: "3"})}, 7, "label not in {0,1}: label '2'"),
    "label -1": ({2: criteo_line("-1")}, 2, "label not in {0,1}: label '-1'"),
    "missing label": ({8: criteo_line("", {1: "3"})}, 8, "missing label"),
    "empty line": ({9: ""}, 9, "empty row: the row has no values"),
}


@pytest.mark.parametrize("case", CRITEO_CASES, ids=list(CRITEO_CASES))
def test_criteo_bad_line_error_names_file_line_and_problem(tmp_path, case):
    bad_lines, line, message = CRITEO_CASES[case]
    path = criteo_with(tmp_path, bad_lines)
    with pytest.raises(BadInputError) as error:
        read_all(CriteoSource(path=str(path)), block_bytes=300)
    assert str(error.value).startswith(f"{path}, line {line}: {message}")


def test_skip_counts_each_rejected_row_by_reason(tmp_path):
    path = criteo_with(
        tmp_path,
        {
            1: CRITEO_HEADER,
            3: "1\t2",
            6: criteo_line("1", {5: "x"}),
            9: criteo_line("7"),
            12: criteo_line("0", {1: "3"}, {1: "00ff00ff"}),
        },
        count=20,
    )
    dm = CTRDataModule(
        CriteoSource(path=str(path)),
        split={"ratios": [1.0, 0.0, 0.0]},
        cache_dir=str(tmp_path / "c"),
        on_bad_line="skip",
    )
    manifest = dm.manifest
    assert manifest["rows_read"] == 25
    assert manifest["rows_kept"] == 21 and manifest["rows_rejected"] == 4
    assert manifest["rejected_by_reason"] == {
        "unexpected header line": 1,
        "wrong number of fields": 1,
        "numeric field not a valid integer": 1,
        "label not in {0,1}": 1,
    }
    assert [(e["line"], e["reason"]) for e in manifest["rejected_examples"]] == [
        (1, "unexpected header line"),
        (3, "wrong number of fields"),
        (6, "numeric field not a valid integer"),
        (9, "label not in {0,1}"),
    ]
    assert manifest["splits"]["train"]["rows"] == 21 == dm.num_rows("train")


def test_line_numbers_stay_exact_after_skipped_lines_and_blocks(tmp_path):
    path = criteo_with(tmp_path, {2: "a\tb", 3: "c", 30: criteo_line("1", {13: "-"})}, count=40)
    chunks, rejects = read_all(CriteoSource(path=str(path)), mode="skip", block_bytes=500)
    assert [e["line"] for e in rejects.examples] == [2, 3, 30]
    kept = [int(i) for c in chunks for i in c.row_index]
    assert kept == [i for i in range(43) if i not in (1, 2, 29)]  # positions among data rows, 0-based


LIBFM_CASES = {
    "label 2": ("2 1:1 2:1 3:1", "label not in {-1,0,1}"),
    "too few features": ("1 1:1 2:1", "wrong number of features: expected a label and 3 index:value features, found 2"),
    "malformed feature": ("1 1:1 2 3:1", "malformed feature (expected index:value): field f2"),
    "non-one-hot value": ("1 1:1 2:0.5 3:1", "feature value other than 1"),
    "blank line": ("   ", "empty line"),
}


@pytest.mark.parametrize("case", LIBFM_CASES, ids=list(LIBFM_CASES))
def test_libfm_bad_line(tmp_path, case):
    text, message = LIBFM_CASES[case]
    path = write_text(tmp_path / "train.libfm", libfm_rows(3) + [text] + libfm_rows(2, seed=1))
    with pytest.raises(BadInputError, match=re.escape(f"{path}, line 4: {message}")):
        read_all(LibFMSource(path=str(path)))


def test_libfm_header_line(tmp_path):
    path = write_text(tmp_path / "train.libfm", ["label user item tag"] + libfm_rows(3))
    with pytest.raises(BadInputError, match=re.escape(f"{path}, line 1: unexpected header line")):
        read_all(LibFMSource(path=str(path), fields=3))


def test_table_bad_values(tmp_path):
    path = write_text(tmp_path / "t.csv", ["label,price,city", "1,3.5,paris", "0,cheap,rome", "1,4,rome"])
    source = TableSource(label="label", categorical=["city"], numeric=["price"], path=str(path))
    with pytest.raises(
        BadInputError, match=re.escape(f"{path}, line 3: numeric field not a valid number: price='cheap'")
    ):
        read_all(source)


def test_headerless_csv_with_a_header(tmp_path):
    val = write_text(tmp_path / "val.csv", [",".join(AVAZU_COLUMNS)] + avazu_like_rows(3))
    source = TableSource(
        label="click", categorical=["site_id"], path=str(val), header=False, column_names=AVAZU_COLUMNS
    )
    with pytest.raises(BadInputError, match=re.escape(f"{val}, line 1: unexpected header line")):
        read_all(source)


def test_csv_header_that_does_not_match_column_names(tmp_path):
    path = write_text(tmp_path / "train.csv", avazu_like_rows(3))
    with pytest.raises(BadInputError, match=re.escape(f"{path}, line 1: expected a header with the configured")):
        TableSource(label="click", categorical=["site_id"], path=str(path), column_names=AVAZU_COLUMNS)


def test_declared_column_not_in_file(tmp_path):
    path = write_text(tmp_path / "train.csv", ["label,city", "1,paris"])
    with pytest.raises(
        BadInputError,
        match=r"declared column\(s\) \['town'\] not found; the file's columns are "
        r"\['label', 'city'\]",
    ):
        TableSource(label="label", categorical=["town"], path=str(path))


@pytest.mark.parametrize(
    "make_source",
    [
        lambda p: CriteoSource(path=str(p)),
        lambda p: LibFMSource(path=str(p), fields=3),
        lambda p: TableSource(
            label="label", categorical=["city"], path=str(p), header=False, column_names=["label", "city"]
        ),
    ],
    ids=["criteo", "libfm", "csv"],
)
def test_empty_file(tmp_path, make_source):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(BadInputError, match=re.escape(f"{path}: the file is empty")):
        read_all(make_source(path))


def test_header_but_no_rows(tmp_path):
    path = write_text(tmp_path / "t.csv", ["label,city"])
    with pytest.raises(BadInputError, match="has a header line but no data rows"):
        read_all(TableSource(label="label", categorical=["city"], path=str(path)))


def test_missing_file(tmp_path):
    train = write_criteo(tmp_path / "train.tsv", 5)
    expected = f"CriteoSource: the test file {tmp_path / 'nope.tsv'} does not exist"
    with pytest.raises(BadInputError, match=re.escape(expected)):
        CriteoSource(files={"train": str(train), "val": str(train), "test": str(tmp_path / "nope.tsv")})


def test_path_and_files_are_exclusive(tmp_path):
    with pytest.raises(BadInputError, match="no input file is set"):
        CriteoSource()
    train = write_criteo(tmp_path / "train.tsv", 5)
    with pytest.raises(BadInputError, match="both `path` and `files` are set"):
        CriteoSource(path=str(train), files={"train": str(train)})


def test_no_valid_training_rows(tmp_path):
    path = write_text(tmp_path / "train.tsv", [criteo_line("5")] * 4)
    with pytest.raises(BadInputError, match=r"no valid training rows \(read 4, rejected 4: 4 label not in \{0,1\}\)"):
        CTRDataModule(CriteoSource(path=str(path)), cache_dir=str(tmp_path / "c"), on_bad_line="skip").prepare_data()


def test_error_mode_refuses_a_cache_built_with_skipped_rows(tmp_path):
    path = criteo_with(tmp_path, {3: "bad"}, count=30)
    common = dict(source=CriteoSource(path=str(path)), cache_dir=str(tmp_path / "c"))
    CTRDataModule(on_bad_line="skip", **common).prepare_data()
    with pytest.raises(BadInputError, match="built with on_bad_line=skip and 1 rows were rejected"):
        CTRDataModule(on_bad_line="error", **common).prepare_data()
