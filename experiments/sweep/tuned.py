"""The tuned comparison: every model tuned with the same budget on the validation split, then each
model's best configuration re-run with several seeds and reported on the test split.

    python -m experiments.sweep.tuned                               # conf/tuned.yaml: the paper's nine models
    python -m experiments.sweep.tuned 'models=[lr,fm,deepfm]' trials=50 'seeds=[0,1,2,3,4]'
    python -m experiments.sweep.tuned 'overrides=[data=criteo,data.source.path=/data/criteo/train.txt]'
    python -m experiments.sweep.tuned 'stages=[search]'             # stage 1 only

Arguments are ``key=value`` over conf/tuned.yaml, which explains each key. The stages run as the
commands a user could type, each printed before it runs:

1. search: per model, ``python run.py -m model=M hparams_search=<template> ...`` into the study
   ``tuned-M-<data>`` (one storage for all), asking only for the trials the study still lacks
   (finished: complete or pruned; a failed trial is run again) and, with a ``timeout``, only for
   the time the study has left;
2. final: per model, ``python run.py -m model=M <the best trial's parameters> seed=...`` into
   ``<out>/final/M/trial_<best trial>/seed_<seed>``, for the seeds that have no metrics.json yet;
3. report: ``experiments.report`` on those runs and the studies into ``<results>``, and each
   model's best hyperparameters (``best_params.{md,csv}``) beside the table.

So re-running an interrupted command repeats nothing that finished. The protocol is a driver and
not one Hydra multirun because a sweeper runs one sweep, and stage 2's arguments are stage 1's
results.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

import optuna
import pandas as pd
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.trial import FrozenTrial, TrialState

from experiments.report.collect import METRICS_FILE
from experiments.report.naming import label_sort_key, model_label
from experiments.run.config import CONF, RUN_SCRIPT, compose_config
from experiments.sweep.pruning import override_value

STAGES = ("search", "final", "report")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The multiruns' own report is left out: stage 3 reports every model at once.
NO_REPORT = "~hydra.callbacks.report"
_DASH = "—"


class ProtocolError(RuntimeError):
    """A stage cannot go on; the message says why and what to do."""


def load_config(argv: Sequence[str] = ()) -> DictConfig:
    """conf/tuned.yaml with ``key=value`` arguments merged in; an unknown key or stage is an error.
    ``note=...`` is prose and taken as written (as YAML, a colon or a leading dash would change it)."""
    config = OmegaConf.load(CONF / "tuned.yaml")
    OmegaConf.set_struct(config, True)
    notes = [arg.split("=", 1)[1] for arg in argv if arg.startswith("note=")]
    try:
        config = OmegaConf.merge(config, OmegaConf.from_dotlist([arg for arg in argv if not arg.startswith("note=")]))
    except OmegaConfBaseException as err:
        raise ProtocolError(f"{err}; the keys are those of conf/tuned.yaml") from err
    if notes:
        config.note = notes[-1]
    unknown = [stage for stage in config.stages if stage not in STAGES]
    if unknown:
        raise ProtocolError(f"unknown stage {', '.join(map(str, unknown))}; the stages are {', '.join(STAGES)}")
    return config


def template_of(model_config: DictConfig) -> str:
    """The search-space template of a model's family (conf/hparams_search/<template>.yaml): deep
    with an MLP, shallow with embeddings of their own size, linear otherwise."""
    if "mlp" in model_config:
        return "deep"
    if "embedding_dim" in model_config:
        return "shallow"
    return "linear"


def template_keys(template: str) -> list[str]:
    """The overrides that give a plain run the keys a template's parameters set (the deep
    template's MLP width and depth), where it has such keys."""
    has_keys = (CONF / "hparams_search" / "keys" / f"{template}.yaml").is_file()
    return [f"+hparams_search/keys={template}"] if has_keys else []


