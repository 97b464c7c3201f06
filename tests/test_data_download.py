"""Fetching datasets (``datamodules.download``), against local files through ``file://`` URLs only
(no test uses the network), and the "where to get the data" text of the missing-file errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile

import pytest

from datamodules import BadInputError, CriteoSource, LibFMSource
from datamodules import download as download_module
from datamodules.download import DATASETS, DownloadError, fetch, main
from datamodules.errors import RejectLog
from tests.test_data_formats import criteo_rows, libfm_rows, write_text
from tests.test_data_module import build, compose_data


def criteo_archive(tmp_path, rows: int = 30, extra_members: bool = True) -> tuple[str, bytes, bytes]:
    """A small dac.tar.gz look-alike: -> (its file:// URL, train.txt bytes, test.txt bytes)."""
    train = ("\n".join(criteo_rows(rows)) + "\n").encode()
    test = ("\n".join(criteo_rows(7, seed=1, labelled=False)) + "\n").encode()
    archive = tmp_path / "dac.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        members = [("readme.txt", b"fixture\n"), ("train.txt", train), ("test.txt", test)]
        for name, data in members if extra_members else members[1:]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.as_uri(), train, test


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(download_module.PARTIAL_PREFIX))


def test_criteo_archive_is_downloaded_unpacked_and_readable(tmp_path):
    url, train, test = criteo_archive(tmp_path)
    dest = tmp_path / "criteo"
    paths = fetch("criteo", dest, url=url, progress=False)
    assert paths == [dest / "train.txt", dest / "test.txt"]
    assert (dest / "train.txt").read_bytes() == train and (dest / "test.txt").read_bytes() == test
    assert sorted(p.name for p in dest.iterdir()) == ["test.txt", "train.txt"]  # no archive, no partial files
    source = CriteoSource(files={"train": str(paths[0]), "test": str(paths[1])})
    chunks = list(source.read("train", RejectLog("error"), 1 << 20))
    assert sum(c.num_rows for c in chunks) == 30 and source.labelled == {"train": True, "test": False}


def test_a_second_fetch_is_a_no_op(tmp_path):
    url, train, _ = criteo_archive(tmp_path)
    dest = tmp_path / "criteo"
    fetch("criteo", dest, url=url, progress=False)
    before = (dest / "train.txt").stat().st_mtime_ns
    # The finished files are there, so nothing is fetched: not even a URL that does not exist is opened.
    fetch("criteo", dest, url=(tmp_path / "gone.tar.gz").as_uri(), progress=False)
    assert (dest / "train.txt").stat().st_mtime_ns == before and (dest / "train.txt").read_bytes() == train


@pytest.mark.parametrize("damage", ["truncated", "not gzip", "members missing"])
def test_a_damaged_archive_leaves_no_final_file(tmp_path, damage):
    url, _, _ = criteo_archive(tmp_path, rows=2000)
    archive = tmp_path / "dac.tar.gz"
    if damage == "truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif damage == "not gzip":
        archive.write_bytes(b"<html>moved</html>" * 100)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo("other.txt")
            tar.addfile(info, io.BytesIO(b""))
    dest = tmp_path / "criteo"
    expected = "has no train.txt, test.txt" if damage == "members missing" else "not a readable tar.gz archive"
    with pytest.raises(DownloadError, match=expected):
        fetch("criteo", dest, url=url, progress=False)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("moment", ["while downloading", "while unpacking"])
def test_an_interrupted_fetch_leaves_nothing_and_the_next_run_finishes(tmp_path, monkeypatch, moment):
    url, train, _ = criteo_archive(tmp_path, rows=3000)
    dest = tmp_path / "criteo"
    reads = {"n": 0}
    open_url, copy = download_module.urllib.request.urlopen, download_module._copy

    def interrupted_after_two_reads(*args, **kwargs):
        response = open_url(*args, **kwargs)
        read = response.read

        def read_then_stop(size=-1):
            reads["n"] += 1
            if reads["n"] == 3:
                raise KeyboardInterrupt
            return read(size)

        response.read = read_then_stop
        return response

    def copy_then_stop(source, target, *args, **kwargs):
        target.write(source.read(100))
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(download_module, "STREAM_BYTES", 4096)
        if moment == "while downloading":
            patch.setattr(download_module.urllib.request, "urlopen", interrupted_after_two_reads)
        else:
            patch.setattr(download_module, "_copy", copy_then_stop)
        with pytest.raises(KeyboardInterrupt):
            fetch("criteo", dest, url=url, progress=False)
    assert list(dest.iterdir()) == []
    assert reads["n"] == (3 if moment == "while downloading" else 0) and download_module._copy is copy
    fetch("criteo", dest, url=url, progress=False)
    assert (dest / "train.txt").read_bytes() == train


def test_stale_partials_of_dead_fetches_are_removed(tmp_path):
    url, _, _ = criteo_archive(tmp_path)
    dest = tmp_path / "criteo"
    dest.mkdir()
    dead = dest / f"{download_module.PARTIAL_PREFIX}999999999-deadbeef.download"  # no such process id
    dead.write_bytes(b"half an archive")
    fetch("criteo", dest, url=url, progress=False)
    assert leftovers(dest) == [] and (dest / "train.txt").is_file()


