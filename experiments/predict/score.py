"""A run's model and encoding, loaded once, scoring raw rows read by the run's source, batch by batch.

Rows are scored in batches of the run's evaluation batch size, cut from the stream as the run cut
its test split (contiguous blocks from the first row), and a probability is ``sigmoid`` of the
float32 logit taken in float64, as the run's test did: so the run's own raw test file scores to its
``predictions/test_p.npy`` bit for bit.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from datamodules.bundle import ENCODING_DIR, SavedEncoding
from datamodules.errors import BadInputError, RejectLog
from datamodules.schema import Batch
from datamodules.sources.base import WHOLE, RawChunk, Source
from experiments.predict.output import PredictionWriter, output_format
from models.base import CTRModule
from models.layers.precision import set_precision

log = logging.getLogger(__name__)

BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"
PROGRESS_MIN_WORK = {"B": 16 << 20, "rows": 100_000}  # smaller inputs are scored before a bar says anything


class RunModel:
    """A finished run's best weights and its saved encoding."""

    def __init__(self, run_dir: str | Path):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise BadInputError(f"{run_dir}: no such run folder")
        self.saved = SavedEncoding(run_dir / ENCODING_DIR)
        checkpoint = run_dir / BEST_CHECKPOINT
        if not checkpoint.is_file():
            raise BadInputError(f"{checkpoint} does not exist: the run has no best checkpoint (did it finish?)")
        self.model = CTRModule.from_checkpoint(checkpoint, map_location="cpu")
        mismatch = self.saved.schema_matches(self.model.schema)
        if mismatch:
            raise BadInputError(f"{run_dir}: {mismatch}")
        set_precision(self.model, self.saved.scoring.get("precision", "32"))
        self.model.eval()

    @property
    def batch_size(self) -> int:
        return int(self.saved.scoring["eval_batch_size"])

    def encode(self, chunk: RawChunk) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """Raw rows -> (int32 ``[N, S]`` ids, float32 ``[N, D]`` dense values or None, int32 ``[N, T]``
        multi-valued ids or None), as the run's cache has them."""
        return self.saved.encoding.encode(chunk, self.saved.fill_missing_numeric)

    def logits(self, ids: np.ndarray, dense: Optional[np.ndarray], multi: Optional[np.ndarray] = None) -> torch.Tensor:
        """ids int ``[B, S]``, dense float32 ``[B, D]`` or None, multi int ``[B, T]`` or None -> float32
        ``[B]`` logits."""
        x = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
        x_dense = None if dense is None else torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
        x_multi = None if multi is None else torch.from_numpy(np.ascontiguousarray(multi, dtype=np.int64))
        with torch.inference_mode():
            return self.model(Batch(x, torch.zeros(len(x)), x_dense, x_multi))

    def probabilities(self, ids: np.ndarray, dense: Optional[np.ndarray], multi: Optional[np.ndarray] = None):
        """-> float32 ``[B]`` click probabilities."""
        return torch.sigmoid(self.logits(ids, dense, multi).double()).float().numpy()


def input_source(spec: dict, path: Path, id_column: Optional[str]) -> Source:
    """The run's source (``spec``: its ``_target_`` and options) reading ``path`` alone: a label
    column is optional, ``id_column`` is carried along."""
    target = str(spec.get("_target_", ""))
    module, _, name = target.rpartition(".")
    if not module.startswith("datamodules"):
        raise BadInputError(f"the run's source {target!r} is not one of datamodules' sources")
    factory = getattr(importlib.import_module(module), name)
    if name == "SyntheticSource":
        raise BadInputError("the run trained on generated (synthetic) rows, which have no raw file format to score")
    options = {k: v for k, v in spec.items() if k != "_target_"}
    if "labelled" in options:  # decided per file (Criteo): new rows may come without the label
        options["labelled"] = None
    if isinstance(options.get("header"), dict):  # per split file: the input is read as the test file was
        options["header"] = options["header"].get("test", options["header"].get("train", True))
    parameters = inspect.signature(factory).parameters
    if "label_optional" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        options |= {"label_optional": True, "passthrough": [id_column] if id_column else []}
    elif id_column:
        raise BadInputError(f"--id-column: the run's source ({name}) reads rows without named columns")
    if not path.is_file():
        raise BadInputError(f"{path}: no such input file")
    return factory(path=str(path), **options)


