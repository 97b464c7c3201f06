"""The sweeper's side of pruning trials (the run's side is ``experiments.run.trial``): it names
each job's trial in the job's environment, and tells a trial its run marked pruned as PRUNED."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.trial import TrialState

from experiments.run.trial import PRUNED_ATTR, STUDY_ENV, TRIAL_ENV


def override_value(text: str) -> str:
    """``text`` as a Hydra override value: as it is where that parses back to it (names, paths,
    most URLs), else quoted, with quotes and the backslashes before a quote or at the end escaped."""
    if re.fullmatch(r"[\w./:@+-]+", text) and OverridesParser.create().parse_override(f"k={text}").value() == text:
        return text  # not a number, bool or null either
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text) + "'"


def trial_env_overrides(study_name: str, trial_number: int) -> list[str]:
    """The overrides that name a trial in its job's environment (the sweeper appends them)."""
    return [
        f"++hydra.job.env_set.{STUDY_ENV}={override_value(study_name)}",
        f"++hydra.job.env_set.{TRIAL_ENV}={trial_number}",
    ]


def _marked_pruned(trial: Any) -> bool:
    # the plugin tells ``optuna.Trial`` objects; read the mark from the storage, where the job wrote it
    return isinstance(trial, optuna.Trial) and PRUNED_ATTR in trial.storage.get_trial_user_attrs(trial._trial_id)


def tell_marked_trials_pruned(study: optuna.Study) -> None:
    """Makes ``study.tell`` record a trial its run marked ``pruned_at_epoch`` as PRUNED (Optuna then
    keeps the trial's last reported value) when told COMPLETE. The plugin's sweeper tells COMPLETE
    every trial whose job returned; this is how a pruned run's trial gets its state."""
    tell = study.tell

    def tell_pruned_as_pruned(
        trial: Any,
        values: float | Sequence[float] | None = None,
        state: TrialState | None = None,
        skip_if_finished: bool = False,
    ):
        if state in (None, TrialState.COMPLETE) and _marked_pruned(trial):
            state, values = TrialState.PRUNED, None
        return tell(trial, values, state, skip_if_finished)

    study.tell = tell_pruned_as_pruned
