"""Model keys (config names) -> the names the DeepFM paper prints, and the order its Table 2 uses.

Every table and plot goes through ``model_label`` and ``label_sort_key`` so that a model is
spelled and ordered the same everywhere. ``shown_storage`` is how a study's storage URL is
printed, in logs and committed READMEs alike.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

# The paper's Table 2 rows in its order, then the other models of the suite.
_PAPER_ROWS = {
    "lr": "LR",
    "fm": "FM",
    "fnn": "FNN",
    "ipnn": "IPNN",
    "opnn": "OPNN",
    "pnn_star": "PNN*",
    "lr_dnn": "LR&DNN",
    "fm_dnn": "FM&DNN",
    "deepfm": "DeepFM",
}
_OTHER_ROWS = {
    "ffm": "FFM",
    "dnn": "DNN",
    "wide_deep": "Wide&Deep",
    "dcn": "DCN",
    "xdeepfm": "xDeepFM",
}
# `model=pnn` is one class with a `product` switch; each setting is its own row because the
# settings are different models (IPNN, OPNN, PNN*) that were not necessarily tuned alike.
PNN_PRODUCTS = ("inner", "outer", "both")
PNN_DEFAULT_PRODUCT = "inner"

MODEL_LABELS: dict[str, str] = {**_PAPER_ROWS, **_OTHER_ROWS}
KNOWN_LABELS: tuple[str, ...] = (
    *_PAPER_ROWS.values(), *_OTHER_ROWS.values(), *(f"PNN ({p})" for p in PNN_PRODUCTS))
PAPER_LABELS: tuple[str, ...] = tuple(_PAPER_ROWS.values())
PAPER_MODELS: tuple[str, ...] = tuple(_PAPER_ROWS)  # their config names

DEEPFM_LABEL = MODEL_LABELS["deepfm"]
ORACLE_LABEL = "Oracle (true p)"
# The ceilings of synthetic data (datamodules.sources.synthetic): the family -> its row's name.
CEILING_LABELS = {"first_order": "Ceiling: first-order (LR)", "pairwise": "Ceiling: + pairwise (FM, FFM)"}
# Models whose function class holds only some effect families; every other model is deep (all).
_FAMILY = {"lr": "first_order", "fm": "pairwise", "ffm": "pairwise"}


def family_of(model_key: str) -> str:
    """The effect family a model can represent: a ceiling's key, or ``"full"`` (the oracle)."""
    return _FAMILY.get(model_key, "full")


def model_label(model_key: str, model_config: Optional[Mapping[str, Any]] = None) -> str:
    """The printed name of a model: ``"deepfm" -> "DeepFM"``; ``pnn`` gets its product type;
    a model the suite does not know keeps its config name."""
    if model_key == "pnn":
        product = (model_config or {}).get("product", PNN_DEFAULT_PRODUCT)
        return f"PNN ({product})"
    return MODEL_LABELS.get(model_key, model_key)


def label_sort_key(label: str) -> tuple[int, str]:
    """Paper order first, then the suite's other models, then unknown names alphabetically."""
    try:
        return KNOWN_LABELS.index(label), ""
    except ValueError:
        return len(KNOWN_LABELS), label.casefold()


def order_labels(labels) -> list[str]:
    return sorted(set(labels), key=label_sort_key)


def shown_storage(url: str) -> str:
    """A storage URL fit to print or commit: ``postgresql://user:***@host/db``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not an SQLAlchemy URL: it holds no password
        return url
