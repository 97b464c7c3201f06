"""FinalMLP and FinalNet against FuxiCTR's ``FinalMLP`` and ``FinalNet`` (see ``experiments.reference.zoo``)."""

from __future__ import annotations

from omegaconf import DictConfig

from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, mlp_settings, same
from models.layers import FactorizedInteraction
from models.layers.mlp import BatchNorm


def finalmlp_settings(model: DictConfig) -> dict:
    selection = model.feature_selection
    return {
        **mlp_settings(model.mlp1, "mlp1_"),
        **mlp_settings(model.mlp2, "mlp2_"),
        "use_fs": selection.enabled,
        "fs_hidden_units": list(selection.hidden_units),
        "fs1_context": list(selection.stream1_context),
        "fs2_context": list(selection.stream2_context),
        "num_heads": model.num_heads,
    }


def copy_context(context, schema, theirs) -> None:
    """Our one context table (its fields' rows in schema order) <- FuxiCTR's table per context field."""
    tables = theirs.embedding_layer.embedding_layers
    start = 0
    for field in (schema.sparse_fields[int(column)] for column in context.columns):
        context.table.weight[start : start + field.vocab_size] = tables[field.name].weight
        start += field.vocab_size


def copy_finalmlp(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_state(ours.mlp1, theirs.mlp1)
    copy_state(ours.mlp2, theirs.mlp2)
    if ours.gates is not None:
        selection = theirs.fs_module
        for stream, gate in enumerate(ours.gates, start=1):
            if gate.context is None:
                gate.vector.copy_(getattr(selection, f"fs{stream}_ctx_bias"))
            else:
                copy_context(gate.context, ours.schema, getattr(selection, f"fs{stream}_ctx_emb"))
            copy_state(gate.mlp, getattr(selection, f"fs{stream}_gate"))
    fusion, aggregation = ours.fusion, theirs.fusion_module
    copy_state(fusion.linear1, aggregation.w_x)
    copy_state(fusion.linear2, aggregation.w_y)
    fusion.bilinear.copy_(aggregation.w_xy.view_as(fusion.bilinear))  # one output: [H * D1/H * D2/H, 1]


def block_activation(activation: str):
    """FuxiCTR's FinalBlock spells no activation None (torch has no ``nn.identity`` to look up)."""
    return None if activation == "identity" else activation


def finalnet_settings(model: DictConfig) -> dict:
    two = model.block_type == "2B"
    blocks = [model.block1, model.block2] if two else [model.block1]
    if two:
        same("FinalBlock distill", *(b.distill for b in blocks))  # FuxiCTR's blocks distil alike (or neither)
    settings = {
        "block_type": model.block_type,
        "use_feature_gating": model.field_gate,
        "batch_norm": same("FinalBlock batch norm", *(b.batch_norm for b in blocks)),
        "residual_type": same("FinalBlock residual type", *(b.residual_type for b in blocks)),
    }
    for index, block in enumerate(blocks, start=1):
        settings.update(
            {
                f"block{index}_hidden_units": list(block.hidden_units),
                f"block{index}_hidden_activations": block_activation(block.activation),
                f"block{index}_dropout": block.dropout,
            }
        )
    return settings


def restore_finalnet_objective(theirs, model: DictConfig) -> None:
    """Where the preset's blocks do not distil (BARS's Criteo_x4 run, on FuxiCTR 2.2.0), the objective
    is the averaged prediction's mean BCE alone: FuxiCTR 2.0.3 to 2.3.3's training loop never called
    the model's own loss, which adds the blocks' soft-label terms (2.0.2 and 2.3.4 on)."""
    if model.block_type == "2B" and not model.block1.distill:
        theirs.add_loss = lambda outputs, labels: theirs.loss_fn(outputs["y_pred"], labels, reduction="mean")


def copy_block(ours, theirs) -> None:
    """Ours interleaves each layer's map and norm; FuxiCTR keeps the maps and the norms in two lists."""
    maps = [m for m in ours.layers if isinstance(m, FactorizedInteraction)]
    norms = [m for m in ours.layers if isinstance(m, BatchNorm)]
    for mine, other in (*zip(maps, theirs.layer), *zip(norms, theirs.norm)):
        copy_state(mine, other)
    if (len(maps), len(norms)) != (len(theirs.layer), len(theirs.norm)):
        raise ValueError("FinalBlocks of different depths")


def copy_finalnet(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    if ours.field_gate is not None:
        copy_state(ours.field_gate, theirs.feature_gating.linear)
    copy_block(ours.block1, theirs.block1)
    copy_state(ours.head1, theirs.fc1)
    if ours.block2 is not None:
        copy_block(ours.block2, theirs.block2)
        copy_state(ours.head2, theirs.fc2)


MODELS = {
    "finalmlp": ZooModel("FinalMLP", finalmlp_settings, copy_finalmlp),
    "finalnet": ZooModel("FinalNet", finalnet_settings, copy_finalnet, restore_finalnet_objective),
}
