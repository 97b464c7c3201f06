"""MovieLens-1M (issue 35, item 5): ``python -m datamodules.download movielens_1m`` on a tiny local
ml-1m.zip in GroupLens's format (``::``-separated, latin-1), its conversion, and data=movielens_1m."""

from __future__ import annotations

import zipfile
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from datamodules import download as download_module
from datamodules.download import DATASETS, DownloadError, fetch, main
from tests.test_data_module import build, compose_data

# 2000-12-31 22:12:40 UTC is a Sunday (weekday 6); 2001-01-01 09:00:00 UTC a Monday (0)
SUNDAY_22 = int(datetime(2000, 12, 31, 22, 12, 40, tzinfo=timezone.utc).timestamp())
MONDAY_9 = int(datetime(2001, 1, 1, 9, 0, tzinfo=timezone.utc).timestamp())
RATINGS = [(1, 1193, 5, SUNDAY_22), (1, 661, 3, MONDAY_9), (2, 1193, 4, MONDAY_9), (2, 3408, 1, SUNDAY_22)]
USERS = ["1::F::1::10::48067", "2::M::56::16::70072"]
MOVIES = [
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama",
    "661::James and the Giant Peach (1996)::Animation|Children's|Musical",
    '3408::Café, "Erin" (2000)::Drama',  # latin-1, with a comma and quotes in the title
]


def ml1m_zip(folder, ratings=RATINGS, users=USERS, movies=MOVIES) -> str:
    """A ml-1m.zip look-alike (members under ml-1m/, latin-1 text) -> its file:// URL."""
    archive = folder / "ml-1m.zip"
    files = {
        "ratings.dat": "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings),
        "users.dat": "".join(f"{line}\n" for line in users),
        "movies.dat": "".join(f"{line}\n" for line in movies),
        "README": "fixture\n",
    }
    with zipfile.ZipFile(archive, "w") as out:
        for name, text in files.items():
            out.writestr(f"ml-1m/{name}", text.encode("latin-1"))
    return archive.as_uri()


def test_ml1m_is_converted_into_a_ctr_table(tmp_path):
    (path,) = fetch("movielens_1m", tmp_path / "ml", url=ml1m_zip(tmp_path), progress=False)
    assert path.name == "movielens_1m.csv" and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    table = pd.read_csv(path, dtype=str)
    assert list(table.columns) == [
        "label", "user", "item", "age", "gender", "occupation", "zip", "genres", "hour", "weekday"
    ]  # fmt: skip
    assert table.values.tolist() == [
        ["1", "1", "1193", "1", "F", "10", "48067", "Drama", "22", "6"],
        ["0", "1", "661", "1", "F", "10", "48067", "Animation|Children's|Musical", "9", "0"],
        ["1", "2", "1193", "56", "M", "16", "70072", "Drama", "9", "0"],
        ["0", "2", "3408", "56", "M", "16", "70072", "Drama", "22", "6"],
    ]


def test_the_converted_table_trains_with_genres_multi_valued(tmp_path, capsys):
    ratings = [(u, m, (u + m) % 5 + 1, SUNDAY_22 + 3600 * m) for u in (1, 2) for m in (1193, 661, 3408)] * 10
    main(["movielens_1m", "--dest", str(tmp_path / "ml"), "--url", ml1m_zip(tmp_path, ratings), "--no-progress"])
    command = capsys.readouterr().out.strip().splitlines()[-1]
    csv = tmp_path / "ml" / "movielens_1m.csv"
    assert command == f"use it with: python run.py data=movielens_1m data.source.path={csv.resolve()}"
    dm = build(compose_data("movielens_1m", f"data.source.path={csv}", f"data.cache_dir={tmp_path / 'cache'}"))
    schema = dm.schema
    assert [f.name for f in schema.fields] == [
        "user", "item", "age", "gender", "occupation", "zip", "hour", "weekday", "genres"
    ]  # fmt: skip
    genres = schema.multi_fields[0]
    assert (genres.max_len, genres.pooling, genres.vocab_size) == (6, "mean", 4 + 2)
    x_multi = np.concatenate([np.asarray(dm.split_arrays(s).x_multi) for s in ("train", "val", "test")])
    assert sorted(set((x_multi != genres.offset + genres.padding_id).sum(1).tolist())) == [1, 3]


@pytest.mark.parametrize(
    "ratings, users, movies, message",
    [
        (RATINGS, USERS[:1], MOVIES, r"ratings\.dat, line 3: user 2 is not in users\.dat \(2 such ratings\)"),
        (RATINGS, USERS, MOVIES[:2], r"ratings\.dat, line 4: item 3408 is not in movies\.dat"),
        (RATINGS, USERS, ["1193::Drama"], r"movies\.dat, line 1: expected 3 fields"),
        (RATINGS, USERS + ["1::M::1::1::1"], MOVIES, r"users\.dat, line 3: user 1 was listed before"),
    ],
)
def test_bad_files_get_one_line_errors_and_leave_nothing(tmp_path, ratings, users, movies, message):
    with pytest.raises(DownloadError, match=message) as error:
        fetch("movielens_1m", tmp_path / "ml", url=ml1m_zip(tmp_path, ratings, users, movies), progress=False)
    assert "\n" not in str(error.value) and list((tmp_path / "ml").iterdir()) == []


def test_a_zip_without_the_members_or_not_a_zip_is_refused(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        fetch("movielens_1m", tmp_path / "ml", url=broken.as_uri(), progress=False)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as out:
        out.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
    with pytest.raises(DownloadError, match="the archive has no users.dat, movies.dat"):
        fetch("movielens_1m", tmp_path / "ml", url=(tmp_path / "other.zip").as_uri(), progress=False)


def test_default_url_is_grouplens():
    assert DATASETS["movielens_1m"].remotes[0].url == download_module.MOVIELENS_1M_URL
    assert download_module.MOVIELENS_1M_URL == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
