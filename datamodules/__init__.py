"""Data: sources -> encoding -> on-disk cache -> batches (see ``CTRDataModule``).

Importing ``datamodules`` or its light core loads neither pandas, pyarrow nor Lightning: the core
is ``schema`` (``Schema``, ``Field``, ``Batch``) and ``sampling`` (which rows each batch and rank
reads, ``eval_block_rows``), and it is all of ``datamodules`` that ``models`` may import. The names
below are loaded from their modules on first use, so ``from datamodules import CTRDataModule``
still works. Imports of the rest of the suite only ``measures``, nothing of ``models`` or ``experiments``.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "CTRDataModule": "datamodules.ctr",
    "EncodingConfig": "datamodules.encode",
    "BadInputError": "datamodules.errors",
    "Batch": "datamodules.schema",
    "Field": "datamodules.schema",
    "Schema": "datamodules.schema",
    "CriteoSource": "datamodules.sources",
    "LibFMSource": "datamodules.sources",
    "Source": "datamodules.sources",
    "SyntheticSource": "datamodules.sources",
    "TableSource": "datamodules.sources",
    "frappe_source": "datamodules.sources",
    "SplitConfig": "datamodules.splits",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
