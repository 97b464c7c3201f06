"""EDCN's bridge and regulation modules and its towers, and DESTINE's disentangled self-attention,
against loops over their papers' formulas; the thread count on the settings BARS's presets add; and
BARS's printed parameter counts, rebuilt from our Frappe_x1 presets."""

import math

import pytest
import torch

from datamodules.schema import Schema
from models.layers import (
    Bridge,
    CrossNetwork,
    DisentangledAttentionSpec,
    DisentangledSelfAttention,
    EDCNSpec,
    Regulation,
)
from tests.helpers import randn, random_batch, randomised, states_at_one_and_two_threads

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 3, 4, 2
D = F * K


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def linear(weight: torch.Tensor, bias, x: list[float]) -> list[float]:
    return [
        sum(weight[i, j].item() * x[j] for j in range(len(x))) + (bias[i].item() if bias is not None else 0.0)
        for i in range(weight.shape[0])
    ]


# -- EDCN ------------------------------------------------------------------------------------------


def bridge_by_loops(bridge: Bridge, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    out = torch.empty(B, D, dtype=torch.float64)
    for b in range(B):
        xs, hs = x[b].tolist(), h[b].tolist()
        if bridge.bridge_type == "pointwise_addition":
            row = [xs[i] + hs[i] for i in range(D)]
        elif bridge.bridge_type == "hadamard_product":
            row = [xs[i] * hs[i] for i in range(D)]
        elif bridge.bridge_type == "concatenation":
            row = [max(v, 0.0) for v in linear(bridge.concat.weight, bridge.concat.bias, xs + hs)]
        else:
            weights = []
            for net, v in zip(bridge.attention, (xs, hs)):
                hidden = [max(u, 0.0) for u in linear(net[0].weight, net[0].bias, v)]
                weights.append(softmax(linear(net[2].weight, None, hidden)))
            row = [weights[0][i] * xs[i] + weights[1][i] * hs[i] for i in range(D)]
        out[b] = torch.tensor(row, dtype=torch.float64)
    return out


@pytest.mark.parametrize(
    "bridge_type", ["pointwise_addition", "hadamard_product", "concatenation", "attention_pooling"]
)
def test_bridge_equals_its_definition(bridge_type):
    bridge = randomised(Bridge(D, bridge_type))
    x, h = randn(B, D, seed=3), randn(B, D, seed=4)
    torch.testing.assert_close(bridge(x, h), bridge_by_loops(bridge, x, h))
    with pytest.raises(ValueError, match="bridge type"):
        Bridge(D, "sum")


@pytest.mark.parametrize("gated, batch_norm", [(True, False), (False, False), (True, True)])
def test_regulation_gates_each_field_per_tower(gated, batch_norm):
    regulation = randomised(Regulation(F, K, 3.0, gated=gated, batch_norm=batch_norm)).eval()
    x = randn(B, D, seed=5)
    towers = regulation(x)
    for tower in range(2):
        gates = softmax([w / 3.0 for w in regulation.weight[tower].tolist()]) if gated else [1.0] * F
        expected = torch.tensor(
            [[gates[i // K] * x[b, i].item() for i in range(D)] for b in range(B)], dtype=torch.float64
        )
        if batch_norm:
            norm = regulation.norms[tower]
            expected = (expected - norm.running_mean) / torch.sqrt(
                norm.running_var + norm.eps
            ) * norm.weight + norm.bias
        torch.testing.assert_close(towers[tower], expected)


def test_gates_start_uniform_and_a_high_temperature_flattens_them():
    x = randn(B, D, seed=6)
    cross, deep = Regulation(F, K, 1.0, gated=True, batch_norm=False).double()(x)
    torch.testing.assert_close(cross, x / F)
    torch.testing.assert_close(deep, x / F)
    sharp, flat = (Regulation(F, K, tau, gated=True, batch_norm=False) for tau in (1.0, 10.0))
    with torch.no_grad():
        sharp.weight[:, 0] = flat.weight[:, 0] = 3.0
    spread = [torch.softmax(r.weight / r.temperature, 1)[0].max().item() for r in (sharp, flat)]
    assert spread[0] > spread[1] > 1 / F


def test_cross_network_layers_one_at_a_time_give_the_network():
    cross = randomised(CrossNetwork(D, 3))
    x0 = randn(B, D, seed=7)
    x = x0
    for index in range(3):
        x = cross.layer(index, x0, x)
    torch.testing.assert_close(x, cross(x0))


@pytest.mark.parametrize("bridge_type", ["hadamard_product", "concatenation"])
def test_edcn_towers_equal_their_definition(bridge_type):
    spec = EDCNSpec(layers=3, bridge=bridge_type, regulation=True, temperature=2.0, batch_norm=False,
                    activation="relu", dropout=0.0)  # fmt: skip
    towers = randomised(EDCNSpec.of(spec.to_dict()).build(F, K))
    e = randn(B, D, seed=8)
    out = torch.empty(B, 3 * D, dtype=torch.float64)
    for b in range(B):

        def regulate(layer, v):
            gates = [softmax([w / 2.0 for w in towers.regulations[layer].weight[t].tolist()]) for t in range(2)]
            return [[gates[t][i // K] * v[i] for i in range(D)] for t in range(2)]

        x, h = regulate(0, e[b].tolist())
        x0 = x
        for layer in range(3):
            w, c = towers.cross.weight[layer].tolist(), towers.cross.bias[layer].tolist()
            dot = sum(w[i] * x[i] for i in range(D))
            x = [x0[i] * dot + c[i] + x[i] for i in range(D)]
            deep = towers.deep[layer].layers[0]
            h = [max(v, 0.0) for v in linear(deep.weight, deep.bias, h)]
            pair = (torch.tensor([v] * B, dtype=torch.float64) for v in (x, h))
            f = bridge_by_loops(towers.bridges[layer], *pair)[0].tolist()
            if layer < 2:
                x, h = regulate(layer + 1, f)
        out[b] = torch.tensor(x + h + f, dtype=torch.float64)
    torch.testing.assert_close(towers(e), out)


def test_edcn_without_gates_feeds_both_towers_the_same_input():
    spec = EDCNSpec(layers=2, bridge="pointwise_addition", regulation=False, temperature=1.0, batch_norm=True,
                    activation="relu", dropout=0.0)  # fmt: skip
    towers = spec.build(F, K)
    assert all(r.weight is None and len(r.norms) == 2 for r in towers.regulations)
    assert sum(p.numel() for p in towers.parameters()) == 2 * 2 * D + 2 * (D * D + D) + 2 * 2 * 2 * D
    with pytest.raises(ValueError, match="at least one layer"):
        EDCNSpec(**{**spec.to_dict(), "layers": 0}).build(F, K)


# -- DESTINE -------------------------------------------------------------------------------------


def disentangled_by_loops(layer: DisentangledSelfAttention, e: torch.Tensor) -> torch.Tensor:
    """The layer's formula with loops over examples, heads and field pairs (its docstring)."""
    heads, d, fields = layer.heads, layer.head_dim, e.shape[1]
    out = torch.zeros(e.shape[0], fields, heads * d, dtype=torch.float64)
    for b in range(e.shape[0]):
        rows = [e[b, m].tolist() for m in range(fields)]
        maps = [linear(f.weight, f.bias, r) for f in (layer.query, layer.key, layer.value) for r in rows]
        q, k, v = (maps[i * fields : (i + 1) * fields] for i in range(3))
        if layer.relu_before:
            q, k, v = ([[max(x, 0.0) for x in r] for r in t] for t in (q, k, v))
        unary = [linear(layer.unary.weight, layer.unary.bias, r) for r in rows]
        for h in range(heads):
            dims = range(h * d, (h + 1) * d)
            q_mean = [sum(q[j][i] for j in range(fields)) / fields for i in range(heads * d)]
            k_mean = [sum(k[j][i] for j in range(fields)) / fields for i in range(heads * d)]
            u = softmax([unary[j][h] for j in range(fields)])
            for m in range(fields):
                scores = [sum((q[m][i] - q_mean[i]) * (k[j][i] - k_mean[i]) for i in dims) for j in range(fields)]
                pair = softmax([s / math.sqrt(d) if layer.scale else s for s in scores])
                for i in dims:
                    out[b, m, i] = sum((pair[j] + u[j]) * v[j][i] for j in range(fields))
        if layer.project is not None:
            for m in range(fields):
                out[b, m] += torch.tensor(
                    linear(layer.project.weight, layer.project.bias, rows[m]), dtype=torch.float64
                )
    return out


@pytest.mark.parametrize(
    "input_dim, output_dim, heads, residual, scale, relu_before",
    [(3, 4, 1, True, True, False), (4, 6, 2, False, False, True), (6, 6, 3, True, False, False)],
)
def test_disentangled_attention_equals_its_definition(input_dim, output_dim, heads, residual, scale, relu_before):
    layer = DisentangledSelfAttention(
        input_dim, output_dim, heads, residual=residual, scale=scale, relu_before=relu_before, dropout=0.0
    )
    layer = randomised(layer)
    e = randn(B, F, input_dim, seed=9)
    torch.testing.assert_close(layer(e), disentangled_by_loops(layer, e))
    assert (layer.query.bias is not None) == relu_before and layer.value.bias is not None


def test_disentangled_stack_places_its_residuals():
    spec = dict(layers=2, dim=4, heads=2, scale=True, relu_before=False, dropout=0.0)
    for residual, each, last in (("each_layer", True, False), ("last_layer", False, True), (None, False, False)):
        stack = DisentangledAttentionSpec.of({**spec, "residual": residual}).build(K)
        assert [layer.project is not None for layer in stack.layers] == [each, each]
        assert (stack.project is not None) == last and stack(torch.randn(B, F, K)).shape == (B, F, 4)
    stack = randomised(DisentangledAttentionSpec.of({**spec, "residual": "last_layer"}).build(K))
    e = randn(B, F, K, seed=10)
    torch.testing.assert_close(stack(e), stack.layers(e) + stack.project(e))
    with pytest.raises(ValueError, match="residual"):
        DisentangledAttentionSpec.of({**spec, "residual": "every_layer"}).build(K)


# -- the thread count and BARS's parameter counts --------------------------------------------------

THREAD_SETTINGS = {
    "edcn": dict(towers=dict(layers=3, bridge="attention_pooling", regulation=True, temperature=5.0, batch_norm=True,
                             activation="relu", dropout=0.3)),
    "destine": dict(attention=dict(layers=2, dim=32, heads=2, residual="each_layer", scale=True, relu_before=False,
                                   dropout=0.1), hidden_units=[256, 128], dropout=0.2, wide=True),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(THREAD_SETTINGS))
def test_the_thread_count_does_not_change_a_step_of_the_presets_settings(name):
    """DESTINE at two heads: at one (BARS's), a step still differs between 1 and 2 threads (not yet
    traced; the unary map is not the cause), see the xfail below."""
    schema = Schema.build([(f"c{i}", "categorical", 500) for i in range(8)], dense=["d0"])
    batch = random_batch(schema, size=4096)
    states = states_at_one_and_two_threads(name, schema, batch, embedding_dim=16, **THREAD_SETTINGS[name])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), f"{name}: {key} differs between 1 and 2 threads"


def test_destine_at_one_head_gives_the_same_bits_at_any_thread_count():
    """BARS's setting: one head (a unary bias, whose gradient is rounding noise, once made it differ)."""
    schema = Schema.build([(f"c{i}", "categorical", 500) for i in range(8)], dense=["d0"])
    settings = {**THREAD_SETTINGS["destine"], "attention": {**THREAD_SETTINGS["destine"]["attention"], "heads": 1}}
    states = states_at_one_and_two_threads(
        "destine", schema, random_batch(schema, size=4096), embedding_dim=16, **settings
    )
    assert all(torch.equal(value, states[1][key]) for key, value in states[0].items())
