"""NFM, AFM, FwFM, FmFM and HOFM against FuxiCTR's zoo classes of the same names (see
``experiments.reference.zoo``)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.reference.weights import copy_linear, copy_tables
from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, mlp_settings


def nfm_settings(model: DictConfig) -> dict:
    settings = mlp_settings(model.mlp, "")
    settings["net_dropout"] = settings.pop("dropout")
    return settings


def copy_nfm(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    copy_state(ours.dnn, theirs.dnn)


def afm_settings(model: DictConfig) -> dict:
    """Our one dropout rate for both of FuxiCTR's (the attention weights and the pooled vector)."""
    return {"attention_dim": model.attention_dim, "attention_dropout": [model.dropout] * 2, "use_attention": True}


def copy_afm(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    copy_state(ours.pooling.hidden, theirs.attention[0])
    copy_state(ours.pooling.score, theirs.attention[2])
    copy_state(ours.projection, theirs.weight_p)


def fwfm_settings(model: DictConfig) -> dict:
    return {"linear_type": model.linear_type}


def copy_fwfm(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_state(ours.pair_weights, theirs.interaction_weight)
    if ours.linear_type == "LW":  # a table of one weight per id, no bias (the pair weights' is w0)
        copy_tables(ours.linear.weights.table.weight, theirs.linear_weight_layer, ours.schema)
    elif ours.linear_type == "FeLV":
        copy_tables(ours.linear.table.weight, theirs.linear_weight_layer, ours.schema)
    else:
        copy_state(ours.linear, theirs.linear_weight_layer)


def fmfm_settings(model: DictConfig) -> dict:
    return {"field_interaction_type": model.form}


def copy_fmfm(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    ours.interaction.weight.copy_(theirs.interaction_weight)


def hofm_settings(model: DictConfig) -> dict:
    return {"order": model.order, "reuse_embedding": model.reuse_embedding}


def copy_hofm(ours, theirs) -> None:
    """One table per order from 2 up (or FuxiCTR's one ``embedding_layer`` when shared)."""
    tables = [theirs.embedding_layer] if theirs.reuse_embedding else theirs.embedding_layers
    for mine, other in zip(ours.embeddings, tables, strict=True):
        copy_tables(mine.table.weight, other, ours.schema)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)


MODELS = {
    "nfm": ZooModel("NFM", nfm_settings, copy_nfm),
    "afm": ZooModel("AFM", afm_settings, copy_afm),
    "fwfm": ZooModel("FwFM", fwfm_settings, copy_fwfm),
    "fmfm": ZooModel("FmFM", fmfm_settings, copy_fmfm),
    "hofm": ZooModel("HOFM", hofm_settings, copy_hofm),
}
