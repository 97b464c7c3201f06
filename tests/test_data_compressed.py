"""Compressed inputs read as the plain file does (gzip, bz2, xz, zstd, told by their first bytes),
and files that are not text get one sentence, never their bytes."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from datamodules import BadInputError, CriteoSource, CTRDataModule, LibFMSource
from tests.test_data_formats import criteo_rows, libfm_rows, read_all, write_text


def zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(data)
    return sink.getvalue().to_pybytes()


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": zstd}


def encoded(source, tmp_path: Path, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    dm = CTRDataModule(
        source,
        split={"kind": "random", "ratios": [0.8, 0.1, 0.1], "seed": 1},
        cache_dir=str(tmp_path / name),
        progress=False,
    )
    dm.setup("fit")
    return np.asarray(dm.split_arrays("train").x), np.asarray(dm.split_arrays("train").y), dm.manifest


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_criteo_file_encodes_as_the_plain_one(tmp_path, suffix):
    plain = write_text(tmp_path / "train.txt", criteo_rows(3000, seed=2))
    packed = tmp_path / f"train.txt{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](plain.read_bytes()))
    x, y, manifest = encoded(CriteoSource(path=str(plain)), tmp_path, "plain")
    x_packed, y_packed, manifest_packed = encoded(CriteoSource(path=str(packed)), tmp_path, "packed")
    np.testing.assert_array_equal(x, x_packed)
    np.testing.assert_array_equal(y, y_packed)
    assert manifest_packed["rows_read"] == manifest["rows_read"] == 3000
    assert manifest_packed["key"] != manifest["key"]  # the key names the compressed file


def test_compression_is_told_by_the_bytes_not_the_name(tmp_path):
    path = tmp_path / "frappe.data"  # no telling suffix
    path.write_bytes(gzip.compress("\n".join(libfm_rows(50, fields=3)).encode()))
    chunks, _ = read_all(LibFMSource(path=str(path), fields=3))
    assert sum(c.num_rows for c in chunks) == 50


def test_a_name_that_promises_compression_the_file_lacks_is_an_error(tmp_path):
    path = write_text(tmp_path / "train.txt.gz", criteo_rows(10))
    with pytest.raises(BadInputError, match=r"train\.txt\.gz: the name says gzip-compressed, but the file does not"):
        CriteoSource(path=str(path))


def test_a_binary_file_gets_one_sentence_without_its_bytes(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(bytes(range(256)) * 64 + b"\x1b[31mred\x1b[0m")
    with pytest.raises(BadInputError) as error:
        read_all(CriteoSource(path=str(path)))
    message = str(error.value)
    assert "not a text file" in message and "\x1b" not in message and "\x00" not in message
    assert message.count("\n") == 0


def test_text_that_is_not_utf8_is_named_with_its_byte(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(("0\t" + "\t" * 12 + "caf\xe9\t" * 26 + "\n").encode("latin-1") * 20)
    with pytest.raises(BadInputError, match=r"not UTF-8 text \(byte \d+"):
        read_all(CriteoSource(path=str(path)))


def test_a_damaged_gzip_file_is_reported(tmp_path):
    path = tmp_path / "train.txt.gz"
    path.write_bytes(gzip.compress("\n".join(criteo_rows(2000)).encode())[:-2000])
    with pytest.raises(BadInputError, match=r"train\.txt\.gz: the gzip data is damaged or cut short"):
        read_all(CriteoSource(path=str(path)))
