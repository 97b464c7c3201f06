"""The layer library against direct (loop) implementations of each paper's definition."""

import itertools

import pytest
import torch
from torch import nn

from datamodules.schema import Batch, Schema
from models.layers import (
    CIN,
    MLP,
    CrossNetwork,
    CrossProductLogit,
    FeatureEmbedding,
    FieldAwareInteraction,
    FMInteraction,
    InnerProduct,
    LinearLogit,
    OuterProduct,
)

pytestmark = pytest.mark.usefixtures("single_thread")


B, F, K = 5, 4, 3


@pytest.fixture
def embedded():
    return torch.randn(B, F, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.fixture
def schema():
    return Schema.build([("a", "categorical", 3), ("b", "categorical", 5), ("c", "numeric", 4)], dense=["d1", "d2"])


def random_batch(schema, size=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    columns = [f.offset + torch.randint(0, f.vocab_size, (size,), generator=generator) for f in schema.sparse_fields]
    dense = torch.randn(size, schema.num_dense, generator=generator) if schema.num_dense else None
    return Batch(torch.stack(columns, 1), torch.randint(0, 2, (size,), generator=generator).float(), dense)


def pairs(n):
    return list(itertools.combinations(range(n), 2))


def test_fm_interaction_equals_pairwise_double_sum(embedded):
    expected = torch.stack([sum(embedded[b, i] @ embedded[b, j] for i, j in pairs(F)) for b in range(B)])
    torch.testing.assert_close(FMInteraction()(embedded), expected)


def test_field_aware_interaction_equals_its_definition():
    per_field = torch.randn(B, F, F, K, dtype=torch.float64)  # [b, i, j] = v_{x_i, field j}
    expected = torch.stack([sum(per_field[b, i, j] @ per_field[b, j, i] for i, j in pairs(F)) for b in range(B)])
    torch.testing.assert_close(FieldAwareInteraction(F)(per_field), expected)
    # without a gradient to keep (scoring, exported graphs) the same values come without the autograd.Function
    trained = FieldAwareInteraction(F)(per_field.clone().requires_grad_())
    assert trained.grad_fn is not None and torch.equal(trained.detach(), FieldAwareInteraction(F)(per_field))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_field_aware_interaction_gradient_is_the_definitions_bit_for_bit(dtype):
    # its hand-written backward pass against autograd through the pair loop's formula (and, in
    # float32, through the same whole-tensor formula autograd would differentiate, to the bit)
    per_field = torch.randn(B, F, F, K, dtype=dtype, requires_grad=True)
    upstream = torch.randn(B, dtype=dtype)
    FieldAwareInteraction(F)(per_field).backward(upstream)
    written = per_field.grad.clone()
    per_field.grad = None
    whole = (per_field * per_field.transpose(1, 2)).sum(dim=(1, 2, 3))
    (0.5 * (whole - per_field.diagonal(dim1=1, dim2=2).pow(2).sum(dim=(1, 2)))).backward(upstream)
    assert torch.equal(written, per_field.grad)
    per_field.grad = None
    loop = torch.stack([sum(per_field[b, i, j] @ per_field[b, j, i] for i, j in pairs(F)) for b in range(B)])
    loop.backward(upstream)
    torch.testing.assert_close(written, per_field.grad)
    assert torch.all(written.diagonal(dim1=1, dim2=2) == 0)


def test_inner_product_equals_loop(embedded):
    expected = torch.tensor(
        [[embedded[b, i] @ embedded[b, j] for i, j in pairs(F)] for b in range(B)], dtype=torch.float64
    )
    torch.testing.assert_close(InnerProduct(F)(embedded), expected)


def test_sum_pooled_outer_product_equals_sum_of_all_outer_products(embedded):
    expected = torch.stack(
        [
            sum(torch.outer(embedded[b, i], embedded[b, j]) for i in range(F) for j in range(F)).flatten()
            for b in range(B)
        ]
    )
    layer = OuterProduct(F)
    torch.testing.assert_close(layer(embedded), expected)
    assert layer.output_dim(K) == K * K


def test_pairwise_outer_product_equals_loop(embedded):
    expected = torch.stack(
        [torch.cat([torch.outer(embedded[b, i], embedded[b, j]).flatten() for i, j in pairs(F)]) for b in range(B)]
    )
    layer = OuterProduct(F, "pairwise")
    torch.testing.assert_close(layer(embedded), expected)
    assert layer.output_dim(K) == len(pairs(F)) * K * K


def test_outer_product_rejects_unknown_form():
    with pytest.raises(ValueError, match="outer product form"):
        OuterProduct(F, "kernel")


def test_cross_network_equals_matrix_form():
    x0 = torch.randn(B, 6, dtype=torch.float64)
    layer = CrossNetwork(6, num_layers=3).double()
    with torch.no_grad():
        layer.bias.normal_()
    expected = []
    for sample in x0:
        x0_col = x = sample.unsqueeze(1)  # [D, 1]
        for w, bias in zip(layer.weight, layer.bias):
            x = x0_col @ x.T @ w.unsqueeze(1) + bias.unsqueeze(1) + x  # x0 x_l^T w_l + b_l + x_l
        expected.append(x.squeeze(1))
    torch.testing.assert_close(layer(x0), torch.stack(expected))


def direct_cin(x0, layer):
    """CIN by its definition: X^k_h = sum_{i,j} W^k_{h,i,j} (X^{k-1}_i * X^0_j), loops everywhere."""
    batch, fields, _ = x0.shape
    pooled = []
    for b in range(batch):
        hidden, outputs = x0[b], []
        for index, conv in enumerate(layer.filters):
            weight = conv.weight.view(conv.out_features, hidden.shape[0], fields)
            maps = torch.stack(
                [
                    sum(weight[h, i, j] * hidden[i] * x0[b, j] for i in range(hidden.shape[0]) for j in range(fields))
                    for h in range(weight.shape[0])
                ]
            )
            last = index == len(layer.filters) - 1
            if layer.split_half and not last:
                half = maps.shape[0] // 2
                hidden, direct = maps[:half], maps[half:]
            else:
                hidden = direct = maps
            outputs.append(direct.sum(dim=1))
        pooled.append(torch.cat(outputs))
    return torch.stack(pooled)


@pytest.mark.parametrize("split_half", [True, False])
def test_cin_equals_direct_definition(embedded, split_half):
    layer = CIN(F, [4, 2, 3], split_half=split_half).double()
    out = layer(embedded)
    assert out.shape == (B, layer.output_dim)
    assert layer.output_dim == (2 + 1 + 3 if split_half else 4 + 2 + 3)
    torch.testing.assert_close(out, direct_cin(embedded, layer))


def test_cin_split_half_needs_even_inner_layers():
    with pytest.raises(ValueError, match="even"):
        CIN(F, [3, 2], split_half=True)


def test_feature_embedding_is_one_table_over_the_global_id_space(schema):
    layer = FeatureEmbedding(schema, K, init_std=0.1)
    tables = [m for m in layer.modules() if isinstance(m, nn.Embedding)]
    assert len(tables) == 1 and tables[0].num_embeddings == schema.num_ids == 12
    batch = random_batch(schema)
    out = layer(batch)
    assert out.shape == (6, schema.num_fields, K)
    torch.testing.assert_close(out[:, :3], layer.table.weight[batch.x])
    # a dense field's vector is scaled by its value
    torch.testing.assert_close(out[:, 3:], batch.x_dense.unsqueeze(-1) * layer.dense)


def test_feature_embedding_requires_the_dense_columns(schema):
    batch = random_batch(schema)
    with pytest.raises(ValueError, match="2 dense fields"):
        FeatureEmbedding(schema, K, init_std=0.1)(batch._replace(x_dense=None))


def test_squared_norm_counts_each_row_read_per_example(schema):
    layer = FeatureEmbedding(schema, K, init_std=0.1)
    batch = random_batch(schema)
    rows = layer.table.weight
    expected = sum(rows[i].pow(2).sum() for i in batch.x.flatten().tolist()) / 6 + layer.dense.pow(2).sum()
    torch.testing.assert_close(layer.squared_norm(batch), expected)


def test_linear_logit_sums_first_order_weights(schema):
    layer = LinearLogit(schema)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    batch = random_batch(schema)
    table = layer.weights.table.weight.squeeze(1)
    expected = table[batch.x].sum(1) + batch.x_dense @ layer.weights.dense.squeeze(1) + layer.bias
    torch.testing.assert_close(layer(batch), expected)


def test_cross_products_are_exact_for_small_pairs_and_folded_for_large():
    schema = Schema.build([("a", "categorical", 3), ("b", "categorical", 4), ("c", "categorical", 50)])
    layer = CrossProductLogit(schema, [("a", "b"), ("b", "c")], num_buckets=20)
    assert layer.table.num_embeddings == 3 * 4 + 20
    # every (a, b) value pair gets its own row in [0, 12)
    a, b = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    x = torch.stack([a.flatten(), 3 + b.flatten(), torch.full((12,), 7 + 5)], 1)
    ids = layer.ids(Batch(x, torch.zeros(12)))
    assert sorted(ids[:, 0].tolist()) == list(range(12))
    # (b, c) has 200 combinations folded into its own 20 rows [12, 32)
    x = torch.stack([torch.zeros(200, dtype=torch.long), 3 + torch.arange(200) // 50, 7 + torch.arange(200) % 50], 1)
    folded = layer.ids(Batch(x, torch.zeros(200)))[:, 1]
    assert folded.min() >= 12 and folded.max() < 32 and folded.unique().numel() == 20


def test_cross_products_reject_unknown_fields():
    schema = Schema.build([("a", "categorical", 3), ("b", "categorical", 4)], dense=["d"])
    with pytest.raises(ValueError, match=r"not sparse fields: \['d'\]"):
        CrossProductLogit(schema, [("a", "d")], num_buckets=10)


def test_mlp_layout_and_output():
    mlp = MLP(6, [5, 4], activation="tanh", dropout=0.3, batch_norm=True)
    kinds = [type(m).__name__ for m in mlp.layers]
    assert kinds == ["Linear", "BatchNorm", "Tanh", "Dropout"] * 2 + ["Linear"]
    assert mlp(torch.randn(B, 6)).shape == (B, 1)
    trunk = MLP(6, [5, 4], output_dim=None)
    assert trunk.output_dim == 4 and trunk(torch.randn(B, 6)).shape == (B, 4)
    with pytest.raises(ValueError, match="activation"):
        MLP(6, [5], activation="swishy")


def test_batch_norm_matches_torch_in_training_and_evaluation():
    from models.layers.mlp import BatchNorm

    x = torch.randn(64, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3 + 1
    ours, torchs = BatchNorm(7).double(), nn.BatchNorm1d(7).double()
    with torch.no_grad():
        torchs.weight.uniform_(0.5, 2.0)
        torchs.bias.normal_()
    ours.load_state_dict(torchs.state_dict())
    for step in range(3):
        inputs = (x + step).requires_grad_()
        weights = torch.linspace(-1, 1, 7, dtype=torch.float64)
        grads = [torch.autograd.grad((norm(inputs) * weights).square().sum(), inputs)[0] for norm in (ours, torchs)]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    for name, value in torchs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-12, atol=1e-12)
    ours.eval(), torchs.eval()
    torch.testing.assert_close(ours(x), torchs(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="more than 1 row"):
        ours.train()(x[:1])
