"""FNN: a DNN whose input layer is a pre-trained FM's embeddings."""

from __future__ import annotations

import logging
import warnings
from typing import Iterable, Optional

import torch

from datamodules.schema import Batch, Schema
from models.base import CTRModule, batch_to
from models.layers import MLPSpec
from models.shallow import FM

log = logging.getLogger(__name__)


class FNN(CTRModule):
    """Factorisation-machine supported neural network (Zhang, Du & Wang 2016), two stages.

    ``y = MLP([w_1, v_1, ..., w_F, v_F])`` where ``(w_i, v_i)`` are the first-order weight and the
    latent vector of field ``i``'s feature, both copied from an FM trained first on the same
    training split, then fine-tuned with the DNN.

    Stage one runs in ``on_fit_start`` (once: a resumed fit keeps its weights): load the FM at
    ``fm_checkpoint`` if given, else train a fresh FM for ``pretrain_epochs`` over the
    datamodule's training loader with this model's optimiser settings (plain loop, no clipping).
    Our choices: the FM's global bias ``w0`` is dropped (a constant input is the first layer's
    bias); ``pretrain_epochs`` 1; under DDP stage one needs ``fm_checkpoint`` (ranks would
    otherwise pre-train different FMs).
    """

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int,
        embedding_init_std: float,
        mlp: MLPSpec,
        pretrain_epochs: int,
        fm_checkpoint: Optional[str] = None,
        **training,
    ):
        super().__init__(schema, **training)
        self.embedding = self.feature_embedding(embedding_dim, embedding_init_std)
        self.first_order = self.feature_embedding(1, 0.0)
        self.dnn = MLPSpec.of(mlp).build(schema.num_fields * (embedding_dim + 1))
        self.register_buffer("fm_initialised", torch.tensor(False))

    def forward(self, batch: Batch) -> torch.Tensor:
        inputs = torch.cat([self.first_order(batch), self.embedding(batch)], dim=2)  # [B, F, 1+K]
        return self.dnn(inputs.flatten(1)).squeeze(1)

    def on_fit_start(self) -> None:
        if bool(self.fm_initialised):
            return
        if self.hparams.fm_checkpoint:
            fm = FM.from_checkpoint(self.hparams.fm_checkpoint, map_location=self.device)
            log.info("FNN stage one: the FM of %s", self.hparams.fm_checkpoint)
        elif self.hparams.pretrain_epochs > 0:
            if self.trainer.world_size > 1:
                raise RuntimeError("FNN under DDP: pre-train the FM once and pass fm_checkpoint")
            if self.trainer.datamodule is None:
                raise RuntimeError(
                    "FNN pre-trains its FM on trainer.datamodule's training split: "
                    "fit with datamodule=..., or pass fm_checkpoint"
                )
            fm = self.pretrain_fm(self.trainer.datamodule.train_dataloader(), self.hparams.pretrain_epochs)
        else:
            warnings.warn(
                "FNN with pretrain_epochs=0 and no fm_checkpoint: its embeddings are not "
                "FM-initialised, so this is a plain DNN over [w_i, v_i]",
                stacklevel=2,
            )
            return
        self.load_fm(fm)

    def pretrain_fm(self, dataloader: Iterable[Batch], epochs: int) -> FM:
        """Train a fresh FM of this model's embedding size for ``epochs`` over ``dataloader``."""
        fm = FM(
            self.schema,
            embedding_dim=self.hparams.embedding_dim,
            embedding_init_std=self.hparams.embedding_init_std,
            **self.training_settings(),
        )
        fm = fm.to(self.device).train()
        optimizer = fm.build_optimizer()
        with torch.enable_grad():
            for epoch in range(epochs):
                loss_sum, rows = torch.zeros((), device=self.device), 0
                for batch in dataloader:
                    batch = batch_to(batch, self.device)
                    loss, data_loss = fm.losses(batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += data_loss.detach() * batch.size
                    rows += batch.size
                log.info(
                    "FNN stage one: FM epoch %d/%d, train logloss %.5f",
                    epoch + 1,
                    epochs,
                    loss_sum.item() / max(rows, 1),
                )
        return fm

    @torch.no_grad()
    def load_fm(self, fm: FM) -> None:
        """Copy ``fm``'s latent vectors and first-order weights into this model's input layer."""
        if not isinstance(fm, FM):
            raise TypeError(f"FNN is initialised from an FM, got {type(fm).__name__}")
        if fm.schema != self.schema:
            raise ValueError("the FM was trained on a different schema than this FNN's")
        if fm.embedding.dim != self.embedding.dim:
            raise ValueError(f"the FM's embedding size {fm.embedding.dim} differs from the FNN's {self.embedding.dim}")
        self.embedding.load_state_dict(fm.embedding.state_dict())
        self.first_order.load_state_dict(fm.linear.weights.state_dict())
        self.fm_initialised.fill_(True)

    pretrain_from = load_fm
