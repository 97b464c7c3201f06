"""The three comparisons of ctr-bench's BARS presets with FuxiCTR, on the same data:

- ``preprocessing``: FuxiCTR's ``FeatureProcessor`` (with BARS's dataset config) and ctr-bench's
  encoding (``convention: fuxictr``) must give every row of every split the same local id in
  every field, and every field the same vocabulary size;
- ``steps``: the same model in both libraries, from identical weights (the reference's own
  initialisation, copied), fed identical batches: the training loss of each step, for
  ``steps`` steps (dropout off: the two draw their masks from different generators);
- ``training``: each library's own full training loop with the preset's protocol, seeds apart
  (different shuffles, dropout masks and initial draws): validation and test AUC / LogLoss.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from datamodules.sampling import ShuffledBatches
from datamodules.schema import Batch
from experiments.reference.data import datamodule, preset_config  # noqa: F401 (used as check.*)
from experiments.reference.fuxictr_models import REFERENCE_MODELS, feature_map
from experiments.reference.weights import copy_weights
from experiments.reference.zoo import build_zoo_model, zoo_models
from experiments.run.train import build_model, train


def base_settings(cfg: DictConfig) -> dict:
    """``BaseModel``'s arguments for the preset's ``cfg`` (its training protocol); fails where the
    preset's protocol is not FuxiCTR's fixed one."""
    optim = cfg.optim
    if cfg.objective not in ("val/auc", "val/auc_minus_logloss"):
        raise ValueError(f"FuxiCTR monitors AUC or AUC - logloss, not {cfg.objective}")
    if (
        optim.name != "adam"
        or cfg.trainer.gradient_clip_val != 10
        or cfg.plateau.lr_factor != 0.1
        or cfg.plateau.min_lr != 1e-6
        or cfg.plateau.min_delta != 1e-6
    ):
        raise ValueError("the preset's protocol is not FuxiCTR's fixed one (Adam, clip 10, decay 0.1 to 1e-6)")
    return {
        "embedding_regularizer": optim.embedding_table_l2,
        "net_regularizer": optim.net_l2,
        "monitor": "AUC" if cfg.objective == "val/auc" else {"AUC": 1, "logloss": -1},
        "early_stop_patience": cfg.plateau.patience,
        "learning_rate": optim.lr,
    }


def reference_settings(name: str, cfg: DictConfig) -> dict:
    """The arguments of the nine's reference models for the preset's ``cfg``; fails where the
    preset sets something the reference definition does not have."""
    model = cfg.model
    settings = base_settings(cfg)
    if "embedding_dim" in model:
        settings["embedding_dim"] = model.embedding_dim
    if "mlp" in model:
        settings.update(
            hidden_units=list(model.mlp.hidden_units),
            activation=model.mlp.activation,
            dropout=model.mlp.dropout,
            batch_norm=model.mlp.batch_norm,
        )
    if name == "dcn":
        settings["cross_layers"] = model.cross_layers
    if name == "xdeepfm":
        if model.cin_split_half or not model.cin_bias:
            raise ValueError("FuxiCTR's CIN feeds every map forward and has a bias per map")
        settings["cin_layer_sizes"] = list(model.cin_layer_sizes)
    if name == "lr_dnn" and model.linear_bias:
        raise ValueError("FuxiCTR's WideDeep has no LR bias")
    return settings


def build_reference(name: str, cfg: DictConfig, schema, model_root: Path, zoo: Optional[Path]):
    """FuxiCTR's ``name``: one of the nine composed from its layers, or a class of its model zoo in
    the folder ``zoo``."""
    names = [f.name for f in schema.sparse_fields]
    fmap = feature_map([f.vocab_size for f in schema.sparse_fields], cfg.model.get("embedding_dim", 1), names)
    if name in REFERENCE_MODELS:
        return REFERENCE_MODELS[name](fmap, **reference_settings(name, cfg), model_root=model_root)
    if zoo is None:
        raise ValueError(f"{name}: FuxiCTR's model is in its model zoo; give its folder (--fuxictr-zoo DIR)")
    return build_zoo_model(zoo_models()[name], zoo, fmap, cfg, base_settings(cfg), model_root)


@torch.no_grad()
def transfer_weights(name: str, ours, theirs) -> None:
    """Make ``ours`` hold ``theirs``' parameters."""
    if name in REFERENCE_MODELS:
        copy_weights(name, ours, theirs)
    else:
        zoo_models()[name].copy(ours, theirs)


