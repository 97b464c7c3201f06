"""Frappe (Baltrunas et al. 2015) as the NFM paper split it, from either of its two releases."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from datamodules.errors import BadInputError
from datamodules.sources.base import Source
from datamodules.sources.libfm import LibFMSource
from datamodules.sources.table import TableSource

FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")
HOW_TO_GET = (
    "Frappe data: the NFM paper's split (202,027 / 57,722 / 28,860 rows, 10 fields) in either release: libfm "
    "files data/frappe/frappe.{train,validation,test}.libfm of the NFM authors' repository "
    "hexiangnan/neural_factorization_machine (`python -m datamodules.download frappe --dest DIR`; lines "
    "`label index:1 ...`, label -1/1), or BARS's Frappe_x1 CSV files {train,valid,test}.csv (Zenodo record "
    "6324454, Frappe_x1.zip; header "
    "label,user,item,daytime,weekday,isweekend,homework,cost,weather,country,city, label 0/1, the same indices). "
    "Pass them as data.source.files='{train: ..., val: ..., test: ...}'; the suffix .csv picks the CSV reader."
)


def frappe_source(
    path: Optional[str] = None,
    files: Optional[Mapping[str, str]] = None,
    how_to_get: Optional[str] = None,
    **table_options,
) -> Source:
    """A ``TableSource`` for ``.csv`` files, else a ``LibFMSource``, over Frappe's ten fields;
    ``table_options`` (``label_optional``, ``passthrough``) go to the ``TableSource``.

    Both releases hold the same rows with the same feature indices (BARS converted the libfm
    files, keeping each ``index`` of ``index:1``), so they encode to the same ids: only the cache
    key, which names the files, differs."""
    named = [p for p in ([path] if path else []) + list((files or {}).values()) if p]
    csv = [p for p in named if Path(p).suffix.lower() == ".csv"]
    if csv and len(csv) != len(named):
        raise ValueError(f"Frappe: give either libfm or CSV files, not both: {named}")
    how_to_get = how_to_get or HOW_TO_GET
    if csv:
        return TableSource(
            label="label",
            categorical=FIELDS,
            integer_categorical=FIELDS,
            path=path,
            files=files,
            format="csv",
            header=True,
            how_to_get=how_to_get,
            **table_options,
        )
    if table_options.get("passthrough"):
        raise BadInputError("Frappe: libfm lines have no named columns to pass through; use the CSV release")
    return LibFMSource(path=path, files=files, fields=list(FIELDS), how_to_get=how_to_get)