def seconds_spent(trials: Sequence[FrozenTrial]) -> float:
    """Wall-clock seconds during which a finished trial of the study ran: trials run in parallel
    count once, the time between two invocations not at all."""
    spent, covered_until = 0.0, None
    for start, end in sorted(
        (t.datetime_start, t.datetime_complete) for t in trials if t.datetime_start and t.datetime_complete
    ):
        if covered_until is not None:
            start = max(start, covered_until)
        spent += max((end - start).total_seconds(), 0.0)
        covered_until = end if covered_until is None else max(covered_until, end)
    return spent


def trial_overrides(params: dict) -> list[str]:
    """A trial's parameters as the sweeper gave them to its run (``name=value``)."""
    return [f"{name}={value}" for name, value in params.items()]


@dataclass
class Tuned:
    """One invocation of the protocol: its settings resolved, and the commands it launched."""

    config: DictConfig
    data: str  # the dataset's name (data.name)
    objective: str
    templates: dict[str, str]  # model -> search-space template
    labels: dict[str, str]  # model -> printed name
    out: Path
    storage: str
    results: Path
    launched: list[list[str]] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(self.templates)

    def study_name(self, model: str) -> str:
        return f"tuned-{model}-{self.data}"

    def trials(self, model: str) -> list[FrozenTrial]:
        """The trials of the model's study so far; none before its first search."""
        try:
            return optuna.load_study(study_name=self.study_name(model), storage=self.storage).trials
        except KeyError:
            return []


def compose_run_config(overrides: Sequence[str]) -> DictConfig:
    """run.py's config under ``overrides`` (not resolved)."""
    try:
        return compose_config(overrides)
    except HydraException as err:
        raise ProtocolError(f"run.py's config does not compose with {' '.join(overrides)}: {err}") from err


def resolve(config: DictConfig) -> Tuned:
    """Settings of an invocation: each model's config is composed with the overrides once, which
    names the data and checks the overrides before anything runs."""
    overrides = list(config.overrides)
    templates, labels, data, objective = {}, {}, None, None
    for model in config.models:
        run_config = compose_run_config([f"model={model}", *overrides])
        templates[model] = template_of(run_config.model)
        labels[model] = model_label(model)
        data, objective = str(run_config.data.name), str(run_config.objective)
    if data is None:
        raise ProtocolError("no models to compare")
    out = Path(config.out or Path("multirun") / "tuned" / data)
    return Tuned(
        config=config,
        data=data,
        objective=objective,
        templates=templates,
        labels=labels,
        out=out,
        storage=config.storage or f"sqlite:///{out.as_posix()}/optuna.db",
        results=Path(config.results),
    )


def _display(words: Sequence[str]) -> str:
    script = os.path.relpath(RUN_SCRIPT)
    return shlex.join(["python", str(RUN_SCRIPT) if script.startswith("..") else script, *words])


def launch(tuned: Tuned, words: list[str], what: str) -> None:
    """Runs ``python run.py <words>``, printed first; a failure stops the protocol."""
    print(f"\n+ {_display(words)}", flush=True)
    tuned.launched.append(words)
    returncode = subprocess.run([sys.executable, str(RUN_SCRIPT), *words], check=False).returncode
    if returncode:
        raise ProtocolError(
            f"{what} failed (exit status {returncode}); fix the cause and re-run the same "
            f"command: finished trials and runs are kept"
        )


def _pruner_overrides(pruner: Optional[DictConfig]) -> list[str]:
    if pruner is None:
        return ["hydra.sweeper.pruner=null"]
    return [f"hydra.sweeper.pruner.{key}={value}" for key, value in pruner.items()]


def search(tuned: Tuned, model: str) -> None:
    """Stage 1 for one model: the trials its study lacks, in the time it has left."""
    name, config = tuned.study_name(model), tuned.config
    trials = tuned.trials(model)
    finished = sum(t.state in FINISHED for t in trials)
    to_go = config.trials - finished
    time_left = None if config.timeout is None else config.timeout - seconds_spent(trials)
    if to_go <= 0 or (time_left is not None and time_left <= 0):
        reason = "all trials finished" if to_go <= 0 else f"its {config.timeout} s are spent"
        print(f"{name}: {finished} of {config.trials} trials finished, {reason}")
        return
    launch(
        tuned,
        [
            "-m",
            f"model={model}",
            f"hparams_search={tuned.templates[model]}",
            *config.overrides,
            f"hydra.sweeper.study_name={override_value(name)}",
            f"hydra.sweeper.storage={override_value(tuned.storage)}",
            f"hydra.sweeper.n_trials={to_go}",
            *([] if time_left is None else [f"hydra.sweeper.timeout={math.ceil(time_left)}"]),
            *_pruner_overrides(config.pruner),
            f"hydra.sweep.dir={override_value((tuned.out / 'search' / model).as_posix())}",
            NO_REPORT,
            *config.search_overrides,
        ],
        what=f"the search of {model}",
    )


