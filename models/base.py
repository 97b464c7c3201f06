"""``CTRModule``: the one place that owns the loss, the metrics, the optimiser and logging."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Mapping, Optional, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.sampling import eval_block_rows
from datamodules.schema import Batch, Schema
from models.init import check_init, initialize
from models.layers.embedding import FeatureEmbedding, IdTable, LinearLogit
from models.metrics import auc, logloss
from models.optim import OptimSpec
from models.spec import Spec

_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


class PredictionBuffer:
    """A split's logits and labels, written batch after batch into two preallocated tensors.

    Not a list of per-batch tensors: each of those small tensors is allocated between the batch's
    large temporaries and keeps the heap from giving them back. With such a list, DeepFM's resident
    memory grew by up to 6 MB per 4096-row evaluation batch (one epoch on a 4M-row Criteo-format
    file: peak anonymous memory 1,022 MiB, against 531 MiB with this buffer).
    """

    def __init__(
        self, capacity: Optional[int], dtype: torch.dtype, device: torch.device, unknown_capacity: int = 1 << 16
    ):
        self.logits = torch.empty(capacity or unknown_capacity, dtype=dtype, device=device)
        self.labels = torch.empty(capacity or unknown_capacity, device=device)
        self.size = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        end = self.size + len(logits)
        if end > len(self.logits):  # more rows than announced (or none were): grow geometrically
            capacity = max(end, 2 * len(self.logits))
            self.logits = torch.cat([self.logits[: self.size], self.logits.new_empty(capacity - self.size)])
            self.labels = torch.cat([self.labels[: self.size], self.labels.new_empty(capacity - self.size)])
        self.logits[self.size : end] = logits
        self.labels[self.size : end] = labels
        self.size = end

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([N] logits, [N] labels)`` of the rows added so far."""
        return self.logits[: self.size], self.labels[: self.size]


