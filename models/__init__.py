"""CTR models: each a short composition of ``models.layers`` over one ``CTRModule`` base.

``MODELS`` maps the names used in ``conf/model/<name>.yaml`` to the classes; the zoo itself (names,
labels, families) is ``models.registry``. Classes load on first use, so that importing
``models.registry`` alone (as reports do) costs no torch.

Imports of the suite only ``measures`` and the light core of ``datamodules`` (``datamodules.schema``,
``datamodules.sampling``), so a model never loads pandas or pyarrow.
"""

import os

# MKL splits a matrix product's sum over the batch (every weight gradient) differently at different
# thread counts, so one and two threads give different bits; ``threads: auto`` changes the count
# mid-run with the machine's load. MKL's strict reproducible mode keeps the order fixed at any thread
# count (0-4% slower than the default in our DeepFM and FNN step measurements). MKL reads it at its
# first call, so it must be set before any matrix product: a process that ran one before importing
# ``models`` keeps MKL's default, and ``MKL_CBWR=AUTO`` set by the user opts out.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from models.registry import ENTRIES

# the classes outside the zoo that ``models.<Name>`` also gives
_OTHERS = {"CTRModule": "models.base:CTRModule", "PNN": "models.pnn:PNN"}
_TARGETS = {**{entry.target.split(":")[1]: entry.target for entry in ENTRIES.values()}, **_OTHERS}


def __getattr__(name: str):
    if name == "MODELS":
        globals()["MODELS"] = {key: entry.load() for key, entry in ENTRIES.items()}  # loaded once
        return globals()["MODELS"]
    if name in _TARGETS:
        module, cls = _TARGETS[name].split(":")
        return getattr(__import__(module, fromlist=[cls]), cls)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = ["MODELS", *_TARGETS]