def best_trial(tuned: Tuned, model: str) -> FrozenTrial:
    name = tuned.study_name(model)
    try:
        return optuna.load_study(study_name=name, storage=tuned.storage).best_trial
    except KeyError:
        raise ProtocolError(f"no study {name} in {tuned.storage}: run the search stage first") from None
    except ValueError:  # Optuna's error for a study without a completed trial
        raise ProtocolError(
            f"study {name} has no completed trial: run the search stage (with more trials if all were pruned or failed)"
        ) from None


def final_folder(tuned: Tuned, model: str, trial: FrozenTrial) -> Path:
    """Named by the trial: when more trials find a better one, its runs go beside the old ones."""
    return tuned.out / "final" / model / f"trial_{trial.number}"


def final(tuned: Tuned, model: str) -> Path:
    """Stage 2 for one model: its best trial's configuration with the seeds not run yet."""
    trial = best_trial(tuned, model)
    finished = sum(t.state in FINISHED for t in tuned.trials(model))
    if finished < tuned.config.trials:
        print(
            f"{tuned.study_name(model)}: {finished} of {tuned.config.trials} trials finished; its best so far "
            f"is trial {trial.number}"
        )
    folder = final_folder(tuned, model, trial)
    seeds = [seed for seed in tuned.config.seeds if not (folder / f"seed_{seed}" / METRICS_FILE).is_file()]
    if not seeds:
        print(f"{tuned.study_name(model)}: best trial {trial.number} has run with every seed")
        return folder
    launch(
        tuned,
        [
            "-m",
            f"model={model}",
            *template_keys(tuned.templates[model]),
            *tuned.config.overrides,
            *trial_overrides(trial.params),
            f"seed={','.join(map(str, seeds))}",
            f"hydra.sweep.dir={override_value(folder.as_posix())}",
            "hydra.sweep.subdir=seed_${seed}",
            NO_REPORT,
        ],
        what=f"the final runs of {model}",
    )
    return folder


def best_params_table(tuned: Tuned) -> pd.DataFrame:
    """One row per model with a completed trial, in the paper's order: its best trial (number,
    objective, parameters) and the trials of its study by state."""
    rows = []
    for model in sorted(tuned.models, key=lambda m: label_sort_key(tuned.labels[m])):
        trials = tuned.trials(model)
        if not any(t.state == TrialState.COMPLETE for t in trials):
            continue
        best = best_trial(tuned, model)
        states = Counter(t.state for t in trials)
        rows.append(
            {
                "model": model,
                "label": tuned.labels[model],
                "template": tuned.templates[model],
                "study": tuned.study_name(model),
                "objective": tuned.objective,
                "best_value": best.value,
                "best_trial": best.number,
                "trials_complete": states[TrialState.COMPLETE],
                "trials_pruned": states[TrialState.PRUNED],
                "trials_failed": states[TrialState.FAIL],
                **best.params,
            }
        )
    return pd.DataFrame(rows)


