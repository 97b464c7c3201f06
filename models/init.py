"""Initialisers chosen in one place for every model (``conf/init``), instead of per layer.

Without settings each layer keeps what it was built with (the model docstrings say what that is:
embeddings N(0, ``embedding_init_std``^2), first-order weights zero, torch's Linear default).
The settings, each ``None`` to keep the layer's own:

- ``embedding_std``: every row of every id table (embeddings, first-order and cross-product
  weights) drawn from N(0, embedding_std^2);
- ``linear``: ``"xavier_normal"`` draws every linear map's weight from Glorot & Bengio's normal
  (std = sqrt(2 / (fan_in + fan_out))) and sets its bias to 0: the MLPs and heads, the CIN's
  filters, each cross layer (a map of the ``D`` inputs to 1), each of FiBiNET's bilinear maps
  (``K`` to ``K``) and each dense field's vector (a map of its one value to ``K``).

FuxiCTR (so BARS) initialises this way with ``embedding_std=1e-4``: see ``conf/init/fuxictr.yaml``.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional

import torch
from torch import nn

LINEAR_INITS = ("xavier_normal",)
INIT_KEYS = ("embedding_std", "linear")


def check_init(init: Optional[Mapping]) -> None:
    """A clear error for settings ``initialize`` does not know."""
    unknown = sorted(set(init or {}) - set(INIT_KEYS))
    if unknown:
        raise ValueError(f"init: unknown keys {unknown}; expected some of {list(INIT_KEYS)}")
    linear = (init or {}).get("linear")
    if linear is not None and linear not in LINEAR_INITS:
        raise ValueError(f"init.linear {linear!r}: expected one of {list(LINEAR_INITS)} or null")
    std = (init or {}).get("embedding_std")
    if std is not None and not std > 0:
        raise ValueError(f"init.embedding_std must be > 0 or null, got {std}")


@torch.no_grad()
def initialize(
    model: nn.Module,
    id_tables: Iterable[nn.Module],
    embedding_std: Optional[float] = None,
    linear: Optional[str] = None,
) -> None:
    """Re-draw ``model``'s parameters as the settings say (see the module docstring)."""
    from models.layers.bilinear import BilinearInteraction  # layers import this package's neighbours
    from models.layers.cross import CrossNetwork

    tables = list(id_tables)
    if embedding_std is not None:
        for table in tables:
            nn.init.normal_(table.table.weight, std=embedding_std)
            dense = getattr(table, "dense", None)
            if dense is not None and linear is None:
                nn.init.normal_(dense, std=embedding_std)
    if linear is None:
        return
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, CrossNetwork):  # layer l maps the D inputs to the one scalar x_l . w_l
            nn.init.normal_(module.weight, std=math.sqrt(2.0 / (module.weight.shape[1] + 1)))
            nn.init.zeros_(module.bias)
        elif isinstance(module, BilinearInteraction):  # each of its maps is K -> K
            nn.init.normal_(module.weight, std=math.sqrt(1.0 / module.weight.shape[1]))
    for table in tables:
        dense = getattr(table, "dense", None)
        if dense is not None:  # field d's vector is a map of its one value to K: fans 1 and K
            nn.init.normal_(dense, std=math.sqrt(2.0 / (1 + dense.shape[1])))
