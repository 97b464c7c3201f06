"""AOANet's generalized interaction layer and DeepIM's interaction machine against loops over their
papers' formulas, the two models' wiring, and BARS's printed parameter counts, rebuilt from our
Frappe_x1 presets."""

import itertools
import math

import pytest
import torch

from datamodules.schema import Schema
from models.layers import GeneralizedInteraction, GeneralizedInteractionNet, InteractionMachine
from tests.helpers import build, randn, random_batch, randomised, small_schema, states_at_one_and_two_threads

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 3, 4, 5


# -- AOANet's generalized interaction ------------------------------------------------------------


def generalized_interaction_by_loops(layer: GeneralizedInteraction, x0: torch.Tensor, x: torch.Tensor):
    """``out_s = (W_s * sum_{i, f} alpha[i, f, s] x0_f x_i^T) h_s`` entry by entry."""
    inputs, fields, subspaces = layer.alpha.shape
    W, alpha, h = layer.weight, layer.alpha, layer.h
    out = torch.zeros(x0.shape[0], subspaces, x0.shape[2], dtype=torch.float64)
    for b in range(x0.shape[0]):
        for s in range(subspaces):
            fused = [[0.0] * K for _ in range(K)]  # sum of the weighted outer products, [K, K]
            for i in range(inputs):
                for f in range(fields):
                    for k in range(K):
                        for d in range(K):
                            fused[k][d] += alpha[i, f, s].item() * x0[b, f, k].item() * x[b, i, d].item()
            for k in range(K):
                out[b, s, k] = sum(W[s, k, d].item() * fused[k][d] * h[s, d].item() for d in range(K))
    return out


@pytest.mark.parametrize("inputs", [F, 2])
def test_generalized_interaction_equals_its_definition(inputs):
    layer = randomised(GeneralizedInteraction(inputs, F, 3, K))
    x0, x = randn(B, F, K, seed=5), randn(B, inputs, K, seed=6)
    torch.testing.assert_close(layer(x0, x), generalized_interaction_by_loops(layer, x0, x))


def test_generalized_interaction_starts_from_the_identity_and_ones():
    layer = GeneralizedInteraction(F, F, 3, K)
    assert torch.equal(layer.weight, torch.eye(K).expand(3, K, K))
    assert torch.equal(layer.alpha, torch.ones(F, F, 3)) and torch.equal(layer.h, torch.ones(3, K))


def test_generalized_interaction_net_chains_its_layers_on_the_embeddings():
    net = randomised(GeneralizedInteractionNet(F, K, num_layers=3, num_subspaces=2))
    x0 = randn(B, F, K, seed=5)
    x = x0
    for layer in net.layers:
        x = generalized_interaction_by_loops(layer, x0, x)
    torch.testing.assert_close(net(x0), x.flatten(1))
    assert [layer.alpha.shape for layer in net.layers] == [(F, F, 2), (2, F, 2), (2, F, 2)] and net.output_dim == 2 * K


def test_aoanet_heads_the_mlp_beside_the_interaction_net():
    schema = small_schema()
    model = build("aoanet", schema).eval()
    batch = random_batch(schema)
    embedded = model.embedding(batch)
    expected = model.head(torch.cat([model.dnn(embedded.flatten(1)), model.gin(embedded)], dim=1)).squeeze(1)
    torch.testing.assert_close(model(batch), expected)


# -- DeepIM's interaction machine ----------------------------------------------------------------


def interactions_by_subsets(e: torch.Tensor, order: int) -> torch.Tensor:
    """``[I_1; ...; I_order]``, each ``I_j`` summed over the field sets of ``j`` enumerated one by one."""
    out = torch.zeros(e.shape[0], order * e.shape[2], dtype=torch.float64)
    for b in range(e.shape[0]):
        for j in range(1, order + 1):
            for k in range(e.shape[2]):
                total = sum(
                    math.prod(e[b, f, k].item() for f in subset) for subset in itertools.combinations(range(F), j)
                )
                out[b, (j - 1) * e.shape[2] + k] = total
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_interaction_machine_sums_every_field_set_of_each_order(order):
    e = randn(B, F, K, seed=order)
    torch.testing.assert_close(InteractionMachine(order)(e), interactions_by_subsets(e, order))
    assert InteractionMachine(order).output_dim(K) == order * K


def test_interaction_machine_of_more_orders_than_fields_has_zeros_beyond_them():
    e = randn(B, F, K, seed=3)
    terms = InteractionMachine(F + 2)(e)
    torch.testing.assert_close(terms[:, F * K :], torch.zeros(B, 2 * K, dtype=torch.float64))
    with pytest.raises(ValueError, match="order >= 1"):
        InteractionMachine(0)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_deepim_sums_the_interaction_unit_and_the_mlp(batch_norm):
    schema = small_schema()
    model = build("deepim", schema, im_order=3, im_batch_norm=batch_norm).eval()
    batch = random_batch(schema)
    embedded = model.embedding(batch)
    interactions = model.im(embedded)
    if batch_norm:
        interactions = model.im_norm(interactions)
    expected = (model.im_head(interactions) + model.dnn(embedded.flatten(1))).squeeze(1)
    torch.testing.assert_close(model(batch), expected)
    assert (model.im_norm is not None) == batch_norm and model.im_head.in_features == 3 * 4


def test_the_thread_count_does_not_change_a_step_of_the_presets_settings():
    """The zoo's thread test runs each config's settings; these are the ones BARS's presets add."""
    schema = Schema.build([(f"c{i}", "categorical", 500) for i in range(8)], dense=["d0"])
    batch = random_batch(schema, size=4096)
    for name, settings in [
        ("deepim", dict(im_order=3, im_batch_norm=True, batch_norm=True)),
        ("aoanet", dict(num_interaction_layers=1, num_subspaces=2, batch_norm=True)),
    ]:
        states = states_at_one_and_two_threads(
            name, schema, batch, embedding_dim=16, hidden_units=[256, 128], **settings
        )
        for key, value in states[0].items():
            assert torch.equal(value, states[1][key]), f"{name}: {key} differs between 1 and 2 threads"
