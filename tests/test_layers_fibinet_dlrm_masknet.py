"""FiBiNET's, DLRM's and MaskNet's layers against loops over each paper's formula, the models' options,
and the BARS presets against the parameter counts BARS's logs print."""

import itertools

import pytest
import torch

from datamodules.schema import Schema
from models.layers import BilinearInteraction, DotInteraction, LayerNorm, MaskBlock, MaskBlocks, SqueezeExcitation
from tests.helpers import K as MODEL_K
from tests.helpers import build, random_batch, small_schema

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 5, 4, 3


@pytest.fixture
def embedded():
    return torch.randn(B, F, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def relu(x: float) -> float:
    return max(x, 0.0)


def pairs(n, self_pairs=False):
    return list(
        itertools.combinations_with_replacement(range(n), 2) if self_pairs else itertools.combinations(range(n), 2)
    )


# -- FiBiNET ----------------------------------------------------------------------------------


@pytest.mark.parametrize("squeeze", ["mean", "max"])
def test_squeeze_excitation_equals_its_definition(embedded, squeeze):
    layer = SqueezeExcitation(F, reduction_ratio=2, squeeze=squeeze).double()
    w1, w2 = layer.excitation[0].weight.tolist(), layer.excitation[2].weight.tolist()
    expected = torch.empty_like(embedded)
    for b in range(B):
        rows = [embedded[b, i].tolist() for i in range(F)]
        z = [sum(row) / K if squeeze == "mean" else max(row) for row in rows]
        hidden = [relu(sum(w1[u][i] * z[i] for i in range(F))) for u in range(len(w1))]
        for i in range(F):
            weight = relu(sum(w2[i][u] * hidden[u] for u in range(len(hidden))))
            expected[b, i] = weight * embedded[b, i]
    torch.testing.assert_close(layer(embedded), expected)
    assert len(w1) == 2 and len(SqueezeExcitation(10, 3, "mean").excitation[0].weight) == 3  # int(F / r)


def bilinear_loop(embedded, weight, bilinear_type):
    """``[B, P, K]``: ``p_ij[l] = sum_k e_i[k] W[k, l] e_j[l]`` with ``W`` the pair's map."""
    out = torch.empty(B, len(pairs(F)), K, dtype=embedded.dtype)
    for b, (p, (i, j)) in itertools.product(range(B), enumerate(pairs(F))):
        w = weight[{"field_all": 0, "field_each": i, "field_interaction": p}[bilinear_type]]
        for column in range(K):
            out[b, p, column] = sum(embedded[b, i, k] * w[k, column] for k in range(K)) * embedded[b, j, column]
    return out


@pytest.mark.parametrize("bilinear_type", BilinearInteraction.TYPES)
def test_bilinear_interaction_and_its_gradient_equal_the_loop(embedded, bilinear_type):
    layer = BilinearInteraction(F, K, bilinear_type).double()
    maps = {"field_all": 1, "field_each": F, "field_interaction": len(pairs(F))}[bilinear_type]
    assert layer.weight.shape == (maps, K, K)
    inputs = embedded.clone().requires_grad_()
    upstream = torch.randn(B, len(pairs(F)), K, dtype=torch.float64)
    layer(inputs).backward(upstream)
    grads = inputs.grad.clone(), layer.weight.grad.clone()
    inputs.grad, layer.weight.grad = None, None
    expected = bilinear_loop(inputs, layer.weight, bilinear_type)
    expected.backward(upstream)
    torch.testing.assert_close(layer(inputs), expected)
    torch.testing.assert_close(grads[0], inputs.grad)
    torch.testing.assert_close(grads[1], layer.weight.grad)


def test_fibinet_shares_its_bilinear_maps_only_when_asked():
    schema = small_schema()
    shared = build("fibinet", schema, bilinear_shared=True, bilinear_type="field_each")
    separate = build("fibinet", schema, bilinear_shared=False, bilinear_type="field_each")
    assert shared.senet_bilinear is None and separate.senet_bilinear is not None
    maps = 4 * MODEL_K * MODEL_K  # small_schema's 4 fields, one map each
    assert sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in shared.parameters()) == maps
    with pytest.raises(ValueError, match="bilinear_type"):
        build("fibinet", schema, bilinear_type="field_pair")
    with pytest.raises(ValueError, match="squeeze"):
        build("fibinet", schema, senet={"reduction_ratio": 1, "squeeze": "sum"})


