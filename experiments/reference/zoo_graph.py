"""FiGNN, AFN, AFN+ and SAM against FuxiCTR's zoo classes FiGNN, AFN (AFN+ is its ``ensemble_dnn``)
and SAM (see ``experiments.reference.zoo``)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.reference.weights import copy_tables
from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, same, saturated_loss

# the floor of FuxiCTR's logarithm, fixed in its code
FUXICTR_LOG_FLOOR = 1e-5
AFN_GAP = saturated_loss(
    "AFN's first Adam steps overshoot to such logits (the loss rises several-fold before it falls), and its "
    "exponentials then amplify rounding in either library (FuxiCTR against itself, rows reordered, grows alike)"
)


def fignn_settings(model: DictConfig) -> dict:
    return {
        "gnn_layers": model.graph_layers,
        "use_gru": model.gru,
        "use_residual": model.residual,
        "reuse_graph_layer": model.shared_graph_layer,
    }


def copy_fignn(ours, theirs) -> None:
    """FuxiCTR's edge scorer is the same unbiased ``Linear(2K, 1)``; its graph layers hold ``W_in``,
    ``W_out`` and the bias in the order ours do (``copy_state`` pairs by order)."""
    copy_embedding(ours, theirs)
    ours.gnn.graph.score.weight.copy_(theirs.fignn.W_attn.weight)
    shared = len(ours.gnn.steps) == 1 and theirs.fignn.reuse_graph_layer
    for mine, other in zip(ours.gnn.steps, [theirs.fignn.gnn] if shared else theirs.fignn.gnn, strict=True):
        copy_state(mine, other)
    if ours.gnn.gru is not None:
        copy_state(ours.gnn.gru, theirs.fignn.gru)
    ours.readout.score.weight.copy_(theirs.fc.mlp1.weight)
    ours.readout.gate.weight.copy_(theirs.fc.mlp2[0].weight)


def afn_settings(model: DictConfig) -> dict:
    if model.log_floor != FUXICTR_LOG_FLOOR:
        raise ValueError(f"FuxiCTR's AFN takes the logarithm of max(|e|, {FUXICTR_LOG_FLOOR}), not {model.log_floor}")
    mlp = model.mlp
    return {
        "logarithmic_neurons": model.logarithmic_neurons,
        "afn_hidden_units": list(mlp.hidden_units),
        "afn_activations": mlp.activation,
        "afn_dropout": mlp.dropout,
        "batch_norm": mlp.batch_norm,
        "ensemble_dnn": False,
    }


def afn_plus_settings(model: DictConfig) -> dict:
    dnn = model.dnn
    return {
        **afn_settings(model),
        "ensemble_dnn": True,
        "dnn_hidden_units": list(dnn.hidden_units),
        "dnn_activations": dnn.activation,
        "dnn_dropout": dnn.dropout,
        "batch_norm": same("MLP batch norm", model.mlp.batch_norm, dnn.batch_norm),
    }


def copy_afn(ours, theirs) -> None:
    """The two batch norms with their running statistics, the powers, the MLPs; AFN+'s second
    embedding, its DNN and the 2 -> 1 head."""
    copy_embedding(ours, theirs)
    copy_state(ours.lnn.log_norm, theirs.log_batch_norm)
    ours.lnn.powers.weight.copy_(theirs.coefficient_W.weight)
    copy_state(ours.lnn.exp_norm, theirs.exp_batch_norm)
    copy_state(ours.afn, theirs.dense_layer)
    if theirs.ensemble_dnn:
        copy_tables(ours.dnn_embedding.table.weight, theirs.embedding_layer2, ours.schema)
        copy_state(ours.dnn, theirs.dnn)
        copy_state(ours.head, theirs.fc)


def sam_settings(model: DictConfig) -> dict:
    return {
        "interaction_type": model.interaction,
        "aggregation": "concat",
        "num_interaction_layers": model.interaction_layers,
        "use_residual": model.residual,
        "net_dropout": model.dropout,
    }


def copy_sam(ours, theirs) -> None:
    """Each layer's ``w_ij``, ``W_K`` and ``W_Q`` in FuxiCTR's order (those it has), the head."""
    copy_embedding(ours, theirs)
    for mine, other in zip(ours.sam.layers, theirs.block.layers, strict=True):
        copy_state(mine, other)
    copy_state(ours.head, theirs.fc)


MODELS = {
    "fignn": ZooModel("FiGNN", fignn_settings, copy_fignn),
    "afn": ZooModel("AFN", afn_settings, copy_afn, known_gap=AFN_GAP),
    "afn_plus": ZooModel("AFN", afn_plus_settings, copy_afn, known_gap=AFN_GAP),
    "sam": ZooModel("SAM", sam_settings, copy_sam),
}
