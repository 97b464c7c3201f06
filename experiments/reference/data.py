"""The reference check's data: a generated Frappe-shaped dataset in both of Frappe's file formats,
and the Criteo sample rewritten as BARS's Criteo_x4 CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from datamodules import SyntheticSource
from datamodules.sources.criteo import CATEGORICAL, NUMERIC
from datamodules.sources.frappe import FIELDS
from experiments.run.config import CONF, TRUSTED_TARGETS, compose_config

# The Frappe-shaped generator's settings live in conf/data/frappe_like.yaml (data=frappe_like runs on the
# same draws): Frappe's fields, the NFM split's cardinalities, Frappe_x1's rows and 7:2:1 split.
FRAPPE_LIKE = OmegaConf.load(CONF / "data" / "frappe_like.yaml")
FRAPPE_CARDINALITIES = tuple(FRAPPE_LIKE.source.cardinalities)
FRAPPE_ROWS = int(FRAPPE_LIKE.source.rows)
FRAPPE_SPLIT = dict(zip(("train", "val", "test"), map(int, FRAPPE_LIKE.split.ratios)))
# BARS's dataset configs, as its logs print them (FuxiCTR 2.3 reads `fill_na`, defaulting to the
# same 0 and '' that BARS's `na_value` gives).
FRAPPE_COLUMNS = [{"name": list(FIELDS), "active": True, "dtype": "float", "type": "categorical"}]
FRAPPE_LABEL = {"name": "label", "dtype": "float"}
CRITEO_X4_COLUMNS = [
    {
        "name": list(NUMERIC),
        "active": True,
        "dtype": "float",
        "type": "categorical",
        "preprocess": "convert_to_bucket",
        "na_value": 0,
    },
    {"name": list(CATEGORICAL), "active": True, "dtype": "str", "type": "categorical", "na_value": ""},
]
CRITEO_X4_LABEL = {"name": "Label", "dtype": "float"}


def frappe_like_source(rows: int = FRAPPE_ROWS, seed: int = 0) -> SyntheticSource:
    """Frappe-shaped rows (10 categorical fields of Frappe's cardinalities, nothing missing) whose
    labels follow the generator's planted first-order, pairwise and higher-order effects."""
    settings = OmegaConf.to_container(FRAPPE_LIKE.source)
    settings.pop("_target_")
    return SyntheticSource(**{**settings, "rows": rows, "seed": seed})


def split_sizes(rows: int) -> dict[str, int]:
    """Frappe_x1's 7:2:1 split, exact at its own size."""
    if rows == FRAPPE_ROWS:
        return dict(FRAPPE_SPLIT)
    train, val = rows * 7 // 10, rows * 2 // 10
    return {"train": train, "val": val, "test": rows - train - val}


def write_frappe_like(folder: Path, rows: int = FRAPPE_ROWS, seed: int = 0) -> dict[str, dict[str, Path]]:
    """``{"libfm": {split: path}, "csv": {split: path}}``: the same rows as NFM libfm lines
    (``label index:1 ...``, label -1/1, indices global over the fields) and as BARS's Frappe_x1 CSV
    (header ``label,user,...,city``, label 0/1, the same indices). Kept when already written."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {"train": "train", "val": "validation", "test": "test"}
    paths = {
        "libfm": {s: folder / f"frappe_like.{names[s]}.libfm" for s in names},
        "csv": {s: folder / f"{'valid' if s == 'val' else s}.csv" for s in names},
    }
    if all(p.is_file() for files in paths.values() for p in files.values()):
        return paths
    source = frappe_like_source(rows, seed)
    chunks = list(source.read("all", rejects=None))
    offsets = np.cumsum((0,) + FRAPPE_CARDINALITIES[:-1])
    indices = np.concatenate([np.stack([c.codes for c in chunk.categorical], axis=1) for chunk in chunks]) + offsets
    labels = np.concatenate([chunk.labels for chunk in chunks]).astype(np.int64)
    start = 0
    for split, size in split_sizes(rows).items():
        rows_here = slice(start, start + size)
        start += size
        table = pd.DataFrame(indices[rows_here], columns=list(FIELDS))
        csv = table.copy()
        csv.insert(0, "label", labels[rows_here])
        csv.to_csv(paths["csv"][split], index=False)
        libfm = table.astype(str) + ":1"
        libfm.insert(0, "label", np.where(labels[rows_here] == 1, 1, -1))
        libfm.to_csv(paths["libfm"][split], sep=" ", header=False, index=False)
    return paths


def criteo_x4_csv(tsv_files: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Raw Criteo TSV files (label, I1..I13, C1..C26, no header) -> BARS's Criteo_x4 CSV layout
    (header ``Label,I1..I13,C1..C26``), values and empty fields kept as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, path in tsv_files.items():
        table = pd.read_csv(
            path, sep="\t", header=None, dtype=str, keep_default_na=False, names=["Label", *NUMERIC, *CATEGORICAL]
        )
        out[split] = folder / f"{'valid' if split == 'val' else split}.csv"
        table.to_csv(out[split], index=False)
    return out


# -- the app's side (no FuxiCTR needed) -------------------------------------------------------------


def preset_config(
    experiment: str, model: str, files: dict[str, Path], cache_dir: Path, overrides: Sequence[str] = ()
) -> DictConfig:
    """The app's config for ``experiment=<experiment> model=<model>`` on ``files``."""
    listed = ", ".join(f"{split}: {path}" for split, path in files.items())
    return compose_config(
        [
            f"experiment={experiment}",
            f"model={model}",
            f"data.source.files={{{listed}}}",
            f"data.cache_dir={cache_dir}",
            "logger=none",
            "trainer.enable_progress_bar=false",
            *overrides,
        ]
    )


def datamodule(cfg: DictConfig, seed: int = 0):
    from hydra.utils import instantiate

    dm = instantiate(cfg.data, seed=seed, progress=False, _execution_whitelist_=TRUSTED_TARGETS)
    dm.prepare_data()
    dm.setup("fit")
    return dm
