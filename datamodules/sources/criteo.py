"""Criteo Display Advertising Challenge raw TSV (Kaggle ``train.txt`` / ``test.txt``)."""
from __future__ import annotations

from typing import Iterator, Mapping, Optional

from datamodules.errors import RejectLog
from datamodules.sources.base import FileSource, RawChunk
from datamodules.sources.columns import convert_columns, parse_delimited, reject_misshapen, starts_file, text_chunk

NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
UNLABELLED_FIELDS = len(NUMERIC) + len(CATEGORICAL)


class CriteoSource(FileSource):
    """Tab-separated, no header: label, I1..I13 (integers, may be empty or negative), C1..C26
    (hashed categories, usually 8 hex digits, may be empty). Kaggle's ``test.txt`` has the same
    columns without the label.

    path: one file to split by the split config; files: predefined ``{train, val, test}`` files.
    labelled: ``None`` decides per file from its first line (39 fields means unlabelled).
    """

    default_name = "criteo"
    numeric_fields = NUMERIC
    categorical_fields = CATEGORICAL

    def __init__(self, path: Optional[str] = None, files: Optional[Mapping[str, str]] = None,
                 labelled: Optional[bool] = None):
        super().__init__(path, files)
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
        for block in self.line_blocks(part, block_bytes):
            parsed = parse_delimited(block, path, names, "\t", quoted=False)
            reject_misshapen(parsed, block, path, f"{len(names)} tab-separated fields", rejects)
            rows = convert_columns(parsed.table, "label" if labelled else None, NUMERIC, True, CATEGORICAL,
                                   at_file_start=starts_file(block, parsed), delimiter="\t")
            yield text_chunk(block, parsed, rows, path, rejects)
