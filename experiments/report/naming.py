"""Model keys (config names) -> the names the DeepFM paper prints, and the order its Table 2 uses.

Every table and plot goes through ``model_label`` and ``label_sort_key`` so that a model is
spelled and ordered the same everywhere. ``shown_storage`` is how a study's storage URL is
printed, in logs and committed READMEs alike.
"""

from __future__ import annotations

from models.registry import ENTRIES

# The paper's Table 2 rows in its order, then the other models of the suite (models.registry).
MODEL_LABELS: dict[str, str] = {name: entry.label for name, entry in ENTRIES.items()}
KNOWN_LABELS: tuple[str, ...] = tuple(MODEL_LABELS.values())
PAPER_MODELS: tuple[str, ...] = tuple(name for name, entry in ENTRIES.items() if entry.paper)  # config names
PAPER_LABELS: tuple[str, ...] = tuple(MODEL_LABELS[name] for name in PAPER_MODELS)

DEEPFM_LABEL = MODEL_LABELS["deepfm"]
ORACLE_LABEL = "Oracle (true p)"
# The ceilings of synthetic data (datamodules.sources.synthetic): the family -> its row's name.
CEILING_LABELS = {"first_order": "Ceiling: first-order (LR)", "pairwise": "Ceiling: + pairwise (FM, FFM)"}


def family_of(model_key: str) -> str:
    """The effect family a model can represent: a ceiling's key, or ``"full"`` (the oracle); a model
    the suite does not know counts as ``"full"``."""
    entry = ENTRIES.get(model_key)
    return entry.family if entry else "full"


def model_label(model_key: str) -> str:
    """The printed name of a model: ``"deepfm" -> "DeepFM"``; a model the suite does not know keeps
    its config name."""
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
