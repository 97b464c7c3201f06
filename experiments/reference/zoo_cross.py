"""DCN-V2 and CrossNet-V2 against FuxiCTR's ``DCNv2`` (see ``experiments.reference.zoo``)."""

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


MODELS = {
    "dcn_v2": ZooModel("DCNv2", dcn_v2_settings, copy_dcn_v2),
    "crossnet_v2": ZooModel("DCNv2", dcn_v2_settings, copy_dcn_v2),
}
