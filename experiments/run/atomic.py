"""Files a kill cannot leave half-written: each is written beside its destination under a temporary
name, flushed to the disk and renamed over it, so a reader finds the old version or the new one.

``replacing`` is the one way the run writes what a resumed or finished run reads back (its resume
state, the best checkpoint, ``metrics.json``, ``history.csv``, the test predictions);
``AtomicCheckpointIO`` routes Lightning's checkpoint saves through it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path in ``path``'s folder to write; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the process id keeps two writers (a resumed run beside a stale one) off each other's file
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    # the rename itself is durable only once the folder's entry is on the disk too
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as temporary:
        temporary.write_text(text)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint saving, written through ``replacing``: Lightning's own writes the
    destination in place, and a kill during that write leaves a truncated checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        with replacing(path) as temporary:
            torch.save(checkpoint, temporary)
