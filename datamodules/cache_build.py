"""The two streaming passes that fill a cache folder (``datamodules.cache`` says where and when).

Pass 1 is the only read of the source: validate rows, count values on the training rows, write each
split's rows with provisional ids. Pass 2 rewrites those ids in place as global ids. The returned
manifest says what was read, kept and rejected, and how long each pass took.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from datamodules.cache_files import SplitFiles
from datamodules.encode import Encoding, EncodingConfig, EncodingFitter
from datamodules.errors import BadInputError, RejectLog
from datamodules.prefetch import read_ahead
from datamodules.sources.base import SPLITS, Source
from datamodules.sources.multi import LengthStats
from datamodules.splits import SplitConfig
from measures.environment import peak_rss_mib

log = logging.getLogger(__name__)

PROGRESS_MIN_WORK = {"B": 64 << 20, "rows": 1_000_000}  # smaller jobs finish before a bar says anything
READ_AHEAD_CHUNKS = 1


class CacheBuilder:
    """The two passes that make one cache folder. Pass 1 is the only read of the source: it
    validates rows, counts values on the training rows, and writes each split's rows with
    provisional ids (see ``SplitFiles``). Pass 2 turns those into global ids in place once the
    vocabularies are known, which costs a gather per value instead of parsing the text again."""

    def __init__(
        self,
        source: Source,
        split: SplitConfig,
        encoding: EncodingConfig,
        name: str,
        on_bad_line: str,
        block_bytes: int,
        progress: bool,
    ):
        self.source, self.split, self.encoding, self.name = source, split, encoding, name
        self.on_bad_line, self.block_bytes, self.progress = on_bad_line, block_bytes, progress
        self.parts = source.parts()

    def run(self, folder: Path) -> dict:
        started = time.perf_counter()
        expected_rows = {p: self.source.count_rows(p) for p in self.parts if self.split.needs_row_count(p)}
        assignment = {p: self.split.assign(p, expected_rows.get(p)) for p in self.parts}
        counted = time.perf_counter()

        fitter = EncodingFitter(self.source, self.encoding)
        rejects = RejectLog(self.on_bad_line)
        files = SplitFiles(
            folder,
            len(fitter.counters) - len(fitter.multi_valued),
            0 if fitter.bucketize else len(fitter.numeric_fields),
            self.source.has_true_probabilities,
            len(self.source.ceiling_names),
            sum(options.max_len for options in self.source.multi_valued.values()),
        )
        self.lengths = LengthStats(self.source.multi_valued)
        try:
            parts, splits = self._pass_one(assignment, fitter, rejects, files)
            self._check_pass_one(parts, splits, expected_rows, rejects)
            encoding = fitter.finish()
            fitted = time.perf_counter()
            kept = sum(p["rows_kept"] for p in parts.values())
            with self._bar(kept, "rows", "pass 2/2: encode") as bar:
                files.encode(encoding, bar.update)
        finally:
            files.close()
        if files.rows() != {s: splits[s]["rows"] for s in SPLITS}:
            raise RuntimeError(f"rows written {files.rows()} differ from rows counted {splits}")
        encoding.schema.save(folder / "schema.json")
        encoding.save(folder / "encoding.npz")
        done = time.perf_counter()

        _add_positive_rates(splits)
        if rejects.total:
            total_read = sum(p["rows_read"] for p in parts.values())
            log.warning("%s: rejected %d of %d rows: %s", self.name, rejects.total, total_read, rejects.summary())
        return self._manifest(parts, splits, rejects, encoding, (started, counted, fitted, done))

    def _manifest(self, parts: dict, splits: dict, rejects: RejectLog, encoding: Encoding, times: tuple) -> dict:
        """What the build read, kept and rejected, per part and per split, and how long each pass took.
        times: ``perf_counter`` at the start, after counting rows, after pass 1, at the end."""
        started, counted, fitted, done = times
        total_read = sum(p["rows_read"] for p in parts.values())
        return {
            "name": self.name,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {"type": type(self.source).__name__, **self.source.identity()},
            "split": self.split.to_dict(),
            "encoding": self.encoding.to_dict(),
            "on_bad_line": self.on_bad_line,
            "rows_read": total_read,
            "rows_kept": sum(p["rows_kept"] for p in parts.values()),
            "rows_rejected": rejects.total,
            "rejected_by_reason": dict(rejects.by_reason.most_common()),
            "rejected_examples": rejects.examples,
            "parts": parts,
            "splits": splits,
            "schema": {
                "sparse_fields": encoding.schema.num_sparse,
                "dense_fields": encoding.schema.num_dense,
                "num_ids": encoding.schema.num_ids,
                "vocab_sizes": {f.name: f.vocab_size for f in encoding.schema.id_fields},
            },
            "seconds": {
                "count_rows": round(counted - started, 3),
                "pass1_fit": round(fitted - counted, 3),
                "pass2_encode": round(done - fitted, 3),
                "total": round(done - started, 3),
            },
            "rows_per_second": round(total_read / max(done - started, 1e-9)),
            "process_peak_rss_mib": round(peak_rss_mib()),
            **({"multi_valued": self.lengths.summary()} if self.source.multi_valued else {}),
        }

    def _pass_one(
        self, assignment: dict, fitter: EncodingFitter, rejects: RejectLog, files: SplitFiles
    ) -> tuple[dict, dict]:
        """Read every chunk once: count the training rows' values, write each split's rows.
        -> (per part: rows read / kept / rejected, per split: rows / positives / unlabelled rows)."""
        parts, splits = {}, {s: {"rows": 0, "positives": 0, "unlabelled_rows": 0} for s in SPLITS}
        for part, chunk, codes in self._read(assignment, rejects):
            features = fitter.features(chunk)
            files.start_chunk(features)
            self.lengths.add(chunk.multi)
            for split, rows in _rows_by_split(codes):
                ids, labels = features.ids[rows], chunk.labels[rows]
                dense = None if features.dense is None else features.dense[rows]
                multi = None if features.multi_ids is None else features.multi_ids[rows]
                if split == "train":
                    fitter.observe(features, ids, dense, multi)
                files.append(
                    split,
                    ids,
                    labels,
                    dense,
                    None if chunk.true_probability is None else chunk.true_probability[rows],
                    None if chunk.ceiling_probability is None else chunk.ceiling_probability[rows],
                    multi,
                )
                splits[split]["rows"] += len(labels)
                splits[split]["positives"] += int(np.nansum(labels))
                splits[split]["unlabelled_rows"] += int(np.isnan(labels).sum())
            stats = parts.setdefault(part, {"rows_read": 0, "rows_kept": 0, "rows_rejected": 0})
            stats["rows_read"] += chunk.rows_read
            stats["rows_kept"] += chunk.num_rows
            stats["rows_rejected"] += chunk.rows_rejected
        files.close_pass_one()
        return parts, splits

    def _bar(self, total: int, unit: str, description: str) -> tqdm:
        show = self.progress and total >= PROGRESS_MIN_WORK.get(unit, 0)
        return tqdm(total=total, unit=unit, unit_scale=True, desc=f"{self.name} {description}", disable=not show)

    def _read(self, assignment: dict, rejects: RejectLog):
        """Yield ``(part, chunk, uint8 [N] split of each row)`` over all parts, with a progress bar."""
        total = sum(self.source.progress_total(p) for p in self.parts)
        with self._bar(total, self.source.progress_unit, "pass 1/2: validate, count values") as bar:
            for part in self.parts:
                for chunk in read_ahead(self.source.read(part, rejects, self.block_bytes), READ_AHEAD_CHUNKS):
                    split = assignment[part]
                    codes = (
                        split[chunk.row_index]
                        if isinstance(split, np.ndarray)
                        else np.full(chunk.num_rows, split, dtype=np.uint8)
                    )
                    yield part, chunk, codes
                    bar.update(chunk.progress)

    def _check_pass_one(self, parts: dict, splits: dict, expected_rows: dict, rejects: RejectLog) -> None:
        for part, stats in parts.items():
            if stats["rows_read"] != stats["rows_kept"] + stats["rows_rejected"]:
                raise RuntimeError(
                    f"{part}: rows read {stats['rows_read']} != kept {stats['rows_kept']} + "
                    f"rejected {stats['rows_rejected']}"
                )
            if part in expected_rows and stats["rows_read"] != expected_rows[part]:
                raise BadInputError(
                    f"{part}: counted {expected_rows[part]} data rows but read {stats['rows_read']};"
                    f" did the file change while it was read?"
                )
        if sum(p["rows_rejected"] for p in parts.values()) != rejects.total:
            raise RuntimeError("rejected rows were not all accounted for by reason")
        if splits["train"]["rows"] == 0:
            raise BadInputError(
                f"{self.name}: no valid training rows (read {sum(p['rows_read'] for p in parts.values())}"
                f", rejected {rejects.total}: {rejects.summary()})"
            )
        if splits["train"]["unlabelled_rows"]:
            raise BadInputError(
                f"{self.name}: the training rows have no labels (an unlabelled file, such as "
                f"Kaggle's Criteo test.txt, can only be the test split)"
            )


def _rows_by_split(codes: np.ndarray) -> Iterator[tuple[str, np.ndarray | slice]]:
    """codes: uint8 ``[N]`` split of each row -> ``(split, rows)`` for each split that has rows,
    ``rows`` a boolean mask, or ``slice(None)`` when the chunk goes to one split whole."""
    counts = np.bincount(codes, minlength=len(SPLITS))
    for s, split in enumerate(SPLITS):
        if counts[s] == len(codes) and len(codes):
            yield split, slice(None)
        elif counts[s]:
            yield split, codes == s


def _add_positive_rates(splits: dict) -> None:
    """Set each split's ``positive_rate``: positives over labelled rows, None when none is labelled."""
    for stats in splits.values():
        labelled = stats["rows"] - stats["unlabelled_rows"]
        stats["positive_rate"] = round(stats["positives"] / labelled, 6) if labelled else None
