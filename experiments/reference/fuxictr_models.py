"""The reference side: FuxiCTR's models composed from its installed layers and ``BaseModel``.

FuxiCTR's PyPI wheel ships its layers and training loop but not its model zoo, so each model is
written here from FuxiCTR's definitions (its model_zoo's structure: which layers, in which order,
which biases), over FuxiCTR's own ``FeatureEmbedding``, ``LogisticRegression``,
``FactorizationMachine``, ``InnerProductInteraction``, ``MLP_Block``, ``CrossNet`` and
``CompressedInteractionNet``, trained by FuxiCTR's ``BaseModel`` (its loss on probabilities, its
regularisers, gradient clipping, learning-rate decay, early stopping and best-weights restore).
Needs ``pip install -e ".[reference]"``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import torch
from fuxictr.features import FeatureMap
from fuxictr.pytorch.layers import (
    CompressedInteractionNet,
    CrossNet,
    FactorizationMachine,
    FeatureEmbedding,
    InnerProductInteraction,
    LogisticRegression,
    MLP_Block,
)
from fuxictr.pytorch.models import BaseModel
from torch import nn


def feature_map(
    vocab_sizes: Sequence[int],
    embedding_dim: int,
    names: Sequence[str] | None = None,
    sequences: Mapping[str, int] | None = None,
) -> FeatureMap:
    """A FuxiCTR ``FeatureMap`` of categorical fields as its preprocessing writes them: local id 0
    is the padding row (never read), ``vocab_size`` ids per field. ``sequences``: the fields that
    are sequence features, with their ``max_len``, mean-pooled (its preprocessing's default encoder)."""
    names = list(names or (f"f{i}" for i in range(len(vocab_sizes))))
    sequences = dict(sequences or {})
    fmap = FeatureMap("reference", "")
    fmap.features = OrderedDict(
        (name, {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": int(v)})
        for name, v in zip(names, vocab_sizes)
    )
    for name, max_len in sequences.items():
        fmap.features[name].update(
            {"type": "sequence", "max_len": int(max_len), "feature_encoder": "layers.MaskedAveragePooling()"}
        )
    fmap.labels = ["label"]
    fmap.num_fields = fmap.get_num_fields()
    fmap.default_emb_dim = embedding_dim
    fmap.set_column_index()
    return fmap


def regularizer(value: float):
    """FuxiCTR reads a float as an L2 weight and ignores None (not 0.0: that still builds the term)."""
    return float(value) if value else None


class _Reference(BaseModel):
    """What every reference model shares: BaseModel's settings, then build, compile, reset."""

    def __init__(
        self,
        fmap: FeatureMap,
        *,
        embedding_regularizer: float,
        net_regularizer: float,
        monitor,
        early_stop_patience: int,
        model_root: str | Path,
        learning_rate: float = 1e-3,
    ):
        super().__init__(
            fmap,
            model_id=type(self).__name__,
            gpu=-1,
            monitor=monitor,
            monitor_mode="max",
            early_stop_patience=early_stop_patience,
            embedding_regularizer=regularizer(embedding_regularizer),
            net_regularizer=regularizer(net_regularizer),
            verbose=0,
            model_root=str(model_root),
            metrics=["AUC", "logloss"],
        )
        Path(self.checkpoint).parent.mkdir(parents=True, exist_ok=True)
        self.learning_rate = learning_rate

    def finish(self) -> "_Reference":
        self.compile("adam", "binary_crossentropy", self.learning_rate)
        self.reset_parameters()
        self.model_to_device()
        return self

    def logit(self, X: dict) -> torch.Tensor:
        raise NotImplementedError

    def get_labels(self, inputs: dict) -> torch.Tensor:
        """FuxiCTR's labels in the parameters' precision (it casts them to float32), so that the
        step-by-step comparison can also run in float64."""
        return super().get_labels(inputs).to(next(self.parameters()).dtype)

    def forward(self, inputs: dict) -> dict:
        return {"y_pred": self.output_activation(self.logit(self.get_inputs(inputs)))}


def _mlp(input_dim: int, hidden_units, activation: str, dropout: float, batch_norm: bool, output_dim=1) -> MLP_Block:
    return MLP_Block(
        input_dim=input_dim,
        output_dim=output_dim,
        hidden_units=list(hidden_units),
        hidden_activations=activation,
        output_activation=None,
        dropout_rates=dropout,
        batch_norm=batch_norm,
    )


class LR(_Reference):
    """sigma(sum_f w_f[x_f] + b)."""

    def __init__(self, fmap, **base):
        super().__init__(fmap, **base)
        self.lr_layer = LogisticRegression(fmap, use_bias=True)
        self.finish()

    def logit(self, X):
        return self.lr_layer(X)


class FM(_Reference):
    """LR (its own 1-d table and bias) + the pairwise inner products of the embeddings."""

    def __init__(self, fmap, *, embedding_dim: int, **base):
        super().__init__(fmap, **base)
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.fm = FactorizationMachine(fmap)
        self.finish()

    def logit(self, X):
        return self.fm(X, self.embedding_layer(X))


class FFM(_Reference):
    """LR + sum_{i<j} <v_{i, j}, v_{j, i}>, field f's vector for partner g kept in table
    ``g`` when ``g < f`` and ``g - 1`` when ``g > f`` (F - 1 tables)."""

    def __init__(self, fmap, *, embedding_dim: int, **base):
        super().__init__(fmap, **base)
        self.num_fields = fmap.num_fields
        self.lr_layer = LogisticRegression(fmap, use_bias=True)
        self.embedding_layers = nn.ModuleList(FeatureEmbedding(fmap, embedding_dim) for _ in range(self.num_fields - 1))
        self.finish()

    def logit(self, X):
        tables = [layer(X) for layer in self.embedding_layers]  # each [B, F, K]
        total = self.lr_layer(X)
        for i in range(self.num_fields - 1):
            for j in range(i + 1, self.num_fields):
                total = total + (tables[j - 1][:, i] * tables[i][:, j]).sum(dim=1, keepdim=True)
        return total


class DNN(_Reference):
    """An MLP over the concatenated embeddings."""

    def __init__(self, fmap, *, embedding_dim: int, hidden_units, activation, dropout, batch_norm, **base):
        super().__init__(fmap, **base)
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.mlp = _mlp(fmap.sum_emb_out_dim(), hidden_units, activation, dropout, batch_norm)
        self.finish()

    def logit(self, X):
        return self.mlp(self.embedding_layer(X, flatten_emb=True))


class DeepFM(_Reference):
    """FM (with its LR's bias) + an MLP over the same embeddings (with its output bias)."""

    def __init__(self, fmap, *, embedding_dim: int, hidden_units, activation, dropout, batch_norm, **base):
        super().__init__(fmap, **base)
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.fm = FactorizationMachine(fmap)
        self.mlp = _mlp(fmap.sum_emb_out_dim(), hidden_units, activation, dropout, batch_norm)
        self.finish()

    def logit(self, X):
        embedded = self.embedding_layer(X)
        return self.fm(X, embedded) + self.mlp(embedded.flatten(start_dim=1))


class WideDeep(_Reference):
    """LR without bias (its own 1-d table) + an MLP over the embeddings: no crosses."""

    def __init__(self, fmap, *, embedding_dim: int, hidden_units, activation, dropout, batch_norm, **base):
        super().__init__(fmap, **base)
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.lr_layer = LogisticRegression(fmap, use_bias=False)
        self.mlp = _mlp(fmap.sum_emb_out_dim(), hidden_units, activation, dropout, batch_norm)
        self.finish()

    def logit(self, X):
        return self.lr_layer(X) + self.mlp(self.embedding_layer(X, flatten_emb=True))


class IPNN(_Reference):
    """An MLP over [the embeddings, their pairwise inner products (i < j, row-major)]."""

    def __init__(self, fmap, *, embedding_dim: int, hidden_units, activation, dropout, batch_norm, **base):
        super().__init__(fmap, **base)
        fields = fmap.num_fields
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.inner_product_layer = InnerProductInteraction(fields, output="inner_product")
        self.dnn = _mlp(
            fields * (fields - 1) // 2 + fields * embedding_dim, hidden_units, activation, dropout, batch_norm
        )
        self.finish()

    def logit(self, X):
        embedded = self.embedding_layer(X)
        return self.dnn(torch.cat([embedded.flatten(start_dim=1), self.inner_product_layer(embedded)], dim=1))


class DCN(_Reference):
    """A linear head over [CrossNet(x0), MLP(x0)], x0 the concatenated embeddings."""

    def __init__(
        self, fmap, *, embedding_dim: int, hidden_units, activation, dropout, batch_norm, cross_layers: int, **base
    ):
        super().__init__(fmap, **base)
        width = fmap.sum_emb_out_dim()
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.dnn = _mlp(width, hidden_units, activation, dropout, batch_norm, output_dim=None)
        self.crossnet = CrossNet(width, cross_layers)
        self.fc = nn.Linear(width + list(hidden_units)[-1], 1)
        self.finish()

    def logit(self, X):
        x0 = self.embedding_layer(X, flatten_emb=True)
        return self.fc(torch.cat([self.crossnet(x0), self.dnn(x0)], dim=-1))


class XDeepFM(_Reference):
    """LR without bias + CIN (its own output layer, with bias) + an MLP, on shared embeddings."""

    def __init__(
        self, fmap, *, embedding_dim: int, hidden_units, activation, dropout, batch_norm, cin_layer_sizes, **base
    ):
        super().__init__(fmap, **base)
        self.embedding_layer = FeatureEmbedding(fmap, embedding_dim)
        self.dnn = _mlp(fmap.sum_emb_out_dim(), hidden_units, activation, dropout, batch_norm)
        self.lr_layer = LogisticRegression(fmap, use_bias=False)
        self.cin = CompressedInteractionNet(fmap.num_fields, list(cin_layer_sizes), output_dim=1)
        self.finish()

    def logit(self, X):
        embedded = self.embedding_layer(X)
        return self.lr_layer(X) + self.cin(embedded) + self.dnn(embedded.flatten(start_dim=1))


# ctr-bench's model names -> the reference class.
REFERENCE_MODELS = {
    "lr": LR,
    "fm": FM,
    "ffm": FFM,
    "dnn": DNN,
    "deepfm": DeepFM,
    "lr_dnn": WideDeep,
    "ipnn": IPNN,
    "dcn": DCN,
    "xdeepfm": XDeepFM,
}