def without_dropout(node) -> None:
    """Every ``dropout`` key under ``node`` (a model config) set to 0."""
    for key, value in node.items():
        if key == "dropout":
            node[key] = 0.0
        elif isinstance(value, DictConfig):
            without_dropout(value)


class SplitTensors:
    """One encoded split as both libraries read it: global ids (ours) and per-field local ids."""

    def __init__(self, dm, split: str):
        arrays = dm.split_arrays(split)
        self.x = torch.from_numpy(np.asarray(arrays.x).astype(np.int64))
        self.y = torch.from_numpy(np.asarray(arrays.y).astype(np.float32))
        self.offsets = torch.tensor([f.offset for f in dm.schema.sparse_fields])
        self.names = [f.name for f in dm.schema.sparse_fields]

    def __len__(self) -> int:
        return len(self.y)

    def ours(self, rows, dtype: torch.dtype = torch.float32) -> Batch:
        return Batch(self.x[rows], self.y[rows].to(dtype), None)

    def theirs(self, rows, dtype: torch.dtype = torch.float32) -> dict:
        return self.as_theirs(self.x[rows], self.y[rows].to(dtype), self.offsets, self.names)

    @staticmethod
    def as_theirs(x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor, names: list[str]) -> dict:
        """FuxiCTR's batch of the global ids ``x``: each field's local ids by name, and the label."""
        local = x - offsets
        return {**{name: local[:, j] for j, name in enumerate(names)}, "label": y}

    def loader(self, batch_size: int, shuffle: bool) -> DataLoader:
        """FuxiCTR's own batching (a torch DataLoader, reshuffled every epoch from torch's RNG,
        last batch kept), over these rows."""
        return DataLoader(
            np.arange(len(self)),
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=lambda rows: self.theirs(torch.as_tensor(np.array(rows))),
        )


# -- steps ---------------------------------------------------------------------------------------

# the largest relative loss gap per step in float64 of two equal definitions: rounding, amplified over
# the steps by some models (AFN's exponentials) in either library
STEP_TOLERANCE = 1e-9


@dataclass
class StepComparison:
    """Per-step training losses of one model: ours and FuxiCTR's from the same weights on the same
    batches, in float64 (``*_64``) and in float32, and FuxiCTR against itself in float32 on the same
    batches with their rows in another order (``floor``: the same sums added in another order;
    ``floor_64`` the same in float64, where asked for)."""

    dataset: str
    model: str
    steps: int
    batch_size: int
    first_prediction_gap: float  # max |p_ours - p_ref| on the first batch, before any step (float32)
    ours: list[float] = field(default_factory=list)
    theirs: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    ours_64: list[float] = field(default_factory=list)
    theirs_64: list[float] = field(default_factory=list)
    floor_64: list[float] = field(default_factory=list)

    @staticmethod
    def relative_gap(a: list[float], b: list[float]) -> float:
        return max(abs(x - y) / abs(y) for x, y in zip(a, b))

    @property
    def max_loss_gap(self) -> float:
        return max(abs(a - b) for a, b in zip(self.ours, self.theirs))

    @property
    def max_relative_gap(self) -> float:
        return self.relative_gap(self.ours, self.theirs)

    @property
    def max_relative_gap_64(self) -> float:
        return self.relative_gap(self.ours_64, self.theirs_64)

    @property
    def max_relative_floor(self) -> float:
        return self.relative_gap(self.floor, self.theirs)


def ours_step(model, clip: float):
    """One step as Lightning runs ours: loss, backward, clip the global norm, the optimiser's step."""
    optimizer = model.configure_optimizers()

    def step(batch: Batch) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model.losses(batch)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return float(loss.detach())

    return step