def test_size_and_sha256_are_checked(tmp_path):
    url, train, _ = criteo_archive(tmp_path)
    archive_bytes = (tmp_path / "dac.tar.gz").read_bytes()
    digest = hashlib.sha256(archive_bytes).hexdigest()
    with pytest.raises(DownloadError, match="sha256 .* differs from the expected 0000"):
        fetch("criteo", tmp_path / "a", url=url, sha256="0" * 64, progress=False)
    with pytest.raises(DownloadError, match=f"got {len(archive_bytes):,} bytes, expected 12"):
        fetch("criteo", tmp_path / "b", url=url, size=12, progress=False)
    assert list((tmp_path / "a").iterdir()) == [] and list((tmp_path / "b").iterdir()) == []
    fetch("criteo", tmp_path / "c", url=url, sha256=digest.upper(), size=len(archive_bytes), progress=False)
    assert (tmp_path / "c" / "train.txt").read_bytes() == train


def test_libfm_triple_from_a_base_url(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    contents = {}
    for i, split in enumerate(("train", "validation", "test")):
        contents[split] = libfm_rows(12, fields=10, seed=i)
        write_text(mirror / f"frappe.{split}.libfm", contents[split])
    paths = fetch("frappe", tmp_path / "frappe", url=mirror.as_uri() + "/", progress=False)
    assert [p.name for p in paths] == ["frappe.train.libfm", "frappe.validation.libfm", "frappe.test.libfm"]
    source = LibFMSource(files=dict(zip(("train", "val", "test"), map(str, paths))), fields=10)
    (chunk,) = source.read("val", RejectLog("error"), 1 << 20)
    assert chunk.num_rows == 12
    assert chunk.labels.tolist() == [float(line.split()[0] == "1") for line in contents["validation"]]


def test_default_urls_point_at_the_public_copies():
    assert DATASETS["criteo"].remotes[0].url == download_module.CRITEO_URL
    assert [r.url for r in DATASETS["frappe"].remotes] == [
        f"https://raw.githubusercontent.com/hexiangnan/neural_factorization_machine/master/data/frappe/frappe.{s}.libfm"
        for s in ("train", "validation", "test")
    ]
    assert [r.outputs for r in DATASETS["movielens_tag"].remotes] == [
        (f"ml-tag.{s}.libfm",) for s in ("train", "validation", "test")
    ]


def test_gzip_file_unpacked_and_url_required_without_a_default(tmp_path):
    text = b"id,click,hour\n1,0,14102100\n"
    packed = tmp_path / "train.gz"
    packed.write_bytes(gzip.compress(text))
    with pytest.raises(DownloadError, match="no public download URL; fetch it yourself"):
        fetch("avazu", tmp_path / "avazu", progress=False)
    (path,) = fetch("avazu", tmp_path / "avazu", url=packed.as_uri(), progress=False)
    assert path.name == "train.csv" and path.read_bytes() == text


def test_cli_fetches_and_says_how_to_use_it(tmp_path, capsys):
    url, train, _ = criteo_archive(tmp_path)
    main(["criteo", "--dest", str(tmp_path / "d"), "--url", url, "--no-progress"])
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'd' / 'train.txt'}\n" in printed
    assert f"use it with: python run.py data=criteo data.source.path={tmp_path / 'd'}/train.txt" in printed
    with pytest.raises(SystemExit, match="download failed"):
        main(["criteo", "--dest", str(tmp_path / "e"), "--url", (tmp_path / "nowhere.tar.gz").as_uri()])


# --------------------------------------------------------------------------- where to get the data

CRITEO_FACTS = [
    "Kaggle Display Advertising Challenge",
    "Criteo AI Lab",
    "dac.tar.gz",
    "train.txt",
    "45,840,617",
    "~11 GB",
    "test.txt",
    "tab-separated",
    "label (0/1), I1..I13",
    "C1..C26",
    "python -m datamodules.download criteo",
    "data.source.path=",
    "data.source.files=",
]


def test_criteo_errors_say_where_to_get_the_data(tmp_path):
    for make in (lambda: CriteoSource(), lambda: CriteoSource(path=str(tmp_path / "train.txt"))):
        with pytest.raises(BadInputError) as error:
            make()
        assert all(fact in str(error.value) for fact in CRITEO_FACTS), str(error.value)
    with pytest.raises(BadInputError, match=re.escape(f"the input file {tmp_path / 'train.txt'} does not exist")):
        CriteoSource(path=str(tmp_path / "train.txt"))


@pytest.mark.parametrize(
    "name,facts",
    [
        ("criteo", CRITEO_FACTS),
        (
            "frappe",
            [
                "hexiangnan/neural_factorization_machine",
                "data/frappe/frappe.{train,validation,test}.libfm",
                "python -m datamodules.download frappe",
                "data.source.files=",
            ],
        ),
        (
            "movielens_tag",
            ["hexiangnan/neural_factorization_machine", "data/ml-tag/ml-tag.{train,validation,test}.libfm"],
        ),
        ("movielens_1m", ["python -m datamodules.download movielens_1m", "data.source.path=DIR/movielens_1m.csv"]),
        ("avazu", ["Click-Through Rate Prediction", "train.gz", "40,428,967", "data.source.path=DIR/train.csv"]),
    ],
)
def test_each_config_without_data_says_where_to_get_it(name, facts):
    with pytest.raises(Exception) as error:
        build(compose_data(name))
    cause = error.value
    while cause is not None and not isinstance(cause, BadInputError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None and "no input file is set" in str(cause)
    assert all(fact in str(cause) for fact in facts), str(cause)


def test_a_given_hint_replaces_the_class_text(tmp_path):
    with pytest.raises(BadInputError, match=r"does not exist\.\nask the data team$"):
        LibFMSource(path=str(tmp_path / "x.libfm"), how_to_get="ask the data team")
