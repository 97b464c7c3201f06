"""Which validation metrics a run may optimise, and in which direction: the one place that knows.

The checkpoint and early-stopping ``mode`` of a run and the sweeper's ``direction`` (through the
``objective_direction`` config resolver) are derived from it.
"""

from __future__ import annotations

# val/auc_minus_logloss: FuxiCTR's monitor {AUC: 1, logloss: -1}, which BARS's Criteo_x4 runs use
MAXIMISED = ("val/auc", "val/auc_minus_logloss")
MINIMISED = ("val/logloss",)


def objective_direction(objective: str) -> str:
    """``'maximize'`` or ``'minimize'`` for a metric the models log; a clear error otherwise."""
    if objective in MAXIMISED:
        return "maximize"
    if objective in MINIMISED:
        return "minimize"
    raise ValueError(
        f"objective {objective!r} is not a validation metric the models log; "
        f"choose one of {', '.join(MAXIMISED + MINIMISED)}"
    )


def objective_mode(objective: str) -> str:
    """Lightning's spelling of the direction (for ModelCheckpoint / EarlyStopping)."""
    return objective_direction(objective)[:3]