def _param_text(value) -> str:
    if pd.isna(value):
        return _DASH  # not in the model's template
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_params_markdown(table: pd.DataFrame, tuned: Tuned) -> str:
    params = [
        column
        for column in table.columns
        if column
        not in (
            "model",
            "label",
            "template",
            "study",
            "objective",
            "best_value",
            "best_trial",
            "trials_complete",
            "trials_pruned",
            "trials_failed",
        )
    ]
    headers = ["Model", "Template", f"Best {tuned.objective}", "Trial", "Trials (complete / pruned / failed)", *params]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(headers) - 2)) + "|"]
    for row in table.to_dict("records"):
        lines.append(
            "| "
            + " | ".join(
                [
                    row["label"],
                    row["template"],
                    f"{row['best_value']:.4f}",
                    str(row["best_trial"]),
                    f"{row['trials_complete']} / {row['trials_pruned']} / {row['trials_failed']}",
                    *(_param_text(row[p]) for p in params),
                ]
            )
            + " |"
        )
    return "\n".join(
        [
            "### Best hyperparameters",
            "",
            *lines,
            "",
            f"- Each model's Optuna study (`tuned-<model>-{tuned.data}`) searched the template of its family "
            f"(`conf/hparams_search/<template>.yaml`) for the best {tuned.objective} on the validation split, with "
            f"{tuned.config.trials} trials (complete or pruned) per model"
            + (f" or {tuned.config.timeout} s" if tuned.config.timeout is not None else "")
            + ".",
            "- The results table shows the best trial's parameters run with every seed; —: not in the model's "
            "template.",
            "",
        ]
    )


def write_best_params(tuned: Tuned) -> list[Path]:
    """best_params.{md,csv} into the dataset's folder of the report."""
    from experiments.report.writer import BEST_PARAMS_FILE, folder_name

    table = best_params_table(tuned)
    folder = tuned.results / folder_name(tuned.data)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / BEST_PARAMS_FILE, (folder / BEST_PARAMS_FILE).with_suffix(".csv")]
    paths[0].write_text(best_params_markdown(table, tuned), encoding="utf-8")
    table.to_csv(paths[1], index=False, float_format="%.8g")
    return paths


def report(tuned: Tuned, command: str) -> None:
    """Stage 3: tables and plots of the final runs of each model's current best trial, the studies'
    figures, and the best hyperparameters; the README is rebuilt last so that it shows them."""
    from experiments.report.writer import run_report, write_readme

    folders = [final_folder(tuned, model, best_trial(tuned, model)) for model in tuned.models]
    note = (
        f"Tuned comparison: each model's hyperparameters searched by Optuna ({tuned.config.trials} trials per "
        f"model, best {tuned.objective} on the validation split), then its best configuration run with seeds "
        f"{' '.join(map(str, tuned.config.seeds))}." + (f" {tuned.config.note}" if tuned.config.note else "")
    )
    run_report(
        [folder for folder in folders if folder.is_dir()],
        tuned.results,
        command=command,
        study_storage=tuned.storage,
        study_names=[tuned.study_name(m) for m in tuned.models],
        note=note,
    )
    written = write_best_params(tuned)
    write_readme(tuned.results)
    print("\n" + written[0].read_text(encoding="utf-8"))


def run_protocol(config: DictConfig, command: str = "python -m experiments.sweep.tuned") -> Tuned:
    """The stages of ``config.stages``, in order; returns the invocation, with what it launched."""
    tuned = resolve(config)
    tuned.out.mkdir(parents=True, exist_ok=True)  # SQLite creates no folders
    print(
        f"tuned comparison of {', '.join(tuned.models)} on {tuned.data}: runs in {tuned.out}, studies in "
        f"{tuned.storage}, stages {', '.join(config.stages)}",
        flush=True,
    )
    started = datetime.now()
    if "search" in config.stages:
        for model in tuned.models:
            search(tuned, model)
    if "final" in config.stages:
        for model in tuned.models:
            final(tuned, model)
    if "report" in config.stages:
        report(tuned, command)
    print(f"\n{len(tuned.launched)} command(s) launched in {datetime.now() - started}", flush=True)
    return tuned


def protocol_command(argv: Sequence[str]) -> str:
    """The command the report names as the runs' origin: the arguments less ``stages=`` and
    ``note=``, which change neither the runs nor the studies (a report-only call then shows the
    command that makes everything)."""
    kept = [arg for arg in argv if not arg.startswith(("stages=", "note="))]
    return shlex.join(["python", "-m", "experiments.sweep.tuned", *kept])


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    try:
        run_protocol(load_config(argv), command=protocol_command(argv))
    except ProtocolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
