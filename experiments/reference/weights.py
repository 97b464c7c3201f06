"""Copy a reference model's parameters into the ctr-bench model of the same definition, so that
both start from identical weights (the reference's own initialisation).

FuxiCTR keeps one table per field (row 0 its padding row); ctr-bench one table over the global id
space, a field's local ids at the field's offset: the encodings agree on local ids (checked by the
preprocessing comparison), so each field's table is copied to its rows. Parameters with no
counterpart (FFM's vector for its own field) are set to zero, which is what they stay.
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import CIN, MLP


def _field_tables(reference_embedding) -> list[torch.Tensor]:
    """A FuxiCTR ``FeatureEmbedding``'s per-field weights ``[V_f, K]``, in field order."""
    return [layer.weight for layer in reference_embedding.embedding_layer.embedding_layers.values()]


def copy_tables(target: torch.Tensor, reference_embedding, schema, columns: slice = slice(None)) -> None:
    for field, weight in zip(schema.id_fields, _field_tables(reference_embedding)):
        target[field.offset : field.offset + field.vocab_size, columns] = weight


def copy_linear(ours, reference_lr, schema) -> None:
    """``LinearLogit`` <- ``LogisticRegression`` (1-d table, and bias when both have one)."""
    copy_tables(ours.weights.table.weight, reference_lr.embedding_layer, schema)
    if ours.bias is not None and reference_lr.bias is not None:
        ours.bias.copy_(reference_lr.bias)


def _copy_mlp(ours: MLP, reference) -> None:
    """Linear and batch-norm layers, pair by pair in order (running statistics included)."""
    kinds = (nn.Linear, nn.BatchNorm1d)
    mine = [m for m in ours.layers if isinstance(m, kinds)]
    theirs = [m for m in reference.mlp if isinstance(m, kinds)]
    if [isinstance(m, nn.Linear) for m in mine] != [isinstance(m, nn.Linear) for m in theirs]:
        raise ValueError(
            f"MLPs differ: {[type(m).__name__ for m in mine]} against {[type(m).__name__ for m in theirs]}"
        )
    for a, b in zip(mine, theirs):
        a.load_state_dict(b.state_dict())


def copy_cin(ours: CIN, reference, num_fields: int) -> None:
    """Our CIN's inputs are ordered (previous map i, field j) -> i * F + j; FuxiCTR's 1x1
    convolutions read (field j, previous map i) -> j * H + i: the same weights, permuted."""
    for conv, linear in zip(reference.cin_layer.values(), ours.filters):
        weight = conv.weight.squeeze(2)  # [out, F * H]
        out, width = weight.shape
        previous = width // num_fields
        linear.weight.copy_(weight.view(out, num_fields, previous).transpose(1, 2).reshape(out, width))
        linear.bias.copy_(conv.bias)


def copy_weights(name: str, ours, reference) -> None:
    """Make ``ours`` (a ctr-bench model ``name``) hold ``reference``'s parameters (called without
    autograd: ``check.transfer_weights``)."""
    schema = ours.schema
    if name == "lr":
        copy_linear(ours.linear, reference.lr_layer, schema)
    elif name == "fm":
        copy_linear(ours.linear, reference.fm.lr_layer, schema)
        copy_tables(ours.embedding.table.weight, reference.embedding_layer, schema)
    elif name == "ffm":
        copy_linear(ours.linear, reference.lr_layer, schema)
        table = ours.embedding.table.weight  # [ids, F * K]: field f's vector for partner g at g * K
        table.zero_()
        k, fields = ours.embedding_dim, schema.num_fields
        for f, field in enumerate(schema.sparse_fields):
            rows = slice(field.offset, field.offset + field.vocab_size)
            for g in range(fields):
                if g != f:
                    source = _field_tables(reference.embedding_layers[g if g < f else g - 1])[f]
                    table[rows, g * k : (g + 1) * k] = source
    elif name in ("dnn", "ipnn"):
        copy_tables(ours.embedding.table.weight, reference.embedding_layer, schema)
        _copy_mlp(ours.dnn, reference.mlp if name == "dnn" else reference.dnn)
    elif name == "deepfm":
        copy_linear(ours.linear, reference.fm.lr_layer, schema)
        copy_tables(ours.embedding.table.weight, reference.embedding_layer, schema)
        _copy_mlp(ours.dnn, reference.mlp)
    elif name == "lr_dnn":
        copy_linear(ours.linear, reference.lr_layer, schema)
        copy_tables(ours.dnn_embedding.table.weight, reference.embedding_layer, schema)
        _copy_mlp(ours.dnn, reference.mlp)
    elif name == "dcn":
        copy_tables(ours.embedding.table.weight, reference.embedding_layer, schema)
        for layer, cross in enumerate(reference.crossnet.cross_net):
            ours.cross.weight[layer] = cross.weight.weight[0]
            ours.cross.bias[layer] = cross.bias
        _copy_mlp(ours.dnn, reference.dnn)
        ours.head.load_state_dict(reference.fc.state_dict())
    elif name == "xdeepfm":
        copy_tables(ours.linear.weights.table.weight, reference.lr_layer.embedding_layer, schema)
        ours.linear.bias.copy_(reference.cin.fc.bias)  # the model's w0: FuxiCTR's sits in the CIN's head
        copy_tables(ours.embedding.table.weight, reference.embedding_layer, schema)
        copy_cin(ours.cin, reference.cin, schema.num_fields)
        ours.cin_head.weight.copy_(reference.cin.fc.weight)
        _copy_mlp(ours.dnn, reference.dnn)
    else:
        raise ValueError(f"no weight mapping for {name!r}")
