"""The scored rows' file: CSV or Parquet by its extension, written batch by batch to a temporary
name and renamed into place at the end (``experiments.run.atomic.replacing``), so an interrupted
scoring leaves no partial file under the output's name."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from datamodules.errors import BadInputError
from experiments.run.atomic import replacing

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BadInputError(f"{path}: the output's extension must be one of {sorted(FORMATS)}") from None


class PredictionWriter:
    """``[id_column,] [label,] probability`` columns: probability float32, label int8 (0/1)."""

    def __init__(self, path: Path, id_column: Optional[str], label: Optional[str]):
        self.path, self.format = Path(path), output_format(Path(path))
        self.id_column, self.label = id_column, label
        self._stack = contextlib.ExitStack()
        self._writer = None
        self._schema: Optional[pa.Schema] = None
        self._temporary: Optional[Path] = None

    def __enter__(self) -> "PredictionWriter":
        self._temporary = self._stack.enter_context(replacing(self.path))
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is not None:  # the temporary file is removed, never renamed into place
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    self._writer.close()
            return self._stack.__exit__(exc_type, exc, traceback)
        with self._stack:
            if self._writer is None:  # no row scored: the columns alone
                self._open(self._table(np.empty(0, np.float32), np.empty(0, np.float32), pa.array([], pa.string())))
            self._writer.close()
        return False

    def _table(self, probability: np.ndarray, labels: np.ndarray, id_values: Optional[pa.Array]) -> pa.Table:
        columns = {}
        if self.id_column is not None:
            columns[self.id_column] = id_values
        if self.label is not None:
            columns[self.label] = pa.array(labels.astype(np.int8))
        columns["probability"] = pa.array(probability.astype(np.float32))
        return pa.table(columns)

    def _open(self, table: pa.Table) -> None:
        self._schema = table.schema
        if self.format == "csv":
            self._writer = arrow_csv.CSVWriter(self._temporary, table.schema)
        else:
            self._writer = pq.ParquetWriter(self._temporary, table.schema)
        self._writer.write_table(table)

    def write(self, probability: np.ndarray, labels: np.ndarray, id_values: Optional[pa.Array]) -> None:
        """probability float32 ``[B]``; labels float32 ``[B]``; id_values ``[B]`` or None."""
        table = self._table(probability, labels, id_values)
        if self._writer is None:
            self._open(table)
        else:
            self._writer.write_table(table.cast(self._schema))
