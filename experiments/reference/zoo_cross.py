"""DCN-V2 and CrossNet-V2 against FuxiCTR's ``DCNv2``, EDCN against its ``EDCN`` (see
``experiments.reference.zoo``)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, same


def dcn_v2_settings(model: DictConfig) -> dict:
    """One activation, dropout and batch norm for both of FuxiCTR's MLPs."""
    structure = model.get("structure", "crossnet_only")
    mlps = [model[key] for key, part in (("mlp", "parallel"), ("stacked_mlp", "stacked")) if part in structure]
    settings = {
        "model_structure": structure,
        "use_low_rank_mixture": model.cross.low_rank is not None,
        "low_rank": model.cross.low_rank,
        "num_experts": model.cross.num_experts,
        "num_cross_layers": model.cross.layers,
    }
    if mlps:
        settings.update(
            dnn_activations=same("MLP activation", *(m.activation for m in mlps)),
            net_dropout=same("MLP dropout", *(m.dropout for m in mlps)),
            batch_norm=same("MLP batch norm", *(m.batch_norm for m in mlps)),
        )
    if "parallel" in structure:
        settings["parallel_dnn_hidden_units"] = list(model.mlp.hidden_units)
    if "stacked" in structure:
        settings["stacked_dnn_hidden_units"] = list(model.stacked_mlp.hidden_units)
    return settings


def copy_dcn_v2(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_state(ours.cross, theirs.crossnet)
    for mine, other in ((ours.stacked, "stacked_dnn"), (ours.dnn, "parallel_dnn")):
        if mine is not None:
            copy_state(mine, getattr(theirs, other))
    copy_state(ours.head, theirs.fc)


def edcn_settings(model: DictConfig) -> dict:
    towers = model.towers
    if not towers.regulation:
        raise ValueError("FuxiCTR's EDCN always gates both towers (towers.regulation: true)")
    return {
        "num_cross_layers": towers.layers,
        "hidden_activations": towers.activation,
        "bridge_type": towers.bridge,
        "temperature": towers.temperature,
        "net_dropout": towers.dropout,
        "batch_norm": towers.batch_norm,
    }


def copy_edcn(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    towers = ours.towers
    for index, layer in enumerate(theirs.cross_layers):
        towers.cross.weight[index] = layer.weight.weight[0]
        towers.cross.bias[index] = layer.bias
    for mine, other in zip(towers.deep, theirs.dense_layers):
        copy_state(mine, other)
    for mine, other in zip(towers.bridges, theirs.bridge_modules):
        copy_state(mine, other)
    for mine, other in zip(towers.regulations, theirs.regulation_modules):
        mine.weight[0], mine.weight[1] = other.g1, other.g2
        if mine.norms is not None:
            copy_state(mine.norms[0], other.bn1)
            copy_state(mine.norms[1], other.bn2)
    copy_state(ours.head, theirs.fc)


def restore_edcn_cross_residual(theirs, model: DictConfig) -> None:
    """Each cross layer adds its input back, ``x_l = x_0 (x'_{l-1} . w_l) + b_l + x'_{l-1}``, as
    in the paper, in FuxiCTR 1.2.2 (whose release added it; BARS's EDCN runs) and in ctr-bench;
    the zoo's EDCN of FuxiCTR 2.x calls the cross layer without it."""
    for layer in theirs.cross_layers:
        layer.forward = lambda x0, x, forward=layer.forward: x + forward(x0, x)


MODELS = {
    "dcn_v2": ZooModel("DCNv2", dcn_v2_settings, copy_dcn_v2),
    "crossnet_v2": ZooModel("DCNv2", dcn_v2_settings, copy_dcn_v2),
    "edcn": ZooModel("EDCN", edcn_settings, copy_edcn, restore_edcn_cross_residual),
}
