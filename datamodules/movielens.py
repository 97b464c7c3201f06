"""MovieLens-1M as a CTR table: ``python -m datamodules.download movielens_1m --dest DIR``.

GroupLens's ``ml-1m.zip`` holds three ``::``-separated, latin-1 files (its README):
``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``, ``users.dat``
``UserID::Gender::Age::Occupation::Zip-code`` and ``movies.dat`` ``MovieID::Title::Genres`` with
``|``-separated genres. ``convert`` joins them into one CSV row per rating: ``label`` (rating >= 4,
the usual CTR reading of MovieLens ratings), ``user``, ``item``, ``age``, ``gender``, ``occupation``,
``zip``, ``genres`` (``|``-separated: a multi-valued field for ``data=movielens_1m``), and the
``hour`` and ``weekday`` (0 = Monday) of the rating's UTC timestamp; rows in ``ratings.dat`` order.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

ARCHIVE_MEMBERS = ("ratings.dat", "users.dat", "movies.dat")
OUTPUT = "movielens_1m.csv"
COLUMNS = {
    "ratings.dat": ["user", "item", "rating", "timestamp"],
    "users.dat": ["user", "gender", "age", "occupation", "zip"],
    "movies.dat": ["item", "title", "genres"],
}
POSITIVE_RATING = 4


class ConversionError(RuntimeError):
    """An input file that is not in MovieLens-1M's format."""


def read_dat(path: Path) -> "pd.DataFrame":
    """One ``::``-separated latin-1 file -> a frame of text columns, named as ``COLUMNS`` says.

    pandas' C parser takes one-character separators only, so ``::`` becomes a tab (which no field
    holds) before parsing; titles may hold quotes and commas, so nothing is read as quoting."""
    import pandas as pd  # here, not at the top: ``datamodules.download`` imports this module for its names

    names = COLUMNS[path.name]
    text = path.read_bytes().decode("latin-1").replace("::", "\t")
    try:
        frame = pd.read_csv(io.StringIO(text), sep="\t", names=names, dtype=str, quoting=csv.QUOTE_NONE)
    except pd.errors.ParserError as error:
        raise ConversionError(f"{path}: {error}") from None
    missing = frame.isna().any(axis=1).to_numpy()
    if missing.any():
        line = int(missing.argmax()) + 1
        raise ConversionError(f"{path}, line {line}: expected {len(names)} fields separated by '::' ({names})")
    return frame


def convert(folder: Path) -> None:
    """``folder``'s three ``.dat`` files -> ``folder / OUTPUT``."""
    import pandas as pd

    ratings, users, movies = (read_dat(folder / name) for name in ARCHIVE_MEMBERS)
    try:
        timestamp = pd.to_datetime(ratings["timestamp"].astype("int64"), unit="s", utc=True)
        rating = ratings["rating"].astype("int64")
    except ValueError as error:
        raise ConversionError(f"{folder / 'ratings.dat'}: a rating or timestamp is not an integer ({error})") from None
    table = ratings[["user", "item"]].assign(label=(rating >= POSITIVE_RATING).astype("int8"))
    for frame, key, name in ((users, "user", "users.dat"), (movies, "item", "movies.dat")):
        repeated = frame[key].duplicated().to_numpy()
        if repeated.any():
            line, key_value = int(repeated.argmax()) + 1, frame[key][repeated].iloc[0]
            raise ConversionError(f"{folder / name}, line {line}: {key} {key_value} was listed before")
    table = table.merge(users, on="user", how="left")
    table = table.merge(movies[["item", "genres"]], on="item", how="left")
    for column, source in (("gender", "users.dat"), ("genres", "movies.dat")):
        unknown = table[column].isna()
        if unknown.any():
            key = "user" if column == "gender" else "item"
            raise ConversionError(
                f"{folder / 'ratings.dat'}, line {int(unknown.to_numpy().argmax()) + 1}: {key} "
                f"{table[key][unknown].iloc[0]} is not in {source} ({int(unknown.sum())} such ratings)"
            )
    table["hour"], table["weekday"] = timestamp.dt.hour, timestamp.dt.dayofweek
    columns = ["label", "user", "item", "age", "gender", "occupation", "zip", "genres", "hour", "weekday"]
    table[columns].to_csv(folder / OUTPUT, index=False)
