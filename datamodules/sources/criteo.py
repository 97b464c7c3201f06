"""Criteo Display Advertising Challenge raw TSV (Kaggle ``train.txt`` / ``test.txt``)."""

from __future__ import annotations

from typing import Iterator, Mapping, Optional

import pyarrow as pa

from datamodules.download import CRITEO_URL
from datamodules.errors import RejectLog
from datamodules.sources.base import FileSource, LineBlock, RawChunk
from datamodules.sources.columns import (
    ConvertedRows,
    ParsedBlock,
    convert_columns,
    parse_delimited,
    parse_typed,
    reject_misshapen,
    starts_file,
    text_chunk,
)

NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
UNLABELLED_FIELDS = len(NUMERIC) + len(CATEGORICAL)
HASH_BYTES = 8  # categories are 32-bit hashes written as 8 hex digits


class CriteoSource(FileSource):
    """Tab-separated, no header: label, I1..I13 (integers, may be empty or negative), C1..C26
    (hashed categories, usually 8 hex digits, may be empty). Kaggle's ``test.txt`` has the same
    columns without the label.

    path: one file to split by the split config; files: predefined ``{train, val, test}`` files.
    labelled: ``None`` decides per file from its first line (39 fields means unlabelled).
    how_to_get: replaces the class's text on where to get the data (see ``FileSource``).
    """

    default_name = "criteo"
    how_to_get = (
        "Criteo data: Criteo's Kaggle Display Advertising Challenge dataset, published by Criteo AI Lab. Its archive "
        f"dac.tar.gz ({CRITEO_URL}; addresses move) holds train.txt (45,840,617 labelled rows, ~11 GB) and "
        "test.txt (6,042,135 rows without labels). Format: tab-separated, no header: label (0/1), I1..I13 "
        "(integers, may be empty), C1..C26 (categories hashed to 8 hex digits, may be empty). Fetch and unpack it "
        "with `python -m datamodules.download criteo --dest DIR` (--url for another address or a local copy), then "
        "pass data.source.path=DIR/train.txt (one file, split at random as in the DeepFM paper) or "
        "data.source.files='{train: ..., val: ..., test: ...}' (files split beforehand)."
    )
    numeric_fields = NUMERIC
    categorical_fields = CATEGORICAL

    def __init__(
        self,
        path: Optional[str] = None,
        files: Optional[Mapping[str, str]] = None,
        labelled: Optional[bool] = None,
        how_to_get: Optional[str] = None,
    ):
        super().__init__(path, files, how_to_get)
        self.labelled = {part: self._is_labelled(part, labelled) for part in self.files}

    def _is_labelled(self, part: str, labelled: Optional[bool]) -> bool:
        if labelled is not None:
            return bool(labelled)
        return self.first_line(part).count("\t") + 1 != UNLABELLED_FIELDS

    def identity(self) -> dict:
        return {"format": "criteo_tsv", "labelled": self.labelled, "files": self.file_identity()}

    def read(self, part: str, rejects: RejectLog, block_bytes: int) -> Iterator[RawChunk]:
        self.check_not_empty(part)
        path, labelled = self.files[part], self.labelled[part]
        names = (["label"] if labelled else []) + list(NUMERIC) + list(CATEGORICAL)
        fast_types = {
            **{name: pa.int64() for name in names[: -len(CATEGORICAL)]},
            **{name: pa.binary(HASH_BYTES) for name in CATEGORICAL},
        }

        def convert(parsed: ParsedBlock, block: LineBlock) -> ConvertedRows:
            return convert_columns(
                parsed.table,
                "label" if labelled else None,
                NUMERIC,
                True,
                CATEGORICAL,
                at_file_start=starts_file(block, parsed),
                delimiter="\t",
            )

        for block in self.line_blocks(part, block_bytes):
            parsed = parse_typed(block, names, "\t", fast_types)
            rows = None if parsed is None else convert(parsed, block)
            if rows is None or not rows.checks.ok.all():
                # Bad rows are described from their text as written: parse the block again as text.
                parsed = parse_delimited(block, path, names, "\t", quoted=False)
                reject_misshapen(parsed, block, path, f"{len(names)} tab-separated fields", rejects)
                rows = convert(parsed, block)
            yield text_chunk(block, parsed, rows, path, rejects)
