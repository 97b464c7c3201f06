"""The reference check's report: ``results/checks/reference/README.md``, each comparison against its bar."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from experiments.reference.check import PreprocessingComparison, StepComparison, TrainingRun, mean, spread
from experiments.reference.zoo import zoo_models
from measures.environment import LoadNotes, cpu_name, describe, library_versions


@dataclass
class Outcome(LoadNotes):
    command: str
    args: dict
    preprocessing: list[PreprocessingComparison] = field(default_factory=list)
    steps: list[StepComparison] = field(default_factory=list)
    training: list[TrainingRun] = field(default_factory=list)
    seconds: float = 0.0
    # the commit of each call that measured into this outcome (a --resume call adds to an earlier one's)
    commits: list[str] = field(default_factory=list)
    zoo: str = ""  # which FuxiCTR model zoo (see zoo.zoo_version)

    def has(self, part: str, **key) -> bool:
        """Whether a comparison of ``part`` with these field values is already measured."""
        return any(all(getattr(item, name) == value for name, value in key.items()) for item in getattr(self, part))

    @classmethod
    def from_json(cls, saved: dict) -> "Outcome":
        return cls(
            command=saved["command"],
            args={},
            seconds=saved["seconds"],
            commits=saved.get("commits", [describe(None)]),
            zoo=saved.get("zoo", ""),
            load_averages=[(moment, tuple(load)) for moment, load in saved["load_averages"]],
            preprocessing=[PreprocessingComparison(**p) for p in saved["preprocessing"]],
            steps=[StepComparison(**s) for s in saved["steps"]],
            training=[TrainingRun(**t) for t in saved["training"]],
        )

    def to_json(self) -> dict:
        return {
            "command": self.command,
            "commits": self.commits,
            "zoo": self.zoo,
            "seconds": self.seconds,
            "load_averages": self.load_averages,
            "preprocessing": [asdict(p) for p in self.preprocessing],
            "steps": [asdict(s) for s in self.steps],
            "training": [asdict(t) for t in self.training],
        }


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def preprocessing_lines(outcome: Outcome) -> tuple[list[str], bool]:
    if not outcome.preprocessing:
        return [], True
    lines = [
        "## Preprocessing: the same ids",
        "",
        "FuxiCTR's `FeatureProcessor` with BARS's dataset config (Frappe_x1: every field categorical of dtype "
        "float; Criteo_x4: I1..I13 bucketized by `convert_to_bucket` after filling missing values with 0, C1..C26 "
        "text with missing values OOV), fitted on the train file, against ctr-bench's encoding with "
        "`data.encoding.convention=fuxictr`, which the BARS presets set. Compared: the local id of every field "
        "of every row of every split, and every field's vocabulary size (padding and OOV included). On the "
        "Frappe-shaped data ctr-bench reads the libfm files and FuxiCTR the CSV files of the same rows.",
        "",
        "| data | min count | fields | rows train / val / test | ids compared | ids that differ "
        "| vocabulary sizes equal |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    passed = True
    for p in outcome.preprocessing:
        ok = p.mismatched_ids == 0 and p.vocab_sizes_equal
        passed &= ok
        rows = " / ".join(f"{p.rows[s]:,}" for s in ("train", "val", "test"))
        lines.append(
            f"| {p.dataset} | {p.min_count} | {p.fields} | {rows} | {p.total_ids:,} | {p.mismatched_ids:,} | "
            f"{_yes(p.vocab_sizes_equal)} |"
        )
    return lines + [""], passed


def steps_lines(outcome: Outcome, tolerance: float) -> tuple[list[str], bool]:
    if not outcome.steps:
        return [], True
    first = outcome.steps[0]
    lines = [
        "## Step by step: the same losses",
        "",
        f"Each model built in both libraries with the preset's settings (dropout off: the libraries draw their "
        f"masks from different generators), ctr-bench's model given the FuxiCTR model's initial weights, both "
        f"fed the same {first.steps} training batches of the preset's size; each step: mean BCE plus the "
        f"regularisers, backward, gradient norm clipped at 10, Adam. The gap is the largest "
        f"|ours − FuxiCTR's| / FuxiCTR's training loss over the steps (each before its step's update).",
        "",
        f"- **float64** (both models and labels cast): the definitions are equal when the gap stays at rounding "
        f"level; the bar is {tolerance:.0e}.",
        "- **float32**, as the presets train: rounding differs (ctr-bench takes the BCE of the logits, FuxiCTR of "
        "the sigmoid's output, equal in exact arithmetic; sums run in other orders), and Adam amplifies it "
        "wherever a gradient is rounding noise: the bias of every linear layer followed by batch norm has an "
        "exact gradient of zero, so its float gradient is noise that Adam turns into steps of the learning "
        "rate. The *floor* column measures that effect with FuxiCTR alone: the same model, weights and batches, "
        "only the rows inside each batch in another order (the same sums added in another order).",
        "",
        "| data | model | steps | batch | largest gap of p before step 1 | loss at step 1 | loss at the last step "
        "| gap, float64 | gap, float32 | floor, float32 (FuxiCTR against itself) | float64 within the bar |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    zoo = zoo_models()
    explained = {s.model: zoo[s.model].known_gap for s in outcome.steps if s.model in zoo and zoo[s.model].known_gap}
    passed = True
    for s in outcome.steps:
        ok = s.max_relative_gap_64 <= tolerance
        passed &= ok
        lines.append(
            f"| {s.dataset} | {s.model} | {s.steps} | {s.batch_size:,} | {s.first_prediction_gap:.1e} | "
            f"{s.theirs[0]:.6f} | {s.theirs[-1]:.6f} | {s.max_relative_gap_64:.1e} | {s.max_relative_gap:.1e} "
            f"| {s.max_relative_floor:.1e} | {_yes(ok)}{'' if ok or s.model not in explained else ' (below)'} |"
        )
    restored = {s.model: zoo[s.model].restore for s in outcome.steps if s.model in zoo}
    notes = [f"- {name}: {' '.join(restore.__doc__.split())}" for name, restore in restored.items() if restore]
    if notes:
        lines += [
            "",
            "Where the zoo's code has changed since BARS's run, its model is run as that version had it:",
            *notes,
        ]
    missed = {s.model for s in outcome.steps if s.max_relative_gap_64 > tolerance}
    if missed & set(explained):
        lines += ["", "Where a model misses the bar for a known reason:"]
        lines += [f"- {name}: {why}" for name, why in explained.items() if name in missed]
    return lines + [""], passed


def training_lines(outcome: Outcome, tolerance: float) -> tuple[list[str], bool]:
    if not outcome.training:
        return [], True
    lines = [
        "## Full training: the same AUC",
        "",
        "Each library's own loop with the preset's protocol (ctr-bench: `python run.py experiment=bars_frappe_x1 "
        "model=<m>` as a function call; FuxiCTR: `BaseModel.fit` over a reshuffled torch DataLoader of the same "
        "encoded rows, then its `evaluate`), each seed apart: the two draw their own initial weights, shuffles "
        f"and dropout masks. Means ± sample standard deviations over seeds; the bar is |Δ mean test AUC| ≤ "
        f"{tolerance}.",
        "",
        "| data | model | seeds | ctr-bench test AUC | FuxiCTR test AUC | Δ | ctr-bench test LogLoss | "
        "FuxiCTR test LogLoss | ctr-bench val AUC | FuxiCTR val AUC | epochs (ours / FuxiCTR) | within the bar |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    passed = True
    keys = list(dict.fromkeys((t.dataset, t.model) for t in outcome.training))  # in the order they ran
    for dataset, model in keys:
        runs = {
            lib: [t for t in outcome.training if (t.dataset, t.model, t.library) == (dataset, model, lib)]
            for lib in ("ctr-bench", "FuxiCTR")
        }
        ours, theirs = runs["ctr-bench"], runs["FuxiCTR"]
        if not ours or not theirs:
            continue
        delta = mean(t.test_auc for t in ours) - mean(t.test_auc for t in theirs)
        ok = abs(delta) <= tolerance
        passed &= ok

        def cell(rs, attr, digits=4):
            values = [getattr(t, attr) for t in rs]
            return f"{mean(values):.{digits}f} ± {spread(values):.{digits}f}"

        epochs = f"{mean(t.epochs for t in ours):.1f} / {mean(t.epochs for t in theirs):.1f}"
        lines.append(
            f"| {dataset} | {model} | {len(ours)} | {cell(ours, 'test_auc')} | {cell(theirs, 'test_auc')} | "
            f"{delta:+.4f} | {cell(ours, 'test_logloss')} | {cell(theirs, 'test_logloss')} | "
            f"{cell(ours, 'val_auc')} | {cell(theirs, 'val_auc')} | {epochs} | {_yes(ok)} |"
        )
    return lines + [""], passed


def write_report(outcome: Outcome, out: Path, step_tolerance: float, auc_tolerance: float) -> bool:
    """Writes ``out/README.md``; returns whether every comparison met its bar."""
    sections, passed = [], True
    for lines, ok in (
        preprocessing_lines(outcome),
        steps_lines(outcome, step_tolerance),
        training_lines(outcome, auc_tolerance),
    ):
        sections += lines
        passed &= ok
    generated = datetime.now(timezone.utc).astimezone().isoformat(timespec="minutes")
    versions = library_versions(("fuxictr", "polars", "torch"))
    header = [
        "# ctr-bench against FuxiCTR: the BARS presets side by side",
        "",
        f"Generated by `{outcome.command}` ({generated}, {outcome.seconds / 60:.0f} min).",
        "",
        f"- FuxiCTR {versions['fuxictr']} (its layers and `BaseModel`; its model zoo is not on PyPI, so "
        f"`experiments/reference/fuxictr_models.py` composes the DeepFM paper's models and DCN from FuxiCTR's "
        f"layers, and the newer models are the classes of its repository's model zoo, "
        f"{outcome.zoo or 'not given'}, loaded from `--fuxictr-zoo`), polars "
        f"{versions['polars']}, torch {versions['torch']}, Python {platform.python_version()}",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs; load average (1, 5, 15 min): {outcome.loads_noted()}",
        "- code: "
        + (
            f"commits {', '.join(outcome.commits)} (one per call)"
            if len(outcome.commits) > 1
            else f"commit {(outcome.commits or [describe(None)])[0]}"
        ),
        "- data: a generated Frappe-shaped dataset (Frappe's 10 fields and cardinalities, Frappe_x1's 288,609 "
        "rows split 7:2:1, labels drawn from planted first-order, pairwise and higher-order effects), written "
        "as NFM libfm files and as BARS's CSV; and the 8,000-row Criteo sample rewritten as BARS's Criteo_x4 CSV",
        "- result: " + ("every comparison met its bar" if passed else "some comparisons missed their bar (NO)"),
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(header + sections))
    return passed
