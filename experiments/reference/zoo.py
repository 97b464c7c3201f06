"""The reference side of the newer models: FuxiCTR's own model zoo, loaded from a folder the user
gives (``--fuxictr-zoo DIR``, the ``model_zoo/`` of a checkout of FuxiCTR's repository), never
copied into ctr-bench.

FuxiCTR's PyPI wheel has the layers and ``BaseModel`` its zoo imports, not the zoo itself. Each
model of ``zoo_models()`` names its zoo class, translates a preset's config into that class's arguments
(failing where the preset sets something the zoo model has no argument for) and copies the zoo
model's initial weights into ours (``ZooModel.copy``); the families' entries live in
``zoo_cross``, ``zoo_attention``, ``zoo_final`` and ``zoo_interaction``.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig
from torch import nn

from experiments.reference.fuxictr_models import regularizer
from experiments.reference.weights import copy_tables


@dataclass(frozen=True)
class ZooModel:
    """One ctr-bench model against one class of FuxiCTR's zoo."""

    zoo_class: str  # the folder and class name in model_zoo/
    settings: Callable[[DictConfig], dict]  # the preset's cfg.model -> the class's arguments
    # (ours, theirs): ours takes theirs' weights (called without autograd: check.transfer_weights)
    copy: Callable[[nn.Module, nn.Module], None]
    # where the zoo's code has changed since the FuxiCTR version of BARS's run: (theirs, cfg.model)
    # puts that version's definition back into a built zoo model; its docstring says what and why
    restore: Optional[Callable[[nn.Module, DictConfig], None]] = None
    # (feature map, cfg.model) before the class is built, for settings a zoo class reads from the
    # feature map rather than from its arguments (DSSM's towers: each feature's source)
    prepare: Optional[Callable[[object, DictConfig], None]] = None
    # why the float64 steps miss the bar where the cause is known and tested (the report prints it)
    known_gap: Optional[str] = None


def saturated_loss(why: str) -> str:
    """A ``known_gap``: FuxiCTR's loss on probabilities where the model's logits grow large (``why``)."""
    return (
        "FuxiCTR takes its loss on sigmoid probabilities, which keep few digits of 1 - p at large logits and "
        "round to exactly 0 or 1 beyond |logit| ~ 37 in float64 (the log then clamped at -100, its gradient 0); "
        f"{why}. With FuxiCTR's loss taken on the logits, as ctr-bench's, the steps agree "
        "(tests/test_reference.py, test_saturating_models_take_the_zoos_steps_with_its_loss_on_logits)."
    )


def load_zoo_class(zoo: Path, name: str) -> type:
    """``model_zoo/<name>/src`` imported as a package of its own; its class ``name``."""
    source = Path(zoo) / name / "src"
    if not source.is_dir():  # a model the zoo has in both frameworks: model_zoo/<name>/<name>_torch/src
        source = Path(zoo) / name / f"{name}_torch" / "src"
    if not (source / "__init__.py").is_file():
        raise FileNotFoundError(f"{source / '__init__.py'}: not found; --fuxictr-zoo names FuxiCTR's model_zoo folder")
    package = f"fuxictr_zoo_{name}"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, source / "__init__.py", submodule_search_locations=[str(source)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return getattr(sys.modules[package], name)


def zoo_version(zoo: Path) -> str:
    """The zoo's FuxiCTR commit, where the folder is in a git checkout."""
    found = subprocess.run(["git", "-C", str(zoo), "log", "-1", "--format=%h %cs"], capture_output=True, text=True)
    # not "commit ...": the results index reads a report's first "commit" as the code that made it
    return f"FuxiCTR's repository at {found.stdout.strip()}" if found.returncode == 0 else "a folder outside git"


def build_zoo_model(entry: ZooModel, zoo: Path, fmap, cfg: DictConfig, base: dict, model_root: Path):
    """The zoo class built as FuxiCTR's ``run_expid.py`` builds it from a config: the model's own
    arguments, ``BaseModel``'s, Adam and the binary cross-entropy on probabilities."""
    cls = load_zoo_class(zoo, entry.zoo_class)
    if entry.prepare is not None:
        entry.prepare(fmap, cfg.model)
    # FuxiCTR's regularisers as its configs give them: None, not 0.0, where there is no L2
    base = {**base, **{key: regularizer(base[key]) for key in ("embedding_regularizer", "net_regularizer")}}
    if "regularizer" in inspect.signature(cls).parameters:  # one weight for both (FwFM, FmFM, HOFM)
        base["regularizer"] = same("regularizer", base.pop("embedding_regularizer"), base.pop("net_regularizer"))
    model = cls(
        fmap,
        model_id=entry.zoo_class,
        gpu=-1,
        optimizer="adam",
        loss="binary_crossentropy",
        verbose=0,
        model_root=str(model_root),
        metrics=["AUC", "logloss"],
        embedding_dim=cfg.model.embedding_dim,
        **base,
        **entry.settings(cfg.model),
    )
    Path(model.checkpoint).parent.mkdir(parents=True, exist_ok=True)  # fit() saves its best weights there
    if entry.restore is not None:
        entry.restore(model, cfg.model)
    base_labels = model.get_labels
    # labels in the parameters' precision (FuxiCTR casts them to float32): the float64 comparison
    model.get_labels = lambda inputs: base_labels(inputs).to(next(model.parameters()).dtype)
    return model


def mlp_settings(mlp: DictConfig, prefix: str) -> dict:
    """An ``MLPSpec``'s hidden layers as a zoo class's arguments named ``<prefix><key>``."""
    return {
        f"{prefix}hidden_units": list(mlp.hidden_units),
        f"{prefix}hidden_activations": mlp.activation,
        f"{prefix}dropout": mlp.dropout,
        f"{prefix}batch_norm": mlp.batch_norm,
    }


def same(what: str, *values):
    """The one value that several of our settings share where the zoo class takes one argument."""
    if len(set(map(repr, values))) != 1:
        raise ValueError(f"FuxiCTR takes one {what} where the preset sets {values}")
    return values[0]


def copy_state(ours: nn.Module, theirs: nn.Module) -> None:
    """Every parameter and buffer of ``theirs`` into ``ours``, pairwise in registration order; the
    two must hold the same number of tensors of the same shapes (else a listing of both)."""
    mine, other = list(ours.state_dict().values()), list(theirs.state_dict().values())
    if [tuple(t.shape) for t in mine] != [tuple(t.shape) for t in other]:
        raise ValueError(
            f"{type(ours).__name__} and {type(theirs).__name__} hold different tensors:\n"
            f"  ours:   {list((k, tuple(v.shape)) for k, v in ours.state_dict().items())}\n"
            f"  theirs: {list((k, tuple(v.shape)) for k, v in theirs.state_dict().items())}"
        )
    for a, b in zip(mine, other):
        a.copy_(b)


def copy_embedding(ours, theirs) -> None:
    """Our one id table <- the zoo model's ``embedding_layer`` (one table per field)."""
    copy_tables(ours.embedding.table.weight, theirs.embedding_layer, ours.schema)


def zoo_models() -> dict[str, ZooModel]:
    """Every model checked against FuxiCTR's zoo, by config name."""
    from experiments.reference import zoo_attention, zoo_cross, zoo_final, zoo_fm, zoo_graph, zoo_holo, zoo_interaction

    return {
        **zoo_cross.MODELS,
        **zoo_attention.MODELS,
        **zoo_final.MODELS,
        **zoo_interaction.MODELS,
        **zoo_fm.MODELS,
        **zoo_graph.MODELS,
        **zoo_holo.MODELS,
    }
