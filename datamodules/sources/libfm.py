"""libfm / libsvm-style lines with one feature per field, as in the NFM Frappe and MovieLens-tag files."""

from __future__ import annotations

from typing import Iterator, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datamodules.errors import BadInputError, RejectLog, RowChecks
from datamodules.sources.base import FileSource, LineBlock, RawChunk
from datamodules.sources.values import categorical_from_integers, parse_labels, parse_numbers

FEATURE_PATTERN = r"^(?P<index>[0-9]+):(?P<value>[^:]+)$"
LABELS = (-1.0, 0.0, 1.0)


def block_lines(block: LineBlock) -> pa.Array:
    """The lines of a block as a string array ``[L]`` (line ends and surrounding blanks removed)."""
    data = np.frombuffer(block.data, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n")) + 1
    if len(ends) < block.num_lines:  # the file's last line has no line end
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    lines = pa.LargeStringArray.from_buffers(block.num_lines, pa.py_buffer(offsets), pa.py_buffer(block.data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        raise BadInputError(
            f"lines {block.first_line}-{block.first_line + block.num_lines - 1} are not UTF-8 text"
        ) from None
    return pc.utf8_trim_whitespace(lines)


class LibFMSource(FileSource):
    """Lines ``label index:value index:value ...``: label in {-1, 0, 1} (1 is a click), then exactly
    one ``index:value`` per field, in field order. The index is the field's category; the value
    must be 1 (one-hot data); anything else is a bad line rather than silently ignored.

    path / files: one file to split, or predefined ``{train, val, test}`` files.
    fields: field names, or their number (names f1..fN), or ``None`` to count them on the first
    line of the train (or only) file. how_to_get: replaces the class's text on where to get the data.
    """

    default_name = "libfm"
    label_values = "{-1,0,1}"
    how_to_get = (
        "libfm data: Frappe and MovieLens-tag as split by the NFM paper (He & Chua, SIGIR 2017) are in its authors' "
        "GitHub repository hexiangnan/neural_factorization_machine: data/frappe/frappe.{train,validation,test}.libfm "
        "(202,027 / 57,722 / 28,860 rows, 10 fields) and data/ml-tag/ml-tag.{train,validation,test}.libfm (3 "
        "fields: user, item, tag). Format: one row per line, `label index:1 index:1 ...` separated by spaces, label "
        "-1 or 1, one index:1 per field. Fetch them with `python -m datamodules.download frappe --dest DIR` (or "
        "movielens_tag; --url for another base address), then pass data.source.files='{train: DIR/NAME.train.libfm, "
        "val: DIR/NAME.validation.libfm, test: DIR/NAME.test.libfm}' with NAME frappe or ml-tag."
    )

    def __init__(
        self,
        path: Optional[str] = None,
        files: Optional[Mapping[str, str]] = None,
        fields: Union[int, Sequence[str], None] = None,
        how_to_get: Optional[str] = None,
    ):
        super().__init__(path, files, how_to_get)
        if fields is None:
            first_part = self.parts()[0]
            fields = len(self.first_line(first_part).split()) - 1
            if fields < 1:
                raise BadInputError(
                    f"{self.files[first_part]}, line 1: cannot count the fields (no features on "
                    f"the first line); set `fields`"
                )
        if isinstance(fields, int):
            fields = [f"f{i}" for i in range(1, fields + 1)]
        self.categorical_fields = tuple(str(f) for f in fields)

    def identity(self) -> dict:
        return {"format": "libfm", "fields": self.categorical_fields, "files": self.file_identity()}

    def read(self, part: str, rejects: RejectLog, block_bytes: int) -> Iterator[RawChunk]:
        self.check_not_empty(part)
        for block in self.line_blocks(part, block_bytes):
            yield self._parse(block, part, rejects)

    def _parse(self, block: LineBlock, part: str, rejects: RejectLog) -> RawChunk:
        path, num_fields = self.files[part], len(self.categorical_fields)
        try:
            lines = block_lines(block)
        except BadInputError as error:
            raise BadInputError(f"{path}, {error}") from None
        rows = len(lines)
        features = split_features(lines, num_fields)
        checks = self._check_rows(block, lines, features)
        positions = block.first_line + np.arange(rows, dtype=np.int64)
        rejected = checks.report(rejects, str(path), positions)

        ok = checks.ok
        index_grid = features.index[ok]
        return RawChunk(
            row_index=block.first_row + np.flatnonzero(ok),
            labels=features.labels[ok],
            categorical=[categorical_from_integers(index_grid[:, j]) for j in range(num_fields)],
            numeric=np.empty((int(ok.sum()), 0)),
            rows_read=rows,
            rows_rejected=rejected,
            progress=block.progress,
        )

    def _check_rows(self, block: LineBlock, lines: pa.Array, features: LineFeatures) -> RowChecks:
        """Each line's verdict, first failure wins: blank; a header (the file's first line only);
        not a label and one feature per field; a label outside ``LABELS``; a feature not
        ``index:value``; a value other than 1."""
        text = lambda r: repr(lines[r].as_py()[:120])  # noqa: E731
        empty, malformed, not_one = features.empty, features.malformed, features.not_one
        checks = RowChecks(len(lines))
        checks.fail(empty, "empty line", lambda r: "the line is blank")
        if block.first_row == 0:
            header_like = np.zeros(len(lines), dtype=bool)
            first_token = lines[0].as_py().split()[0] if not empty[0] else "0"
            header_like[0] = bool(np.isnan(parse_numbers(pa.array([first_token]), integer=False)[0][0]))
            checks.fail(
                header_like,
                "unexpected header line",
                lambda r: f"libfm files have no header, but the first line reads {text(r)}",
            )
        checks.fail(
            ~features.shaped,
            "wrong number of features",
            lambda r: (
                f"expected a label and {len(self.categorical_fields)} index:value features, found "
                f"{features.token_count[r] - 1} features: {text(r)}"
            ),
        )
        checks.fail(features.label_bad, f"label not in {self.label_values}", lambda r: f"label in {text(r)}")
        checks.fail(
            malformed.any(axis=1),
            "malformed feature (expected index:value)",
            lambda r: f"field {self.categorical_fields[int(np.argmax(malformed[r]))]} in {text(r)}",
        )
        checks.fail(
            not_one.any(axis=1),
            "feature value other than 1 (only one-hot libfm data is supported)",
            lambda r: f"field {self.categorical_fields[int(np.argmax(not_one[r]))]} in {text(r)}",
        )
        return checks


class LineFeatures(NamedTuple):
    """A block's ``L`` lines split into a label and ``F`` features each. empty: bool ``[L]`` blank
    lines; token_count: int32 ``[L]`` whitespace-separated tokens; shaped: bool ``[L]`` lines of
    exactly ``1 + F`` tokens, which alone the rest describe: labels float32 ``[L]`` (NaN elsewhere),
    label_bad bool ``[L]``, index int64 ``[L, F]`` the feature indices (0 elsewhere and where
    malformed), malformed / not_one bool ``[L, F]`` features not ``index:value`` / with a value
    other than 1."""

    empty: np.ndarray
    token_count: np.ndarray
    shaped: np.ndarray
    labels: np.ndarray
    label_bad: np.ndarray
    index: np.ndarray
    malformed: np.ndarray
    not_one: np.ndarray


def split_features(lines: pa.Array, num_fields: int) -> LineFeatures:
    """Trimmed lines ``[L]`` -> their tokens parsed as ``label index:value ...`` with ``num_fields`` features."""
    rows = len(lines)
    tokens = pc.utf8_split_whitespace(lines)
    token_count = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(lines), 0).to_numpy(zero_copy_only=False)
    shaped = (token_count == num_fields + 1) & ~empty

    # Rows with the right number of tokens, as a [rows_shaped, 1 + F] grid of strings.
    flat = pc.list_flatten(tokens.filter(pa.array(shaped)))
    width = num_fields + 1
    shaped_rows = np.flatnonzero(shaped)
    label_tokens = flat.take(np.arange(0, len(flat), width))
    feature_tokens = flat.take(np.delete(np.arange(len(flat)), np.arange(0, len(flat), width)))
    well_formed, index, value = _parse_feature_tokens(feature_tokens)
    shape = (len(shaped_rows), num_fields)

    def per_row(grid_values: np.ndarray, fill) -> np.ndarray:
        full = np.full((rows, num_fields), fill, dtype=grid_values.dtype)
        full[shaped_rows] = grid_values.reshape(shape)
        return full

    labels_shaped, label_bad_shaped = parse_labels(label_tokens, LABELS)
    labels = np.full(rows, np.nan, dtype=np.float32)
    labels[shaped_rows] = labels_shaped
    label_bad = np.zeros(rows, dtype=bool)
    label_bad[shaped_rows] = label_bad_shaped
    return LineFeatures(
        empty=empty,
        token_count=token_count,
        shaped=shaped,
        labels=labels,
        label_bad=label_bad,
        index=per_row(np.nan_to_num(index).astype(np.int64), 0),
        malformed=per_row(~well_formed, False),
        not_one=per_row(well_formed & (value != 1.0), False),
    )


def _parse_feature_tokens(tokens: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``index:value`` tokens ``[T]`` -> (bool ``[T]`` well formed: the pattern and an integer
    index; float64 ``[T]`` index; float64 ``[T]`` value), NaN where not parsed."""
    features = pc.extract_regex(tokens, FEATURE_PATTERN)
    well_formed = features.is_valid().to_numpy(zero_copy_only=False)
    index, _ = parse_numbers(pc.if_else(features.is_valid(), pc.struct_field(features, "index"), None), integer=True)
    value, _ = parse_numbers(pc.if_else(features.is_valid(), pc.struct_field(features, "value"), None), integer=False)
    well_formed &= np.isfinite(index)
    return well_formed, index, value
