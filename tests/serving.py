"""What the scoring and export tests share: tiny raw CSV tables written by the test, and a one-epoch
run of any model of the zoo on them at test sizes (``tests.helpers.model_settings``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from tests.helpers import model_settings

CATEGORICAL, NUMERIC = ["c0", "c1", "c2"], ["n0", "n1"]
ROWS = {"train": 900, "val": 200, "test": 300}


def raw_table(rows: int, seed: int, vocabulary: int) -> pd.DataFrame:
    """Clicks with a planted signal: c0 short text, c1 text longer than 8 bytes (hashed keys), c2
    integers, n0 / n1 numbers with gaps; ``vocabulary`` values per field (later splits draw from a
    larger range, so they hold values the training rows never had: out of vocabulary)."""
    rng = np.random.default_rng(seed)
    c0, c1, c2 = (rng.integers(0, vocabulary, rows) for _ in range(3))
    n0 = np.round(rng.exponential(20.0, rows), 2)
    n1 = rng.normal(0.0, 5.0, rows).round(3)
    logit = 0.3 * np.sin(c0) + 0.4 * np.cos(c1 * 0.7) - 0.01 * n0 + 0.1 * n1
    frame = pd.DataFrame(
        {
            "row_id": [f"r{seed}-{i}" for i in range(rows)],
            "label": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
            "c0": [f"u{v}" for v in c0],
            "c1": [f"category-number-{v}" for v in c1],
            "c2": c2,
            "n0": n0,
            "n1": n1,
        }
    )
    frame.loc[rng.random(rows) < 0.1, "n0"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "c0"] = None
    return frame


def genre_lists(rows: int, seed: int, vocabulary: int) -> list[list[str]]:
    """Lists of 0 to 6 genre tokens ``g<k>`` (repeats allowed), ``vocabulary`` tokens to draw from
    (later splits draw from more: tokens the training rows never had)."""
    rng = np.random.default_rng(1000 + seed)  # its own stream: the other columns stay as raw_table draws them
    lengths = rng.integers(0, 7, rows)
    return [[f"g{k}" for k in rng.integers(0, vocabulary, n)] for n in lengths]


def with_genres(frame: pd.DataFrame, seed: int, vocabulary: int, parquet: bool) -> pd.DataFrame:
    """``frame`` and a ``genres`` column: a list column for Parquet, else text cells of tokens
    separated by ``|`` with stray whitespace and empty tokens (which the reader drops)."""
    lists = genre_lists(len(frame), seed, vocabulary)
    cells = lists if parquet else [" | ".join(tokens) + ("|" if i % 7 == 3 else "") for i, tokens in enumerate(lists)]
    return frame.assign(genres=cells)


def write_tables(
    folder: Path, bad_test_line: bool = False, genres: bool = False, parquet: bool = False
) -> dict[str, Path]:
    """``{train, val, test}.csv`` (``.parquet``) in ``folder``; ``bad_test_line``: the test file gets a
    row whose n1 is not a number (a run and a scoring with on_bad_line=skip both drop it); ``genres``:
    with a multi-valued ``genres`` column (``with_genres``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for seed, (split, rows) in enumerate(ROWS.items()):
        vocabulary = 12 if split == "train" else 15
        frame = raw_table(rows, seed, vocabulary)
        frame = with_genres(frame, seed, vocabulary - 3, parquet) if genres else frame
        files[split] = folder / f"{split}.{'parquet' if parquet else 'csv'}"
        if parquet:
            frame.to_parquet(files[split], index=False)
            continue
        frame.to_csv(files[split], index=False)
        if bad_test_line and split == "test":
            with files[split].open("a") as f:
                f.write("rX,1,u1,category-number-1,3,1.5,not-a-number" + (",g1|g2\n" if genres else "\n"))
    return files


def files_override(files: dict[str, Path]) -> str:
    return f"data.source.files={{train: {files['train']}, val: {files['val']}, test: {files['test']}}}"


def table_overrides(files: dict[str, Path], genres: str | None = None) -> list[str]:
    """``genres``: the value of ``data.source.multi_valued`` (the ``genres`` column's declaration)."""
    return [
        "data=table",
        files_override(files),
        "data.source.label=label",
        f"data.source.categorical=[{','.join(CATEGORICAL)}]",
        "data.source.integer_categorical=[c2]",
        f"data.source.numeric=[{','.join(NUMERIC)}]",
        *([f"data.source.multi_valued={genres}"] if genres else []),
    ]


def criteo_files(folder: Path) -> dict[str, Path]:
    """Criteo TSV ``{train, val, test}`` files (the test file gzip-compressed), values drawn as
    ``tests.test_data_formats.criteo_rows`` draws them."""
    from tests.test_data_formats import criteo_rows

    folder.mkdir(parents=True, exist_ok=True)
    files = {split: folder / f"{split}.txt" for split in ROWS}
    for seed, (split, rows) in enumerate(ROWS.items()):
        files[split].write_text("\n".join(criteo_rows(rows, seed)) + "\n")
    with files["test"].open("rb") as plain, gzip.open(folder / "test.txt.gz", "wb") as packed:
        packed.write(plain.read())
    return {**files, "test": folder / "test.txt.gz"}


def libfm_files(folder: Path, fields: int = 3) -> dict[str, Path]:
    """libfm ``{train, val, test}`` files: ``label index:1 ...``, label -1/1, one index per field."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for seed, (split, rows) in enumerate(ROWS.items()):
        rng = np.random.default_rng(seed)
        index = rng.integers(0, 10, (rows, fields)) + 10 * np.arange(fields)
        label = np.where(rng.random(rows) < 1 / (1 + np.exp(-np.sin(index[:, 0]))), "1", "-1")
        lines = [" ".join([y, *(f"{i}:1" for i in row)]) for y, row in zip(label, index)]
        files[split] = folder / f"{split}.libfm"
        files[split].write_text("\n".join(lines) + "\n")
    return files


def run_config(model: str, data: list[str], cache: Path, *extra: str):
    """The config of a one-epoch run of ``model`` at test sizes; ``data``: the data group's overrides."""
    from experiments.run.config import compose_config

    cfg = compose_config(
        [
            *data,
            f"data.cache_dir={cache}",
            "data.batch_size=128",
            "data.eval_batch_size=96",
            "+data.progress=false",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "threads=null",
            f"model={model}",
            *extra,
        ]
    )
    settings = model_settings(model, "adam")
    optim = settings.pop("optim")
    OmegaConf.set_struct(cfg, False)
    cfg.model = OmegaConf.create({"_target_": cfg.model._target_, **settings})
    cfg.optim = OmegaConf.create(optim)
    return cfg


def tiny_run(model: str, folder: Path, *extra: str, bad_test_line: bool = False, data: list[str] | None = None) -> Path:
    """Train ``model`` for one epoch on tables written into ``folder`` (or on ``data``, the data
    group's overrides); -> the run folder."""
    from experiments.run.train import train

    data = data or table_overrides(write_tables(folder / "data", bad_test_line))
    run_dir = folder / "run"
    train(run_config(model, data, folder / "cache", *extra), run_dir)
    return run_dir


# Lists of up to 6 tokens: some longer than max_len, so truncated. CSV keeps the last 4 and means them;
# Parquet keeps the first 4 and takes their max.
GENRES = {"csv": "{genres: {max_len: 4, keep: last}}", "parquet": "{genres: {max_len: 4, pooling: max}}"}


def tiny_genre_run(model: str, folder: Path, *extra: str, parquet: bool = False, bad_test_line: bool = False) -> Path:
    """``tiny_run`` on tables with a multi-valued ``genres`` column (``with_genres``), CSV or Parquet."""
    files = write_tables(folder / "data", bad_test_line, genres=True, parquet=parquet)
    return tiny_run(model, folder, *extra, data=table_overrides(files, GENRES["parquet" if parquet else "csv"]))