def theirs_step(reference, clip: float):
    reference._max_gradient_norm = clip  # what fit() sets before it calls train_step
    return lambda inputs: float(reference.train_step(inputs).detach())


def compare_steps(
    name: str,
    cfg: DictConfig,
    dm,
    dataset: str,
    steps: int,
    seed: int,
    workdir: Path,
    zoo: Optional[Path] = None,
    floor_64: bool = False,
) -> StepComparison:
    """``steps`` training steps of both libraries from the reference's initial weights, on the same
    batches (the training split's first shuffled batches), dropout off (the libraries draw masks
    from different generators). ``floor_64``: FuxiCTR against itself in float64 too, for models
    whose steps amplify rounding (AFN's exponentials)."""
    cfg = copy.deepcopy(cfg)
    without_dropout(cfg.model)
    clip = cfg.trainer.gradient_clip_val
    torch.manual_seed(seed)
    reference = build_reference(name, cfg, dm.schema, workdir / "models", zoo)
    initial = copy.deepcopy(reference.state_dict())
    data = SplitTensors(dm, "train")
    batches = [
        torch.from_numpy(rows)
        for rows in itertools.islice(itertools.cycle(ShuffledBatches(len(data), cfg.data.batch_size, seed)), steps)
    ]
    reordered = [
        rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(step))]
        for step, rows in enumerate(batches)
    ]

    def pair(dtype: torch.dtype):
        """Both models from the reference's initial weights, in ``dtype``, in training mode."""
        theirs = build_reference(name, cfg, dm.schema, workdir / "models", zoo)
        theirs.load_state_dict(initial)
        ours = build_model(cfg, dm.schema)
        transfer_weights(name, ours, theirs)
        return ours.to(dtype).train(), theirs.to(dtype).train()

    ours, theirs = pair(torch.float32)
    with torch.no_grad():
        gap = (torch.sigmoid(ours(data.ours(batches[0]))) - theirs(data.theirs(batches[0]))["y_pred"].squeeze(1)).abs()
    comparison = StepComparison(dataset, name, steps, cfg.data.batch_size, float(gap.max()))
    step_ours, step_theirs = ours_step(ours, clip), theirs_step(theirs, clip)
    for rows in batches:
        comparison.theirs.append(step_theirs(data.theirs(rows)))
        comparison.ours.append(step_ours(data.ours(rows)))
    _, twin = pair(torch.float32)
    step_twin = theirs_step(twin, clip)
    comparison.floor = [step_twin(data.theirs(rows)) for rows in reordered]
    ours, theirs = pair(torch.float64)
    step_ours, step_theirs = ours_step(ours, clip), theirs_step(theirs, clip)
    for rows in batches:
        comparison.theirs_64.append(step_theirs(data.theirs(rows, torch.float64)))
        comparison.ours_64.append(step_ours(data.ours(rows, torch.float64)))
    if floor_64:
        _, twin = pair(torch.float64)
        step_twin = theirs_step(twin, clip)
        comparison.floor_64 = [step_twin(data.theirs(rows, torch.float64)) for rows in reordered]
    return comparison


# -- full training ---------------------------------------------------------------------------------


@dataclass
class TrainingRun:
    library: str
    dataset: str
    model: str
    seed: int
    val_auc: float
    val_logloss: float
    test_auc: float
    test_logloss: float
    epochs: int
    seconds: float


def train_ours(name: str, cfg: DictConfig, dataset: str, seed: int, out_dir: Path) -> TrainingRun:
    cfg = copy.deepcopy(cfg)
    cfg.seed = seed
    started = time.perf_counter()
    metrics = train(cfg, out_dir)
    return TrainingRun(
        "ctr-bench",
        dataset,
        name,
        seed,
        metrics["val/auc"],
        metrics["val/logloss"],
        metrics["test/auc"],
        metrics["test/logloss"],
        metrics["epochs"],
        time.perf_counter() - started,
    )