# -- DLRM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("self_pairs", [False, True])
def test_dot_interaction_equals_loop(embedded, self_pairs):
    layer = DotInteraction(F, self_pairs)
    expected = torch.tensor(
        [[float(embedded[b, i] @ embedded[b, j]) for i, j in pairs(F, self_pairs)] for b in range(B)],
        dtype=torch.float64,
    )
    assert layer.num_pairs == (F * (F + 1) // 2 if self_pairs else F * (F - 1) // 2)
    torch.testing.assert_close(layer(embedded), expected)
    with pytest.raises(ValueError, match="no pair"):
        DotInteraction(1, self_pairs=False)


def sparse_schema():
    return Schema.build([("c0", "categorical", 3), ("c1", "categorical", 5), ("c2", "categorical", 4)])


def test_dlrm_bottom_mlp_reads_the_dense_values_and_joins_the_dot_products():
    schema = small_schema()  # 3 sparse fields and 1 dense
    model = build("dlrm", schema).eval()
    batch = random_batch(schema, size=6)
    assert model.embedding.num_dense == 0 and model.embedding(batch).shape == (6, 3, 4)
    dense = model.bottom(batch.x_dense)  # [B, K], relu'd
    vectors = torch.cat([dense.unsqueeze(1), model.embedding(batch)], dim=1)
    dots = torch.stack([torch.stack([vectors[b, i] @ vectors[b, j] for i, j in pairs(4)]) for b in range(6)])
    expected = model.top(torch.cat([dense, dots], dim=1)).squeeze(1)
    torch.testing.assert_close(model(batch), expected)
    assert (dense >= 0).all()


def test_dlrm_without_dense_fields_has_no_bottom_mlp():
    schema = sparse_schema()
    batch = random_batch(schema, size=6)
    dot = build("dlrm", schema).eval()
    assert dot.bottom is None and dot.top.layers[0].in_features == 3
    embedded = dot.embedding(batch)
    torch.testing.assert_close(dot(batch), dot.top(DotInteraction(3, False)(embedded)).squeeze(1))
    cat = build("dlrm", schema, interaction="cat").eval()
    torch.testing.assert_close(cat(batch), cat.top(cat.embedding(batch).flatten(1)).squeeze(1))
    assert build("dlrm", schema, self_interaction=True).top.layers[0].in_features == 6
    with pytest.raises(ValueError, match="interaction=dot"):
        build("dlrm", schema, interaction="cat", self_interaction=True)


# -- MaskNet -----------------------------------------------------------------------------------


def test_layer_norm_normalises_each_row_with_its_own_gain_and_shift(embedded):
    per_field = LayerNorm((F, K)).double()
    with torch.no_grad():
        per_field.weight.normal_(), per_field.bias.normal_()
    expected = torch.empty_like(embedded)
    for b, i in itertools.product(range(B), range(F)):
        row = embedded[b, i].tolist()
        mean = sum(row) / K
        var = sum((x - mean) ** 2 for x in row) / K
        for k in range(K):
            expected[b, i, k] = (row[k] - mean) / (var + per_field.eps) ** 0.5 * per_field.weight[
                i, k
            ] + per_field.bias[i, k]
    torch.testing.assert_close(per_field(embedded), expected)
    torch.testing.assert_close(LayerNorm(K).double()(embedded), torch.nn.functional.layer_norm(embedded, (K,)))


def test_layer_norm_gradients_do_not_depend_on_the_thread_count():
    threads, grads = torch.get_num_threads(), []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            norm = LayerNorm(256)
            inputs = torch.randn(4096, 256, generator=torch.Generator().manual_seed(0), requires_grad=True)
            norm(inputs).backward(torch.randn(4096, 256, generator=torch.Generator().manual_seed(1)))
            grads.append((norm.weight.grad, norm.bias.grad, inputs.grad))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_mask_block_equals_its_definition():
    embedded_dim, inputs_dim, outputs_dim = 6, 4, 3
    block = MaskBlock(
        embedded_dim, inputs_dim, outputs_dim, reduction_ratio=1.5, layer_norm=True, activation="relu", dropout=0.0
    )
    block = block.double()
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(B, embedded_dim, generator=generator, dtype=torch.float64)
    inputs = torch.randn(B, inputs_dim, generator=generator, dtype=torch.float64)
    w1, b1 = block.mask[0].weight.tolist(), block.mask[0].bias.tolist()
    w2, b2 = block.mask[2].weight.tolist(), block.mask[2].bias.tolist()
    w, norm = block.hidden[0].weight.tolist(), block.hidden[1]
    assert len(w1) == 6 and block.hidden[0].bias is None  # int(4 * 1.5) aggregation units
    expected = torch.empty(B, outputs_dim, dtype=torch.float64)
    for b in range(B):
        e, x = embeddings[b].tolist(), inputs[b].tolist()
        hidden = [relu(sum(w1[a][d] * e[d] for d in range(embedded_dim)) + b1[a]) for a in range(len(w1))]
        mask = [sum(w2[m][a] * hidden[a] for a in range(len(w1))) + b2[m] for m in range(inputs_dim)]
        mapped = [sum(w[o][m] * mask[m] * x[m] for m in range(inputs_dim)) for o in range(outputs_dim)]
        mean = sum(mapped) / outputs_dim
        std = (sum((y - mean) ** 2 for y in mapped) / outputs_dim + norm.eps) ** 0.5
        expected[b] = torch.tensor([relu((y - mean) / std) for y in mapped])
    torch.testing.assert_close(block(embeddings, inputs), expected)


@pytest.mark.parametrize("form", MaskBlocks.FORMS)
def test_mask_blocks_chain_or_run_side_by_side(form):
    blocks = MaskBlocks(6, [5, 4], form, reduction_ratio=1, layer_norm=False, activation="relu", dropout=0.0)
    generator = torch.Generator().manual_seed(2)
    embeddings, normalised = torch.randn(B, 6, generator=generator), torch.randn(B, 6, generator=generator)
    first, second = blocks.blocks
    if form == "serial":
        assert blocks.output_dim == 4 and second.hidden[0].in_features == 5
        expected = second(embeddings, first(embeddings, normalised))
    else:
        assert blocks.output_dim == 9 and second.hidden[0].in_features == 6
        expected = torch.cat([first(embeddings, normalised), second(embeddings, normalised)], dim=1)
    torch.testing.assert_close(blocks(embeddings, normalised), expected)
    assert all(block.mask[0].in_features == 6 for block in blocks.blocks)  # every mask reads the embeddings


def test_masknet_masks_the_normalised_embeddings_with_masks_of_the_raw_ones():
    schema = small_schema()
    model = build("masknet", schema, form="parallel").eval()
    batch = random_batch(schema, size=6)
    embedded = model.embedding(batch)
    normalised = model.embedding_norm(embedded)
    expected = model.dnn(model.blocks(embedded.flatten(1), normalised.flatten(1))).squeeze(1)
    torch.testing.assert_close(model(batch), expected)
    assert build("masknet", schema, embedding_layer_norm=False).embedding_norm is None
    with pytest.raises(ValueError, match="form"):
        build("masknet", schema, form="stacked")