class CTRModule(pl.LightningModule):
    """Base of every model: subclasses build layers from ``schema`` and define ``forward(batch) -> [B]``
    logits; everything else lives here and is set by ``optim`` and ``init`` (no other defaults).

    Objective: mean BCE-with-logits plus four optional L2 terms, two of each form:

    - ``embedding_l2 * sum_{tables} mean_b sum_{rows read by b} ||row||^2`` over the id tables
      (embeddings, first-order and cross-product weights; only the rows a batch reads, once per
      example that reads them, see ``IdTable.squared_norm``), and ``weight_l2 * sum ||W||^2``
      over network weights (every parameter outside an id table except biases and normalisation
      layers): ctr-bench's own regularisers, whose cost per step is one gather of the batch;
    - ``embedding_table_l2 / 2 * sum_{tables} ||E||^2`` over every row of every id table, read by
      the batch or not, and ``net_l2 / 2 * sum ||p||^2`` over every other parameter, biases and
      normalisation layers included: FuxiCTR's ``embedding_regularizer`` and ``net_regularizer``
      (so BARS's), whose gradient is ``embedding_table_l2 * E`` on every row at every step. It is
      dense, so it cannot be combined with ``sparse_embeddings``.

    Metrics: predictions of a whole validation/test split are kept on the device during the epoch
    and scored once at its end with exact ``auc``/``logloss``: ``val/auc``, ``val/logloss``,
    ``val/auc_minus_logloss``, ``test/auc``, ``test/logloss``; plus ``train/loss`` (the objective) and ``train/logloss``
    per step. Under DDP each rank predicts an equal, contiguous block of the split (see
    ``datamodules.sampling.ContiguousBatches``); the blocks are all-gathered and the padding that made
    them equal is dropped, so the metrics are over exactly the split's rows, in stored order.

    Optimisation: ``optim``, one ``models.optim.OptimSpec`` (or the mapping of ``conf/optim/<name>.yaml``):
    the optimiser, its learning rate and options, sparse embedding gradients and the four L2
    weights above. The learning-rate schedule and early stopping are the run's, not the model's
    (``experiments.run.plateau``). ``sparse_embeddings`` gives id tables sparse gradients: a step
    then updates only the rows its batch read (see ``models.optim.LazyAdam``).

    Initialisation: each layer's own (see the model's docstring), unless ``init`` says otherwise;
    ``reset_parameters()`` applies it (``models.init``).
    """

    def __init__(self, schema: Schema, *, optim: Union[OptimSpec, Mapping], init: Optional[Mapping] = None):
        super().__init__()
        if not isinstance(schema, Schema):
            raise TypeError(f"schema must be a datamodules.schema.Schema, got {type(schema).__name__}")
        self.optim = OptimSpec.of(optim)
        check_init(init)
        self.save_hyperparameters(ignore=["schema"])
        # checkpoints keep plain values, loadable without our classes: each spec (optim, MLP, ...) as a dict
        for key, value in self.hparams.items():
            if isinstance(value, Spec):
                self.hparams[key] = value.to_dict()
        self.schema = schema
        self.sparse_embeddings = self.optim.sparse_embeddings
        self._split_outputs: dict[str, Optional[PredictionBuffer]] = {"val": None, "test": None}
        # the last test pass: its click probabilities and labels ([N] each, split order), its seconds
        self.test_predictions: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self.test_seconds: Optional[float] = None

    def training_settings(self) -> dict:
        """This model's ``optim`` and ``init``, to build a sibling model trained the same way."""
        return {"optim": self.optim, "init": self.hparams.init}

    # -- shared layers built the configured way ---------------------------------------------
    def feature_embedding(self, dim: int, init_std: float, dense: bool = True) -> FeatureEmbedding:
        """A ``[B, F, dim]`` embedding of this schema's fields; without ``dense``, of its sparse and
        multi-valued fields alone (``[B, S + M, dim]``), for a model that reads the dense values itself."""
        schema = self.schema if dense else Schema(tuple(f for f in self.schema.fields if not f.dense))
        return FeatureEmbedding(schema, dim, init_std=init_std, sparse=self.sparse_embeddings)

    def linear_logit(self, bias: bool = True) -> LinearLogit:
        """The first-order part ``w0 + sum of weights`` (``w0`` only with ``bias``), ``[B]``."""
        return LinearLogit(self.schema, sparse=self.sparse_embeddings, bias=bias)

    # -- objective -------------------------------------------------------------------------
    def id_tables(self) -> list[IdTable]:
        return [m for m in self.modules() if isinstance(m, IdTable)]

    def id_table_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the id tables (their rows and the dense fields' vectors)."""
        return [p for table in self.id_tables() for p in table.parameters()]

    def network_weights(self) -> list[nn.Parameter]:
        excluded = {id(p) for m in self.modules() if isinstance(m, (IdTable, *_NORM_LAYERS)) for p in m.parameters()}
        return [p for name, p in self.named_parameters() if id(p) not in excluded and name.rsplit(".", 1)[-1] != "bias"]

    def non_table_parameters(self) -> list[nn.Parameter]:
        """Every parameter outside the id tables, biases and normalisation layers included."""
        tables = {id(p) for p in self.id_table_parameters()}
        return [p for p in self.parameters() if id(p) not in tables]

    def penalty(self, batch: Batch) -> torch.Tensor:
        """The L2 terms of the objective: ``[]`` scalar (a zero tensor when all are off)."""
        total = torch.zeros((), device=batch.y.device)
        hp = self.optim
        if hp.embedding_l2:
            total = total + hp.embedding_l2 * sum(t.squared_norm(batch) for t in self.id_tables())
        if hp.weight_l2:
            total = total + hp.weight_l2 * sum(p.pow(2).sum() for p in self.network_weights())
        if hp.embedding_table_l2:
            total = total + hp.embedding_table_l2 / 2 * sum(p.pow(2).sum() for p in self.id_table_parameters())
        if hp.net_l2:
            total = total + hp.net_l2 / 2 * sum(p.pow(2).sum() for p in self.non_table_parameters())
        return total

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(objective, mean BCE)`` of one batch, both ``[]``."""
        data_loss = F.binary_cross_entropy_with_logits(self(batch), batch.y)
        return data_loss + self.penalty(batch), data_loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, data_loss = self.losses(batch)
        self.log("train/loss", loss, batch_size=batch.size)
        self.log("train/logloss", data_loss, batch_size=batch.size)
        return loss

    # -- whole-split metrics ---------------------------------------------------------------
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._keep_predictions("val", batch)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._keep_predictions("test", batch)

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Click probabilities ``[B]``."""
        return torch.sigmoid(self(batch))

    def on_validation_epoch_start(self) -> None:
        self._split_outputs["val"] = None

    def on_test_epoch_start(self) -> None:
        self._split_outputs["test"] = None
        self._test_started = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        self._log_split_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.test_seconds = time.perf_counter() - self._test_started  # forward passes only, not the metrics
        self._log_split_metrics("test")

    def _keep_predictions(self, split: str, batch: Batch) -> None:
        logits = self(batch).detach()  # kept on the device: no host sync per step
        if self._split_outputs[split] is None:
            self._split_outputs[split] = PredictionBuffer(
                self._rows_this_rank_scores(split), logits.dtype, logits.device
            )
        self._split_outputs[split].add(logits, batch.y.detach())

    def _log_split_metrics(self, split: str) -> None:
        outputs, self._split_outputs[split] = self._split_outputs[split], None
        if outputs is None:
            return
        logits, labels = outputs.values()
        if self.trainer.world_size > 1:
            logits, labels = self._gather_split(split, logits), self._gather_split(split, labels)
        probabilities = torch.sigmoid(logits.double()).cpu()
        labels = labels.cpu()
        if split == "test":
            self.test_predictions = (probabilities.float(), labels)
        # Every rank scores the same gathered split, so the values are already equal on all ranks:
        # no sync_dist (averaging equal numbers would only cost a collective per metric).
        split_auc, split_logloss = auc(labels, probabilities), logloss(labels, probabilities)
        self.log(f"{split}/auc", split_auc, prog_bar=True)
        self.log(f"{split}/logloss", split_logloss, prog_bar=True)
        if split == "val":  # the objective BARS's Criteo_x4 runs select epochs by
            self.log("val/auc_minus_logloss", split_auc - split_logloss)

    def _rows_this_rank_scores(self, split: str) -> Optional[int]:
        real_rows = self._real_rows_per_rank(split)
        return None if real_rows is None else max(real_rows)  # the padded block length

    def _gather_split(self, split: str, values: torch.Tensor) -> torch.Tensor:
        """This rank's ``[L]`` predictions or labels -> the whole split's, in stored order.

        ``all_gather`` stacks the ranks' equal-length blocks rank by rank (``[world_size, L]``);
        each rank's block holds its contiguous run of rows and then padding, which is dropped.
        ``L`` can be shorter than a block (``limit_val_batches``, the sanity check): then each
        rank keeps the real rows among its first ``L``.
        """
        gathered = self.all_gather(values)
        real_rows = self._real_rows_per_rank(split)
        if real_rows is None:
            return gathered.flatten()
        length = gathered.shape[1]
        keep = torch.arange(length, device=gathered.device) < torch.tensor(real_rows, device=gathered.device)[:, None]
        return gathered[keep]

    def _real_rows_per_rank(self, split: str) -> Optional[list[int]]:
        """Unpadded rows of each rank's evaluation block, from the split size the datamodule
        reports; None without such a datamodule (its loaders must then shard without padding)."""
        num_rows = getattr(self.trainer.datamodule, "num_rows", None)
        if num_rows is None:
            return None
        return eval_block_rows(num_rows(split), self.trainer.world_size)

    # -- optimisation ----------------------------------------------------------------------
    def build_optimizer(self, params=None) -> torch.optim.Optimizer:
        """The configured optimiser over ``params`` (default: all of this model's parameters)."""
        return self.optim.build(self.parameters() if params is None else params)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.build_optimizer()

    def reset_parameters(self) -> None:
        """Draw the parameters again as ``init`` says; nothing when it says nothing (each layer
        keeps the values it was built with)."""
        initialize(self, self.id_tables(), **(self.hparams.init or {}))

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """The Trainer's ``gradient_clip_val`` / ``gradient_clip_algorithm``, also for sparse
        gradients, which torch's clipping functions reject: their coalesced values are clipped."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_val is None or not any(p.grad.is_sparse for p in params):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for p in params:
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
        values = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]
        if gradient_clip_algorithm == "value":
            for v in values:
                v.clamp_(-gradient_clip_val, gradient_clip_val)
            return
        total_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v) for v in values]))
        scale = (gradient_clip_val / (total_norm + 1e-6)).clamp(max=1.0)
        for v in values:
            v.mul_(scale)

    # -- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["schema"] = self.schema.to_json()
        checkpoint["model_class"] = f"{type(self).__module__}:{type(self).__qualname__}"

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location=None) -> "CTRModule":
        """Load a model saved by Lightning, rebuilt from the schema stored in the checkpoint; called on
        ``CTRModule`` itself, as the class the checkpoint names (a subclass of the class called on)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if "schema" not in checkpoint:
            raise ValueError(f"{path}: no schema in this checkpoint (not written by a CTRModule)")
        saved = checkpoint.get("model_class")
        if saved is not None:
            module, name = saved.split(":")
            saved_cls = getattr(importlib.import_module(module), name)
            if not issubclass(saved_cls, cls):
                raise ValueError(f"{path}: holds a {saved_cls.__name__}, not a {cls.__name__}")
            cls = saved_cls
        schema = Schema.from_json(checkpoint["schema"])
        return cls.load_from_checkpoint(path, map_location=map_location, schema=schema)


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """The batch with every tensor on ``device``."""
    return Batch(*(None if t is None else t.to(device, non_blocking=True) for t in batch))
