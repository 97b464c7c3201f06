"""Any CSV or Parquet table whose columns the config declares (label, categorical, numeric)."""

from __future__ import annotations

from typing import Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datamodules.errors import BadInputError, RejectLog
from datamodules.sources.base import FileSource, RawChunk
from datamodules.sources.columns import (
    convert_columns,
    keep_valid,
    parse_delimited,
    reject_misshapen,
    starts_file,
    text_chunk,
)
from datamodules.sources.multi import check_multi_type, multi_column, multi_valued_options

PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_ROWS_PER_BATCH = 1 << 18


class TableSource(FileSource):
    """A table with a label column (0/1), categorical columns (any values, empty = missing) and
    numeric columns (numbers, empty = missing); other columns are ignored.

    path / files: one file to split, or predefined ``{train, val, test}`` files.
    format: ``auto`` (by suffix: .parquet/.pq, else CSV), ``csv`` or ``parquet``.
    header: whether CSV files start with a header line; a bool, or per part
    (``{train: true, val: false, test: false}``). column_names: the CSV columns in file order;
    required when a file has no header, and checked against the header when it has one.
    how_to_get: where a dataset's file comes from, shown when it is missing (see ``FileSource``).
    multi_valued: columns holding lists (genres, tags): a list of names, or a mapping from name to
    options ``{sep, max_len, pooling, keep}`` (``datamodules.sources.multi``); they are categorical
    columns, whether or not ``categorical`` names them too.
    label_optional: a file without the label column is read unlabelled (scoring new rows) instead
    of being an error. passthrough: columns carried along unvalidated as ``RawChunk.passthrough``
    (an id column for scoring).
    """

    default_name = "table"

    def __init__(
        self,
        label: str,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        path: Optional[str] = None,
        files: Optional[Mapping[str, str]] = None,
        format: str = "auto",
        delimiter: str = ",",
        header: Union[bool, Mapping[str, bool]] = True,
        column_names: Optional[Sequence[str]] = None,
        how_to_get: Optional[str] = None,
        integer_categorical: Sequence[str] = (),
        multi_valued: Optional[Union[Sequence[str], Mapping[str, Mapping]]] = None,
        label_optional: bool = False,
        passthrough: Sequence[str] = (),
    ):
        super().__init__(path, files, how_to_get)
        self.passthrough = tuple(str(c) for c in passthrough)
        self.label = str(label)
        self.multi_valued = multi_valued_options(multi_valued)
        self.numeric_fields = tuple(str(c) for c in numeric)
        self._check_not_numeric()
        self.categorical_fields = tuple(str(c) for c in categorical if str(c) not in self.multi_valued)
        self.integer_categorical = tuple(str(c) for c in integer_categorical)
        undeclared = sorted(set(self.integer_categorical) - set(self.categorical_fields))
        if undeclared:
            raise BadInputError(
                f"TableSource: integer_categorical names columns that are not categorical: {undeclared}"
            )
        used = [self.label, *self.categorical_fields, *self.numeric_fields, *self.multi_valued]
        duplicated = sorted({c for c in used if used.count(c) > 1})
        if duplicated or not (self.categorical_fields or self.numeric_fields or self.multi_valued):
            raise BadInputError(
                f"TableSource: declare at least one categorical or numeric column, each column "
                f"once (label included); repeated: {duplicated}"
            )
        self.format = self._resolve_format(format)
        self.delimiter = delimiter
        self.column_names = list(column_names) if column_names else None
        self.header = {part: self._header_flag(header, part) for part in self.files}
        self.file_columns = {part: self._columns_of(part) for part in self.files}
        self.labelled = {part: self.label in cols or not label_optional for part, cols in self.file_columns.items()}
        for part, columns in self.file_columns.items():
            missing = [c for c in self._read_columns(part) if c not in columns]
            if missing:
                raise BadInputError(
                    f"{self.files[part]}: declared column(s) {missing} not found; the file's columns are {columns}"
                )
        if self.format == "parquet":
            for file in self.files.values():
                types = pq.read_schema(file)
                for name in self.multi_valued:
                    check_multi_type(types.field(name).type, f"{file}, row group 0", name)

    def _check_not_numeric(self) -> None:
        both = [c for c in self.numeric_fields if c in self.multi_valued]
        if both:
            first = next(iter(self.files.values()))
            raise BadInputError(
                f"{first}, line 1: column {both[0]!r} is declared both numeric and multi_valued; a column of "
                f"separated tokens is categorical, so leave it out of `numeric`"
            )

    @property
    def progress_unit(self) -> str:
        return "rows" if self.format == "parquet" else "B"

    def _resolve_format(self, format: str) -> str:
        if format == "auto":
            suffixes = {file.suffix.lower() in PARQUET_SUFFIXES for file in self.files.values()}
            if len(suffixes) > 1:
                raise BadInputError("TableSource: mixing Parquet and CSV files; set `format` or convert them")
            return "parquet" if suffixes.pop() else "csv"
        if format not in ("csv", "parquet"):
            raise BadInputError(f"TableSource: format must be auto, csv or parquet, got {format!r}")
        return format

    def _header_flag(self, header: Union[bool, Mapping[str, bool]], part: str) -> bool:
        if isinstance(header, Mapping):
            if part not in header:
                raise BadInputError(
                    f"TableSource: `header` gives no value for the {part!r} file (it has keys {sorted(header)})"
                )
            return bool(header[part])
        return bool(header)

    def _columns_of(self, part: str) -> list[str]:
        file = self.files[part]
        if self.format == "parquet":
            try:
                return list(pq.read_schema(file).names)
            except pa.ArrowInvalid as error:
                raise BadInputError(f"{file}: not a readable Parquet file ({error})") from None
        if file.stat().st_size == 0:
            raise BadInputError(f"{file}: the file is empty")
        if not self.header[part]:
            if self.column_names is None:
                raise BadInputError(
                    f"{file} is configured without a header line, so `column_names` must list its columns"
                )
            return self.column_names
        found = [name.strip().strip('"') for name in self.first_line(part).split(self.delimiter)]
        if self.column_names is not None and found != self.column_names:
            raise BadInputError(
                f"{file}, line 1: expected a header with the configured column_names "
                f"{self.column_names}, found {found} (if this file has no header line, set "
                f"`header` to false for it)"
            )
        return found

    def header_lines(self, part: str) -> int:
        return 1 if self.format == "csv" and self.header[part] else 0

    def identity(self) -> dict:
        return {
            "format": self.format,
            "label": self.label,
            "categorical": self.categorical_fields,
            "numeric": self.numeric_fields,
            "integer_categorical": self.integer_categorical,
            # only when set, so that the cache keys of tables without lists stay as they were
            **({"multi_valued": {n: o.to_dict() for n, o in self.multi_valued.items()}} if self.multi_valued else {}),
            "delimiter": self.delimiter,
            "header": self.header,
            "columns": self.file_columns,
            "files": self.file_identity(),
        }

    def count_rows(self, part: str) -> int:
        if self.format == "parquet":
            return pq.ParquetFile(self.files[part]).metadata.num_rows
        return super().count_rows(part)

    def progress_total(self, part: str) -> int:
        return self.count_rows(part) if self.format == "parquet" else super().progress_total(part)

    def read(self, part: str, rejects: RejectLog, block_bytes: int) -> Iterator[RawChunk]:
        if self.format == "parquet":
            yield from self._read_parquet(part, rejects)
        else:
            yield from self._read_csv(part, rejects, block_bytes)

    def _read_csv(self, part: str, rejects: RejectLog, block_bytes: int) -> Iterator[RawChunk]:
        self.check_not_empty(part)
        path, columns = self.files[part], self.file_columns[part]
        for block in self.line_blocks(part, block_bytes):
            parsed = parse_delimited(block, path, columns, self.delimiter, True, include=self._read_columns(part))
            reject_misshapen(parsed, block, path, f"{len(columns)} fields separated by {self.delimiter!r}", rejects)
            at_start = not self.header[part] and starts_file(block, parsed)
            rows = self._convert(parsed.table, at_file_start=at_start, part=part)
            yield self._pass_through(text_chunk(block, parsed, rows, path, rejects), parsed.table, rows)

    def _read_parquet(self, part: str, rejects: RejectLog) -> Iterator[RawChunk]:
        path = self.files[part]
        if self.count_rows(part) == 0:
            raise BadInputError(f"{path}: the file has no rows")
        start = 0
        columns = self._read_columns(part)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_ROWS_PER_BATCH, columns=columns):
            table = pa.Table.from_batches([batch])
            rows = self._convert(table, at_file_start=False, part=part)
            index = np.arange(start, start + batch.num_rows, dtype=np.int64)
            chunk = keep_valid(
                rows,
                index,
                index + 1,
                path,
                rejects,
                rows_read=batch.num_rows,
                already_rejected=0,
                progress=batch.num_rows,
                unit="row",
            )
            yield self._pass_through(chunk, table, rows)
            start += batch.num_rows

    def _read_columns(self, part: str) -> list[str]:
        """The columns a read of ``part`` parses: the label where the file has it, the fields, the passthrough."""
        label = [self.label] if self.labelled[part] else []
        fields = [*self.numeric_fields, *self.categorical_fields, *self.multi_valued]
        return list(dict.fromkeys([*label, *fields, *self.passthrough]))

    def _pass_through(self, chunk: RawChunk, table: pa.Table, rows) -> RawChunk:
        """``chunk`` with the passthrough columns of its kept rows (``rows.checks.ok`` of ``table``)."""
        if self.passthrough:
            ok = pa.array(rows.checks.ok)
            chunk.passthrough = {name: table[name].filter(ok) for name in self.passthrough}
        return chunk

    def _convert(self, table: pa.Table, at_file_start: bool, part: str):
        rows = convert_columns(
            table,
            self.label if self.labelled[part] else None,
            self.numeric_fields,
            False,
            self.categorical_fields,
            at_file_start=at_file_start,
            delimiter=self.delimiter,
            integer_categorical=self.integer_categorical,
        )
        if not self.multi_valued:
            return rows
        return rows._replace(multi=tuple(multi_column(table[n], o) for n, o in self.multi_valued.items()))
