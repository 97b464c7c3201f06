"""FinalMLP's and FinalNet's layers against loops over each paper's formula, the two models' wiring,
and their parameter counts at BARS's published settings against the counts BARS's logs print."""

import itertools

import pytest
import torch

import models
from datamodules.schema import Batch, Schema
from models.init import initialize
from models.layers import (
    MLP,
    BilinearFusion,
    ContextEmbedding,
    FactorizedInteraction,
    FeatureGate,
    FieldGate,
    FinalBlock,
    FinalBlockSpec,
)
from models.layers.mlp import BatchNorm, Dropout
from tests.helpers import build, model_settings, random_batch, randomised, small_schema

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 5, 4, 3


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- FinalNet's layers -----------------------------------------------------------------------


def test_field_gate_stacks_the_embeddings_over_their_gated_copies():
    gate = randomised(FieldGate(F))
    embedded = torch.randn(B, F, K, generator=generator(), dtype=torch.float64)
    expected = torch.zeros(B, 2 * F, K, dtype=torch.float64)
    for b, i, k in itertools.product(range(B), range(F), range(K)):
        g = sum(gate.weight[i, j] * embedded[b, j, k] for j in range(F)) + gate.bias[i]
        expected[b, i, k] = embedded[b, i, k]
        expected[b, F + i, k] = embedded[b, i, k] * g
    torch.testing.assert_close(gate(embedded), expected)


def test_field_gate_starts_open_and_keeps_that_start_through_fuxictr_initialisation():
    gate = FieldGate(F)
    initialize(gate, [], embedding_std=1e-4, linear="xavier_normal")
    assert torch.equal(gate.weight, torch.zeros(F, F)) and torch.equal(gate.bias, torch.ones(F))
    embedded = torch.randn(B, F, K, generator=generator())
    torch.testing.assert_close(gate(embedded), torch.cat([embedded, embedded], dim=1))


def factorized_by_loops(layer: FactorizedInteraction, x: torch.Tensor) -> torch.Tensor:
    weight, bias = layer.linear.weight, layer.linear.bias
    half = weight.shape[0] // 2
    rows = []
    for b in range(x.shape[0]):
        h = [sum(weight[o, i] * x[b, i] for i in range(x.shape[1])) + bias[o] for o in range(weight.shape[0])]
        u, v = h[:half], h[half:]
        if layer.residual_type == "concat":
            rows.append(torch.stack(u + [u[o] * v[o] for o in range(half)]))
        else:
            rows.append(torch.stack([u[o] + u[o] * v[o] for o in range(half)]))
    return torch.stack(rows)


@pytest.mark.parametrize("residual_type, weight_rows", [("concat", 6), ("sum", 12)])
def test_factorized_interaction_multiplies_the_halves_of_one_linear_map(residual_type, weight_rows):
    layer = randomised(FactorizedInteraction(7, 6, residual_type))
    assert layer.linear.weight.shape == (weight_rows, 7)
    x = torch.randn(B, 7, generator=generator(), dtype=torch.float64)
    out = layer(x)
    assert out.shape == (B, 6)
    torch.testing.assert_close(out, factorized_by_loops(layer, x))


def test_factorized_interaction_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="even width"):
        FactorizedInteraction(4, 5, "concat")
    with pytest.raises(ValueError, match="residual_type"):
        FactorizedInteraction(4, 4, "product")


def test_final_block_chains_factorized_layers_in_fuxictrs_order():
    block = FinalBlock(8, [6, 4], activation="relu", dropout=0.5, batch_norm=True, residual_type="concat")
    kinds = [type(m) for m in block.layers]
    expected = [FactorizedInteraction, BatchNorm, torch.nn.ReLU, Dropout] * 2
    assert kinds == expected and block.output_dim == 4
    plain = randomised(FinalBlock(8, [6, 4], activation="relu", dropout=0.0, batch_norm=False, residual_type="sum"))
    x = torch.randn(B, 8, generator=generator(), dtype=torch.float64)
    hidden = x
    for layer in (plain.layers[0], plain.layers[2]):
        hidden = factorized_by_loops(layer, hidden).clamp(min=0)
    torch.testing.assert_close(plain(x), hidden)


# -- FinalMLP's layers -----------------------------------------------------------------------