def train_theirs(
    name: str, cfg: DictConfig, dm, dataset: str, seed: int, workdir: Path, zoo: Optional[Path] = None
) -> TrainingRun:
    from fuxictr.pytorch.torch_utils import seed_everything

    seed_everything(seed)
    reference = build_reference(name, cfg, dm.schema, workdir / f"models_{seed}", zoo)
    splits = {s: SplitTensors(dm, s) for s in ("train", "val", "test")}
    batch = cfg.data.batch_size
    started = time.perf_counter()
    reference.fit(
        splits["train"].loader(batch, shuffle=True),
        epochs=cfg.trainer.max_epochs,
        validation_data=splits["val"].loader(batch, shuffle=False),
        max_gradient_norm=cfg.trainer.gradient_clip_val,
    )
    val = reference.evaluate(splits["val"].loader(batch, shuffle=False))
    test = reference.evaluate(splits["test"].loader(batch, shuffle=False))
    return TrainingRun(
        "FuxiCTR",
        dataset,
        name,
        seed,
        val["AUC"],
        val["logloss"],
        test["AUC"],
        test["logloss"],
        reference._epoch_index + 1,
        time.perf_counter() - started,
    )


def mean(values) -> float:
    return statistics.fmean(values)


def spread(values) -> float:
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0


# -- preprocessing ---------------------------------------------------------------------------------


@dataclass
class PreprocessingComparison:
    dataset: str
    min_count: int
    fields: int
    rows: dict[str, int]
    vocab_sizes_equal: bool
    total_ids: int
    mismatched_ids: int  # over every row, field and split
    mismatched_fields: list[str]


def processor_class(name: str):
    if name == "CustomizedFeatureProcessor":
        from fuxictr.datasets.criteo import CustomizedFeatureProcessor

        return CustomizedFeatureProcessor
    from fuxictr.preprocess import FeatureProcessor

    return FeatureProcessor


def fuxictr_encoding(
    processor_class, feature_cols: list[dict], label_col: dict, files: dict[str, Path], min_count: int
) -> tuple[dict[str, int], dict[str, dict[str, np.ndarray]]]:
    """FuxiCTR's preprocessing of ``files``, fitted on the train file: (vocabulary size per field,
    per split the encoded column of each field)."""
    with tempfile.TemporaryDirectory() as root:
        processor = processor_class(
            feature_cols=feature_cols, label_col=label_col, dataset_id="reference", data_root=root
        )
        train_ddf = processor.preprocess(processor.read_data(str(files["train"]), data_format="csv", sep=","))
        processor.fit(train_ddf, min_categr_count=min_count)
        encoded = {}
        for split, path in files.items():
            table = processor.preprocess(processor.read_data(str(path), data_format="csv", sep=",")).collect()
            batch = {column: table[column].to_numpy() for column in table.columns}
            encoded[split] = {k: np.asarray(v) for k, v in processor.transform(batch).items()}
        sizes = {name: spec["vocab_size"] for name, spec in processor.feature_map.features.items()}
    return sizes, encoded


def compare_preprocessing(
    dataset: str, dm, sizes: dict[str, int], encoded: dict[str, dict[str, np.ndarray]], min_count: int
) -> PreprocessingComparison:
    fields = dm.schema.sparse_fields
    mismatched, total, bad_fields = 0, 0, set()
    for split, columns in encoded.items():
        x = np.asarray(dm.split_arrays(split).x)
        for j, f in enumerate(fields):
            ours = x[:, j].astype(np.int64) - f.offset
            theirs = columns[f.name].astype(np.int64)
            wrong = int((ours != theirs).sum())
            mismatched, total = mismatched + wrong, total + len(ours)
            if wrong:
                bad_fields.add(f.name)
    equal_sizes = all(sizes[f.name] == f.vocab_size for f in fields)
    if not equal_sizes:
        bad_fields |= {f.name for f in fields if sizes[f.name] != f.vocab_size}
    return PreprocessingComparison(
        dataset,
        min_count,
        len(fields),
        {s: dm.num_rows(s) for s in encoded},
        equal_sizes,
        total,
        mismatched,
        sorted(bad_fields),
    )
