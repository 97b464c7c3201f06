"""FiBiNET, DLRM, MaskNet, AOANet and DeepIM against FuxiCTR's zoo classes of the same names (see
``experiments.reference.zoo``)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from experiments.reference.weights import copy_linear
from experiments.reference.zoo import ZooModel, copy_embedding, copy_state, same


def fibinet_settings(model: DictConfig) -> dict:
    """FuxiCTR's SENET squeezes by the mean and excites through ReLUs, as ours does."""
    if model.senet.squeeze != "mean":
        raise ValueError(f"FuxiCTR's SENET squeezes by the mean, not {model.senet.squeeze}")
    return {
        "hidden_units": list(model.mlp.hidden_units),
        "hidden_activations": model.mlp.activation,
        "net_dropout": model.mlp.dropout,
        "batch_norm": model.mlp.batch_norm,
        "excitation_activation": "ReLU",
        "reduction_ratio": model.senet.reduction_ratio,
        "bilinear_type": model.bilinear_type,
    }


def _bilinear(ours, theirs) -> None:
    ours.weight.copy_(theirs.bilinear_W.view_as(ours.weight))


def restore_fibinet_shared_maps(theirs, model: DictConfig) -> None:
    """Where the preset shares one set of bilinear maps between the embeddings and their SENET
    re-weighting (BARS's Frappe_x1 and Criteo_x4 runs, on FuxiCTR 1.x), the zoo model's first
    bilinear layer serves both: FuxiCTR 2.x's class always builds two."""
    if model.bilinear_shared:
        theirs.bilinear_interaction2 = theirs.bilinear_interaction1


def copy_fibinet(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    copy_linear(ours.linear, theirs.lr_layer, ours.schema)
    copy_state(ours.senet, theirs.senet_layer)
    _bilinear(ours.bilinear, theirs.bilinear_interaction1)
    if ours.senet_bilinear is not None:
        _bilinear(ours.senet_bilinear, theirs.bilinear_interaction2)
    copy_state(ours.dnn, theirs.dnn)


def dlrm_settings(model: DictConfig) -> dict:
    if model.self_interaction:
        raise ValueError("FuxiCTR's DLRM has no dot product of a vector with itself")
    bottom, top = model.bottom_mlp, model.top_mlp
    return {
        "top_mlp_units": list(top.hidden_units),
        "bottom_mlp_units": list(bottom.hidden_units),
        "top_mlp_activations": top.activation,
        "bottom_mlp_activations": bottom.activation,
        "top_mlp_dropout": top.dropout,
        "bottom_mlp_dropout": bottom.dropout,
        "interaction_op": model.interaction,
        "batch_norm": same("MLP batch norm", bottom.batch_norm, top.batch_norm),
    }


def copy_dlrm(ours, theirs) -> None:
    if ours.bottom is not None:
        # FuxiCTR puts the dense vector after the fields' embeddings, ours before them: the top
        # MLP's first layer would need its columns permuted, and no BARS dataset has dense fields
        raise ValueError("the check maps DLRM's weights for all-categorical schemas only")
    copy_embedding(ours, theirs)
    copy_state(ours.top, theirs.top_mlp)


def masknet_settings(model: DictConfig) -> dict:
    """FuxiCTR's blocks: a serial chain straight into the output unit, or parallel blocks of one width
    under an MLP without batch norm."""
    blocks, mlp = model.mask_blocks, model.mlp
    settings = {
        "dnn_hidden_activations": mlp.activation,
        "reduction_ratio": blocks.reduction_ratio,
        "net_dropout": mlp.dropout,
        "emb_layernorm": model.embedding_layer_norm,
        "net_layernorm": blocks.layer_norm,
    }
    if model.form == "serial":
        if mlp.hidden_units:
            raise ValueError("FuxiCTR's SerialMaskNet has no MLP after its blocks")
        return {**settings, "model_type": "SerialMaskNet", "dnn_hidden_units": list(blocks.units)}
    if mlp.batch_norm:
        raise ValueError("FuxiCTR's ParallelMaskNet has no batch norm in its MLP")
    return {
        **settings,
        "model_type": "ParallelMaskNet",
        "parallel_num_blocks": len(blocks.units),
        "parallel_block_dim": same("MaskBlock width", *blocks.units),
        "dnn_hidden_units": list(mlp.hidden_units),
    }


def copy_masknet(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    if ours.embedding_norm is not None:
        ours.embedding_norm.weight.copy_(torch.stack([norm.weight for norm in theirs.emb_norm]))
        ours.embedding_norm.bias.copy_(torch.stack([norm.bias for norm in theirs.emb_norm]))
    copy_state(ours.blocks, theirs.mask_net.mask_blocks)
    copy_state(ours.dnn, theirs.mask_net.fc if ours.blocks.serial else theirs.mask_net.dnn)


def aoanet_settings(model: DictConfig) -> dict:
    return {
        "dnn_hidden_units": list(model.mlp.hidden_units),
        "dnn_hidden_activations": model.mlp.activation,
        "net_dropout": model.mlp.dropout,
        "batch_norm": model.mlp.batch_norm,
        "num_interaction_layers": model.num_interaction_layers,
        "num_subspaces": model.num_subspaces,
    }


def copy_aoanet(ours, theirs) -> None:
    """FuxiCTR's ``alpha`` rows run over (input subspace, field) pairs, the field fastest: ours holds
    the same weights as ``[I, F, S]``; its ``h`` carries a trailing axis of one."""
    copy_embedding(ours, theirs)
    copy_state(ours.dnn, theirs.dnn)
    for mine, other in zip(ours.gin.layers, theirs.gin.layers, strict=True):
        mine.weight.copy_(other.W)
        mine.alpha.copy_(other.alpha.view_as(mine.alpha))
        mine.h.copy_(other.h.view_as(mine.h))
    copy_state(ours.head, theirs.fc)


def deepim_settings(model: DictConfig) -> dict:
    return {
        "im_order": model.im_order,
        "im_batch_norm": model.im_batch_norm,
        "hidden_units": list(model.mlp.hidden_units),
        "hidden_activations": model.mlp.activation,
        "net_dropout": model.mlp.dropout,
        "net_batch_norm": model.mlp.batch_norm,
    }


def copy_deepim(ours, theirs) -> None:
    copy_embedding(ours, theirs)
    if ours.im_norm is not None:
        copy_state(ours.im_norm, theirs.im_layer.bn)
    copy_state(ours.im_head, theirs.im_layer.fc)
    copy_state(ours.dnn, theirs.dnn)


MODELS = {
    "fibinet": ZooModel("FiBiNET", fibinet_settings, copy_fibinet, restore_fibinet_shared_maps),
    "dlrm": ZooModel("DLRM", dlrm_settings, copy_dlrm),
    "masknet": ZooModel("MaskNet", masknet_settings, copy_masknet),
    "aoanet": ZooModel("AOANet", aoanet_settings, copy_aoanet),
    "deepim": ZooModel("DeepIM", deepim_settings, copy_deepim),
}
