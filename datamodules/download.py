"""Fetch the public datasets the configs read, into a folder of your choice.

    python -m datamodules.download criteo --dest DIR [--url URL] [--sha256 HEX] [--size BYTES]
    python -m datamodules.download frappe --dest DIR          (also: movielens_tag, movielens_1m, avazu)

Each file is streamed from its URL into a temporary file in DIR (with a progress bar), checked
against the announced length and, when given, a size and sha256; archives (``.tar.gz``, ``.gz``,
``.zip``) are unpacked into a temporary folder, and converted there where a dataset needs it
(MovieLens-1M's ``.dat`` files into one CSV, ``datamodules.movielens``); only then are the finished
files renamed into place. So an
interrupted or failed fetch leaves nothing that looks finished (at most ``.partial-*`` names, which
the next run removes), and a fetch whose files are all there already does nothing.

The default URLs are the public addresses known when this was written; addresses move, and
``--url`` overrides them: the file's URL for a one-file dataset, a base URL (``<base>/<file
name>``) for the libfm triples. Any URL urllib opens works, ``file://`` included (a copy you
already have). Avazu has no default: Kaggle serves it only to signed-in users who accepted the
competition's rules, so fetch ``train.gz`` yourself and unpack it with ``--url file:///.../train.gz``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import logging
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from tqdm.auto import tqdm

from datamodules import movielens

log = logging.getLogger(__name__)

CRITEO_URL = "https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz"
MOVIELENS_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
NFM_DATA_URL = "https://raw.githubusercontent.com/hexiangnan/neural_factorization_machine/master/data"
STREAM_BYTES = 1 << 20
PARTIAL_PREFIX = ".partial-"
TIMEOUT_S = 60
DEST = "<DEST>"


class DownloadError(RuntimeError):
    """A fetch that failed: unreachable URL, truncated or corrupt file, wrong checksum."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch. url: its default address (None: there is none, ``--url`` is required);
    outputs: the files it leaves in the destination (an archive's members, by base name); archive:
    ``"tar.gz"``, ``"gz"``, ``"zip"`` or None (the file is kept as it is); size / sha256: checked
    when known; members: the archive's members to unpack when they are not the outputs, which
    ``convert`` (called with the folder they are in) then writes there."""

    url: Optional[str]
    outputs: tuple[str, ...]
    archive: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    members: tuple[str, ...] = ()
    convert: Optional[Callable[[Path], None]] = None


@dataclass(frozen=True)
class Dataset:
    """A dataset's files, and the overrides that use them (``DEST`` stands for the folder)."""

    name: str
    remotes: tuple[Remote, ...]
    then: str


def _nfm_triple(folder: str, stem: str) -> tuple[Remote, ...]:
    names = [f"{stem}.{split}.libfm" for split in ("train", "validation", "test")]
    return tuple(Remote(f"{NFM_DATA_URL}/{folder}/{name}", (name,)) for name in names)


def _libfm_files(stem: str) -> str:
    return (
        f"data.source.files='{{train: {DEST}/{stem}.train.libfm, val: {DEST}/{stem}.validation.libfm, "
        f"test: {DEST}/{stem}.test.libfm}}'"
    )


DATASETS = {
    "criteo": Dataset(
        "criteo",
        (Remote(CRITEO_URL, ("train.txt", "test.txt"), archive="tar.gz"),),
        f"data=criteo data.source.path={DEST}/train.txt",
    ),
    "frappe": Dataset("frappe", _nfm_triple("frappe", "frappe"), "data=frappe " + _libfm_files("frappe")),
    "movielens_tag": Dataset(
        "movielens_tag", _nfm_triple("ml-tag", "ml-tag"), "data=movielens_tag " + _libfm_files("ml-tag")
    ),
    "movielens_1m": Dataset(
        "movielens_1m",
        (
            Remote(
                MOVIELENS_1M_URL,
                (movielens.OUTPUT,),
                archive="zip",
                members=movielens.ARCHIVE_MEMBERS,
                convert=movielens.convert,
            ),
        ),
        f"data=movielens_1m data.source.path={DEST}/{movielens.OUTPUT}",
    ),
    "avazu": Dataset(
        "avazu", (Remote(None, ("train.csv",), archive="gz"),), f"data=avazu data.source.path={DEST}/train.csv"
    ),
}


def fetch(
    dataset: str | Dataset,
    dest: str | Path,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    size: Optional[int] = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch ``dataset`` into ``dest`` (created if needed) unless its files are there already.

    url: overrides the default (see the module docstring); sha256 / size: expected for a one-file
    dataset's download. Returns the paths of the dataset's files in ``dest``.
    """
    dataset = DATASETS[dataset] if isinstance(dataset, str) else dataset
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(dest)
    if (sha256 or size) and len(dataset.remotes) > 1:
        raise DownloadError(f"{dataset.name} has {len(dataset.remotes)} files; --sha256 / --size check one file")
    for remote in dataset.remotes:
        if all((dest / name).is_file() for name in remote.outputs):
            log.info("%s: %s already in %s", dataset.name, ", ".join(remote.outputs), dest)
            continue
        source = _resolve_url(dataset, remote, url)
        _fetch_one(source, remote, dest, sha256 or remote.sha256, size or remote.size, progress)
    return [dest / name for remote in dataset.remotes for name in remote.outputs]


def _resolve_url(dataset: Dataset, remote: Remote, override: Optional[str]) -> str:
    if override and len(dataset.remotes) == 1:
        return override
    if override:
        return f"{override.rstrip('/')}/{remote.outputs[0]}"
    if remote.url is None:
        raise DownloadError(
            f"{dataset.name} has no public download URL; fetch it yourself and pass its location with "
            f"--url (file:///path/to/file for a local copy)"
        )
    return remote.url


def _fetch_one(
    url: str, remote: Remote, dest: Path, sha256: Optional[str], size: Optional[int], progress: bool
) -> None:
    """Download ``url``, check it, unpack it if it is an archive, and move its outputs into ``dest``."""
    stem = f"{PARTIAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    downloaded, unpacked = dest / f"{stem}.download", dest / f"{stem}.unpacked"
    try:
        _download(url, downloaded, sha256, size, progress)
        if remote.archive is None:
            finished = {remote.outputs[0]: downloaded}
        else:
            unpacked.mkdir()
            finished = _unpack(downloaded, remote, unpacked, url, progress)
            if remote.convert is not None:
                try:
                    remote.convert(unpacked)
                except movielens.ConversionError as error:
                    raise DownloadError(f"{url}: {error}; nothing was kept") from None
                finished = {name: unpacked / name for name in remote.outputs}
        for name in remote.outputs:  # each rename is atomic; the set is complete once the last one is there
            os.replace(finished[name], dest / name)
    finally:
        downloaded.unlink(missing_ok=True)
        shutil.rmtree(unpacked, ignore_errors=True)


def _download(url: str, target: Path, sha256: Optional[str], size: Optional[int], progress: bool) -> None:
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, target.open("wb") as out:
            announced = response.headers.get("Content-Length")
            announced = int(announced) if announced is not None else None
            with tqdm(
                total=announced, unit="B", unit_scale=True, desc=f"download {Path(url).name}", disable=not progress
            ) as bar:
                while block := response.read(STREAM_BYTES):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DownloadError(f"{url}: download failed ({error}); URLs move: pass another with --url") from error
    if announced is not None and received != announced:
        raise DownloadError(f"{url}: the download stopped after {received:,} of {announced:,} bytes")
    if size is not None and received != size:
        raise DownloadError(f"{url}: got {received:,} bytes, expected {size:,}")
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise DownloadError(f"{url}: sha256 {digest.hexdigest()} differs from the expected {sha256.lower()}")
    log.info("downloaded %s (%s bytes, sha256 %s)", url, f"{received:,}", digest.hexdigest())


def _unpack(archive: Path, remote: Remote, folder: Path, url: str, progress: bool) -> dict[str, Path]:
    """Unpack ``remote.outputs`` (or ``remote.members``) from ``archive`` into ``folder``; -> name -> its file there."""
    wanted = remote.members or remote.outputs
    try:
        if remote.archive == "zip":
            found = _unzip(archive, wanted, folder, progress)
        elif remote.archive == "gz":
            target = folder / remote.outputs[0]
            with gzip.open(archive, "rb") as packed, target.open("wb") as out:
                _copy(packed, out, f"unpack {target.name}", progress)
            return {remote.outputs[0]: target}
        elif remote.archive != "tar.gz":
            raise DownloadError(f"unknown archive kind {remote.archive!r}")
        else:
            found = {}
            with tarfile.open(archive, mode="r|gz") as members:
                for member in members:
                    name = Path(member.name).name
                    # Only regular files, written under names of our choosing: nothing in the archive can
                    # place a file elsewhere or make a link.
                    if not member.isfile() or name not in wanted or name in found:
                        continue
                    found[name] = folder / name
                    with members.extractfile(member) as packed, found[name].open("wb") as out:
                        _copy(packed, out, f"unpack {name}", progress, member.size)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile) as error:
        raise DownloadError(
            f"{url}: not a readable {remote.archive} archive: damaged, incomplete, or another kind of "
            f"file ({error}); nothing was kept"
        ) from error
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DownloadError(
            f"{url}: the archive has no {', '.join(missing)} (it has been changed, or is another "
            f"file); nothing was kept"
        )
    return found


def _unzip(archive: Path, wanted: tuple[str, ...], folder: Path, progress: bool) -> dict[str, Path]:
    """The members of a zip archive named (by base name) in ``wanted``, as ``_unpack``'s tar branch
    takes them: regular files only, under names of our choosing."""
    found = {}
    with zipfile.ZipFile(archive) as members:
        for member in members.infolist():
            name = Path(member.filename).name
            if member.is_dir() or name not in wanted or name in found:
                continue
            found[name] = folder / name
            with members.open(member) as packed, found[name].open("wb") as out:
                _copy(packed, out, f"unpack {name}", progress, member.file_size)
    return found


def _copy(source: BinaryIO, target: BinaryIO, description: str, progress: bool, total: Optional[int] = None) -> None:
    with tqdm(total=total, unit="B", unit_scale=True, desc=description, disable=not progress) as bar:
        while block := source.read(STREAM_BYTES):
            target.write(block)
            bar.update(len(block))


def _remove_stale_partials(dest: Path) -> None:
    """Delete what fetches killed before they could clean up left behind (never a live fetch's files)."""
    for leftover in dest.glob(f"{PARTIAL_PREFIX}*"):
        try:
            pid = int(leftover.name[len(PARTIAL_PREFIX) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--dest", required=True, type=Path, help="folder for the dataset's files")
    parser.add_argument("--url", help="where to fetch from instead of the default (a base URL for libfm triples)")
    parser.add_argument("--sha256", help="expected sha256 of the downloaded file")
    parser.add_argument("--size", type=int, help="expected size of the downloaded file in bytes")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = fetch(args.dataset, args.dest, args.url, args.sha256, args.size, progress=not args.no_progress)
    except DownloadError as error:
        sys.exit(f"error: {error}")
    for path in paths:
        print(path)
    folder = str(args.dest.expanduser().resolve())
    print("use it with: python run.py " + DATASETS[args.dataset].then.replace(DEST, folder))


if __name__ == "__main__":
    main()
