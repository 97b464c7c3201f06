"""CrossNet and CIN against FuxiCTR's ``DCN`` and ``xDeepFM`` without their DNNs (the classes and
settings of BARS's CrossNet_frappe_x1 and CIN_frappe_x1 runs), HFM and HFM+ against its ``HFM``
without and with ``use_dnn``, DSSM against its ``DSSM`` (see ``experiments.reference.zoo``; DSSM's
``known_gap`` says why its steps at the preset are not FuxiCTR's)."""

from __future__ import annotations

from types import SimpleNamespace

from omegaconf import DictConfig

from experiments.reference.weights import copy_cin, copy_linear, copy_tables
from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, mlp_settings, saturated_loss


def crossnet_settings(model: DictConfig) -> dict:
    """An empty ``dnn_hidden_units``: the zoo's DCN builds no DNN and its head reads ``x_L`` alone."""
    return {"num_cross_layers": model.cross_layers, "dnn_hidden_units": []}


def copy_crossnet(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    for index, layer in enumerate(theirs.crossnet.cross_net):
        ours.cross.weight[index] = layer.weight.weight[0]
        ours.cross.bias[index] = layer.bias
    copy_state(ours.head, theirs.fc)


def cin_settings(model: DictConfig) -> dict:
    """FuxiCTR's CIN feeds every map forward and pools it, through biased 1x1 convolutions."""
    if model.cin_split_half or not model.cin_bias:
        raise ValueError(
            "FuxiCTR's CIN has no split_half and always a bias per map (cin_split_half: false, cin_bias: true)"
        )
    return {"cin_hidden_units": list(model.cin_layer_sizes), "dnn_hidden_units": []}


def copy_cin_net(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    ours.linear.bias.copy_(theirs.cin.fc.bias)  # the model's w0: FuxiCTR's sits in the CIN's head
    copy_cin(ours.cin, theirs.cin, ours.schema.num_fields)
    ours.cin_head.weight.copy_(theirs.cin.fc.weight)


def hfm_settings(model: DictConfig) -> dict:
    settings = {"interaction_type": model.interaction, "use_dnn": "mlp" in model}
    if "mlp" in model:
        settings.update(mlp_settings(model.mlp, ""))
        settings["net_dropout"] = settings.pop("dropout")
    return settings


def copy_hfm(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    if hasattr(ours, "dnn"):
        copy_state(ours.dnn, theirs.dnn)
    else:
        copy_state(ours.projection, theirs.proj_h)


def dssm_settings(model: DictConfig) -> dict:
    """One batch-norm switch for both towers; each tower's last width is FuxiCTR's last tower unit."""
    user, item = model.user_tower, model.item_tower
    if user.batch_norm != item.batch_norm:
        raise ValueError("FuxiCTR's DSSM takes one batch_norm for both towers")
    return {
        "user_tower_units": [*user.hidden_units, model.tower_dim],
        "item_tower_units": [*item.hidden_units, model.tower_dim],
        "user_tower_activations": user.activation,
        "item_tower_activations": item.activation,
        "user_tower_dropout": user.dropout,
        "item_tower_dropout": item.dropout,
        "batch_norm": user.batch_norm,
    }


def dssm_sources(fmap, model: DictConfig) -> None:
    """FuxiCTR's DSSM reads its towers from each feature's source: the item fields' ``item``, the
    others' ``user`` (with none named, the last field is the item tower, as in ours)."""
    names = list(fmap.features)
    items = set(model.item_fields) if model.item_fields is not None else {names[-1]}
    for name, spec in fmap.features.items():
        spec["source"] = "item" if name in items else "user"


def copy_dssm(ours, theirs) -> None:
    # the zoo's DSSM holds the per-field tables directly (a FeatureEmbeddingDict), not inside a FeatureEmbedding
    copy_tables(ours.embedding.table.weight, SimpleNamespace(embedding_layer=theirs.embedding_layer), ours.schema)
    copy_state(ours.user_tower, theirs.user_tower)
    copy_state(ours.item_tower, theirs.item_tower)


MODELS = {
    "crossnet": ZooModel("DCN", crossnet_settings, copy_crossnet),
    "cin": ZooModel("xDeepFM", cin_settings, copy_cin_net),
    "hfm": ZooModel("HFM", hfm_settings, copy_hfm),
    "hfm_plus": ZooModel("HFM", hfm_settings, copy_hfm),
    "dssm": ZooModel(
        "DSSM",
        dssm_settings,
        copy_dssm,
        prepare=dssm_sources,
        known_gap=saturated_loss("DSSM's towers' inner products start that large on a few examples"),
    ),
}
