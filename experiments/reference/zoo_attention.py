"""AutoInt and AutoInt+ against FuxiCTR's ``AutoInt``, DESTINE against its ``DESTINE`` (see
``experiments.reference.zoo``)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.reference.weights import copy_linear
from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, same


def dnn_settings(model: DictConfig) -> dict:
    """The zoo classes' DNN beside the attention, none without ``mlp`` (its dropout: the caller's)."""
    mlp = model.get("mlp")
    if mlp is None:
        return {"dnn_hidden_units": []}
    return {"dnn_hidden_units": list(mlp.hidden_units), "dnn_activations": mlp.activation, "batch_norm": mlp.batch_norm}


def autoint_settings(model: DictConfig) -> dict:
    """AutoInt's one dropout rate drops both attention weights and DNN units."""
    attention = model.attention
    dropouts = [attention.dropout] + ([model.mlp.dropout] if model.get("mlp") is not None else [])
    return {
        "attention_layers": attention.layers,
        "attention_dim": attention.dim,
        "num_heads": attention.heads,
        "use_residual": attention.residual,
        "use_scale": attention.scale,
        "layer_norm": attention.layer_norm,
        "use_wide": model.wide,
        "net_dropout": same("dropout", *dropouts),
        **dnn_settings(model),
    }


def destine_settings(model: DictConfig) -> dict:
    attention = model.attention
    if attention.heads != 1:
        # its reshape to [B * H, F, d] deals fields' values to the heads; ours splits each field's vector
        raise ValueError(f"FuxiCTR's DESTINE splits {attention.heads} heads otherwise than ours (alike at one)")
    settings = {
        "attention_layers": attention.layers,
        "attention_dim": attention.dim,
        "num_heads": attention.heads,
        "residual_mode": attention.residual,
        "use_scale": attention.scale,
        "relu_before_att": attention.relu_before,
        "att_dropout": attention.dropout,
        "use_wide": model.wide,
        **dnn_settings(model),
    }
    if model.get("mlp") is not None:
        settings["net_dropout"] = model.mlp.dropout
    return settings


def copy_autoint(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_state(ours.attention, theirs.self_attention)
    copy_state(ours.head, theirs.fc)
    if ours.linear is not None:
        copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    if getattr(ours, "dnn", None) is not None:
        copy_state(ours.dnn, theirs.dnn)


def copy_map(mine, other) -> None:
    """A linear map; where ours has no bias, theirs' is one that cannot change a prediction (the
    centring over fields or the softmax over fields takes it out): zeroed, so that both start from
    the same numbers and not merely the same function."""
    mine.weight.copy_(other.weight)
    if mine.bias is not None:
        mine.bias.copy_(other.bias)
    else:
        other.bias.zero_()


def copy_destine(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    for mine, other in zip(ours.attention.layers, theirs.self_attns, strict=True):
        pairs = [(mine.query, other.W_q), (mine.key, other.W_k), (mine.value, other.W_v), (mine.unary, other.W_unary)]
        for a, b in pairs + ([(mine.project, other.W_res)] if mine.project is not None else []):
            copy_map(a, b)
    if ours.attention.project is not None:
        copy_state(ours.attention.project, theirs.W_res)
    copy_state(ours.head, theirs.attn_fc)
    if ours.dnn is not None:
        copy_state(ours.dnn, theirs.dnn)
    if ours.linear is not None:
        copy_linear(ours.linear, theirs.lr, ours.schema)


MODELS = {
    "autoint": ZooModel("AutoInt", autoint_settings, copy_autoint),
    "autoint_plus": ZooModel("AutoInt", autoint_settings, copy_autoint),
    "destine": ZooModel("DESTINE", destine_settings, copy_destine),
}