def test_bilinear_fusion_is_each_heads_bilinear_form_plus_both_linear_terms():
    heads, dim1, dim2 = 2, 6, 4
    fusion = randomised(BilinearFusion(dim1, dim2, heads))
    o1 = torch.randn(B, dim1, generator=generator(2), dtype=torch.float64)
    o2 = torch.randn(B, dim2, generator=generator(3), dtype=torch.float64)
    w1, b1 = fusion.linear1.weight[0], fusion.linear1.bias[0]
    w2, b2 = fusion.linear2.weight[0], fusion.linear2.bias[0]
    head1, head2 = dim1 // heads, dim2 // heads
    expected = []
    for b in range(B):
        total = sum(w1[i] * o1[b, i] for i in range(dim1)) + b1 + sum(w2[j] * o2[b, j] for j in range(dim2)) + b2
        for h, i, j in itertools.product(range(heads), range(head1), range(head2)):
            total = total + o1[b, h * head1 + i] * fusion.bilinear[h, i, j] * o2[b, h * head2 + j]
        expected.append(total)
    torch.testing.assert_close(fusion(o1, o2), torch.stack(expected))


def test_bilinear_fusion_starts_glorot_normal_as_one_column_and_checks_its_heads():
    torch.manual_seed(0)
    fusion = BilinearFusion(400, 100, 5)  # BARS's Frappe streams: 5 heads of 80 x 20
    assert fusion.bilinear.shape == (5, 80, 20)
    assert fusion.bilinear.std().item() == pytest.approx((2 / (8000 + 1)) ** 0.5, rel=0.03)
    with pytest.raises(ValueError, match="must divide"):
        BilinearFusion(400, 100, 3)


@pytest.fixture
def schema():
    return Schema.build([("a", "categorical", 3), ("b", "categorical", 5), ("c", "numeric", 4)], dense=["d"])


def test_context_embedding_reads_rows_of_its_own_for_the_chosen_fields_in_schema_order(schema):
    table = ContextEmbedding(schema, ["c", "a"], K, init_std=0.1)
    assert table.table.weight.shape == (3 + 4, K)  # a's 3 ids, then c's 4
    batch = random_batch(schema, size=B)
    starts = {"a": 0, "c": 3}
    expected = torch.zeros(B, 2, K)
    for b in range(B):
        for slot, name in enumerate(("a", "c")):
            field = next(f for f in schema.sparse_fields if f.name == name)
            column = schema.sparse_fields.index(field)
            expected[b, slot] = table.table.weight[starts[name] + batch.x[b, column] - field.offset]
    torch.testing.assert_close(table(batch), expected)


@pytest.mark.parametrize("fields", [["d"], ["z"], [], ["a", "a"]])
def test_context_embedding_takes_distinct_sparse_fields_only(schema, fields):
    with pytest.raises(ValueError, match="context fields"):
        ContextEmbedding(schema, fields, K, init_std=0.1)


def test_feature_gate_weights_each_input_by_twice_a_sigmoid_of_its_context(schema):
    gate = FeatureGate(schema, ["b"], [6], 8, K, init_std=0.5)
    batch = random_batch(schema, size=B)
    inputs = torch.randn(B, 8, generator=generator())
    rows = []
    for b in range(B):
        context = gate.context.table.weight[batch.x[b, 1] - schema.sparse_fields[1].offset]
        rows.append(inputs[b] * 2 * torch.sigmoid(gate.mlp(context.unsqueeze(0))[0]))
    torch.testing.assert_close(gate(batch, inputs), torch.stack(rows))
    assert isinstance(gate.mlp, MLP) and gate.mlp.output_dim == 8


def test_feature_gate_without_context_learns_one_weight_per_input_from_a_zero_start(schema):
    gate = FeatureGate(schema, [], [6], 8, K, init_std=0.5)
    assert gate.context is None and torch.equal(gate.vector, torch.zeros(1, K))
    inputs = torch.randn(B, 8, generator=generator())
    weights = 2 * torch.sigmoid(gate.mlp(gate.vector))
    torch.testing.assert_close(gate(random_batch(schema, size=B), inputs), inputs * weights)


# -- the models --------------------------------------------------------------------------------


def test_finalmlp_without_feature_selection_feeds_both_streams_the_embeddings():
    schema = small_schema()
    selection = dict(enabled=False, stream1_context=[], stream2_context=[], hidden_units=[4])
    model = build("finalmlp", schema, feature_selection=selection).eval()
    batch = random_batch(schema)
    flat = model.embedding(batch).flatten(1)
    assert model.gates is None and model.id_tables() == [model.embedding]
    torch.testing.assert_close(model(batch), model.fusion(model.mlp1(flat), model.mlp2(flat)))