class Rows(NamedTuple):
    """Encoded rows: ids int32 ``[N, S]``, dense float32 ``[N, D]`` or None, labels float32 ``[N]``,
    ids of the passthrough column ``[N]`` or None, multi-valued ids int32 ``[N, T]`` or None."""

    ids: np.ndarray
    dense: Optional[np.ndarray]
    labels: np.ndarray
    id_values: Optional[pa.Array]
    multi: Optional[np.ndarray] = None


def _concat(parts: list[Rows]) -> Rows:
    first = parts[0]
    return Rows(
        np.concatenate([p.ids for p in parts]),
        None if first.dense is None else np.concatenate([p.dense for p in parts]),
        np.concatenate([p.labels for p in parts]),
        None if first.id_values is None else pa.concat_arrays([p.id_values for p in parts]),
        None if first.multi is None else np.concatenate([p.multi for p in parts]),
    )


def _slice(rows: Rows, start: int, stop: int) -> Rows:
    return Rows(*(None if a is None else a[start:stop] for a in rows))


def batches(chunks: Iterator[Rows], size: int) -> Iterator[Rows]:
    """Re-cut a stream of row blocks into batches of ``size`` rows (the last one shorter): the
    batches an evaluation of the same rows makes, whatever sizes the reader's chunks had. Holds at
    most one chunk and one batch."""
    pending, held = [], 0
    for rows in chunks:
        pending.append(rows)
        held += len(rows.ids)
        if held < size:
            continue
        joined, start = _concat(pending), 0
        while held - start >= size:
            yield _slice(joined, start, start + size)
            start += size
        pending, held = ([_slice(joined, start, held)] if start < held else []), held - start
    if held:
        yield _concat(pending)


def _id_array(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def score_file(
    run_dir: str | Path, input_path: str | Path, out: str | Path, id_column: Optional[str] = None, progress: bool = True
) -> dict:
    """Score every row of ``input_path`` with the run in ``run_dir`` into ``out`` (``.csv`` or
    ``.parquet``, written atomically): ``[id_column,] [label,] probability``. -> a summary of the
    rows scored and rejected (bad rows follow the run's ``on_bad_line``)."""
    input_path, out = Path(input_path), Path(out)
    output_format(out)  # an unknown extension fails before any work
    run = RunModel(run_dir)
    source = input_source(run.saved.source, input_path, id_column)
    labelled = getattr(source, "labelled", {}).get(WHOLE, True)
    rejects = RejectLog(run.saved.scoring.get("on_bad_line", "error"))
    total, unit = source.progress_total(WHOLE), source.progress_unit
    show = progress and total >= PROGRESS_MIN_WORK.get(unit, 0)
    read = {"rows_read": 0, "rows_scored": 0}

    def encoded(bar: tqdm) -> Iterator[Rows]:
        for chunk in source.read(WHOLE, rejects, int(run.saved.scoring.get("block_bytes", 16 << 20))):
            ids, dense, multi = run.encode(chunk)
            id_values = _id_array(chunk.passthrough[id_column]) if id_column else None
            read["rows_read"] += chunk.rows_read
            bar.update(chunk.progress)
            yield Rows(ids, dense, chunk.labels, id_values, multi)

    label_name = str(run.saved.scoring.get("label", "label")) if labelled else None
    with tqdm(total=total, unit=unit, unit_scale=True, desc=f"scoring {input_path.name}", disable=not show) as bar:
        with PredictionWriter(out, id_column, label_name) as writer:
            for rows in batches(encoded(bar), run.batch_size):
                writer.write(run.probabilities(rows.ids, rows.dense, rows.multi), rows.labels, rows.id_values)
                read["rows_scored"] += len(rows.ids)
    if read["rows_read"] != read["rows_scored"] + rejects.total:
        raise RuntimeError(f"rows read {read['rows_read']} != scored {read['rows_scored']} + rejected {rejects.total}")
    if rejects.total:
        log.warning("%s: rejected %d of %d rows: %s", input_path, rejects.total, read["rows_read"], rejects.summary())
    return {**read, "rows_rejected": rejects.total, "rejected_by_reason": rejects.summary()}
