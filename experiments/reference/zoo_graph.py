"""FiGNN, AFN, AFN+ and SAM against FuxiCTR's zoo classes FiGNN, AFN (AFN+ is its ``ensemble_dnn``)
and SAM (see ``experiments.reference.zoo``)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.reference.zoo import ZooModel, copy_embedding, copy_state


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


MODELS = {"fignn": ZooModel("FiGNN", fignn_settings, copy_fignn)}