def test_finalmlp_gates_read_tables_that_the_embedding_regulariser_covers():
    schema = small_schema()
    model = build("finalmlp", schema, embedding_table_l2=0.1)
    contexts = [gate.context for gate in model.gates]
    assert set(map(id, model.id_tables())) == set(map(id, [model.embedding, *contexts]))
    tables = [model.embedding.table.weight, model.embedding.dense, *(c.table.weight for c in contexts)]
    expected = 0.1 / 2 * sum(t.pow(2).sum() for t in tables)
    torch.testing.assert_close(model.penalty(random_batch(schema)), expected)


def test_finalnet_2b_averages_its_blocks_logits_and_1b_has_one_block():
    schema = small_schema()
    model = build("finalnet", schema).eval()
    batch = random_batch(schema)
    logits = model.block_logits(batch)
    assert logits.shape == (32, 2)
    torch.testing.assert_close(model(batch), 0.5 * (logits[:, 0] + logits[:, 1]))
    embedded = model.embedding(batch)
    y2 = model.head2(model.block2(embedded.flatten(1))).squeeze(1)
    torch.testing.assert_close(logits[:, 1], y2)
    one = build("finalnet", schema, block_type="1B", field_gate=False).eval()
    assert one.block2 is None and one.head2 is None and one.field_gate is None
    y1 = one.head1(one.block1(one.embedding(batch).flatten(1))).squeeze(1)
    torch.testing.assert_close(one(batch), y1)
    with pytest.raises(ValueError, match="block_type"):
        build("finalnet", schema, block_type="3B")


def bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities, written out."""
    return -(target * p.log() + (1 - target) * (1 - p).log()).mean()


def distilling(block1: bool, block2: bool) -> dict:
    """``build`` arguments: FinalNet's config blocks with these ``distill`` settings."""
    settings = model_settings("finalnet")
    return {"block1": {**settings["block1"], "distill": block1}, "block2": {**settings["block2"], "distill": block2}}


def test_finalnet_distill_adds_each_blocks_bce_against_the_detached_prediction():
    schema = small_schema()
    batch = Batch(*(t.double() if t is not None and t.is_floating_point() else t for t in random_batch(schema)))
    model = build("finalnet", schema, embedding_table_l2=0.1, **distilling(True, True)).double().eval()
    logits = model.block_logits(batch)
    p = torch.sigmoid(0.5 * (logits[:, 0] + logits[:, 1]))
    main = bce(p, batch.y)
    objective, data_loss = model.losses(batch)
    torch.testing.assert_close(data_loss, main)
    blocks = bce(torch.sigmoid(logits[:, 0]), p) + bce(torch.sigmoid(logits[:, 1]), p)
    torch.testing.assert_close(objective, main + model.penalty(batch) + blocks)
    # the soft label is detached: block 2's head gets its own term's gradient and the main BCE's, no more
    objective.backward()
    supervised = model.head2.bias.grad.clone()
    model.zero_grad()
    (main + bce(torch.sigmoid(logits[:, 1]), p.detach())).backward()
    torch.testing.assert_close(supervised, model.head2.bias.grad)
    plain = build("finalnet", schema, embedding_table_l2=0.1, **distilling(False, False)).double().eval()
    objective, data_loss = plain.losses(batch)
    torch.testing.assert_close(data_loss, bce(torch.sigmoid(plain(batch)), batch.y))
    torch.testing.assert_close(objective, data_loss + plain.penalty(batch))
    second = build("finalnet", schema, **distilling(False, True)).double().eval()
    logits = second.block_logits(batch)
    p = torch.sigmoid(second(batch))
    torch.testing.assert_close(second.losses(batch)[0], bce(p, batch.y) + bce(torch.sigmoid(logits[:, 1]), p))
    one = build("finalnet", schema, block_type="1B", **distilling(True, True)).double().eval()
    torch.testing.assert_close(one.losses(batch)[0], bce(torch.sigmoid(one(batch)), batch.y))


def test_finalnet_field_gate_starts_open_under_fuxictr_initialisation():
    schema = small_schema()
    model = build("finalnet", schema, init={"embedding_std": 1e-4, "linear": "xavier_normal"})
    model.reset_parameters()
    embedded = model.embedding(random_batch(schema))
    torch.testing.assert_close(model.field_gate(embedded), torch.cat([embedded, embedded], dim=1))


def test_spec_objects_reach_the_checkpoint_as_plain_values():
    settings = model_settings("finalnet")
    spec = FinalBlockSpec.of(settings["block1"])
    model = models.FinalNet(small_schema(), **{**settings, "block1": spec})
    assert model.hparams["block1"] == spec.to_dict() and FinalBlockSpec.of(model.hparams["block1"]) == spec
