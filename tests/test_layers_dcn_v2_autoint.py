"""DCN-V2's cross networks and AutoInt's interacting layer against loops over their papers'
formulas; DCN-V2's four structures; the thread count on the settings the zoo's tests leave off; and
BARS's printed parameter counts, rebuilt from our Frappe_x1 presets."""

import math

import pytest
import torch

import models
from datamodules.schema import Schema
from models.layers import AttentionSpec, CrossNetworkMix, CrossNetworkV2, CrossSpec, MultiHeadSelfAttention
from models.layers.mlp import LayerNorm
from tests.helpers import HIDDEN, K, build, randn, random_batch, randomised, small_schema, states_at_one_and_two_threads

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, D = 3, 4, 5


# -- DCN-V2's cross layers -----------------------------------------------------------------------


def test_full_rank_cross_network_equals_its_definition():
    layer = randomised(CrossNetworkV2(D, num_layers=3))
    x0 = randn(B, D)
    expected = torch.empty(B, D, dtype=torch.float64)
    for b in range(B):
        x = [x0[b, i].item() for i in range(D)]
        for linear in layer.layers:
            W, bias = linear.weight, linear.bias
            x = [
                x0[b, i].item() * (sum(W[i, j].item() * x[j] for j in range(D)) + bias[i].item()) + x[i]
                for i in range(D)
            ]
        expected[b] = torch.tensor(x)
    torch.testing.assert_close(layer(x0), expected)


@pytest.mark.parametrize("experts", [1, 3])
def test_mixture_of_low_rank_experts_equals_its_definition(experts):
    layers, rank = 2, 2
    layer = randomised(CrossNetworkMix(D, layers, low_rank=rank, num_experts=experts))
    x0 = randn(B, D)
    expected = torch.empty(B, D, dtype=torch.float64)
    for b in range(B):
        x = [x0[b, i].item() for i in range(D)]
        for layer_index in range(layers):
            outputs, scores = [], []
            for e in range(experts):
                U, V, C = (w[layer_index, e] for w in (layer.U, layer.V, layer.C))
                low = [math.tanh(sum(V[d, s].item() * x[d] for d in range(D))) for s in range(rank)]
                low = [math.tanh(sum(C[t, s].item() * low[s] for s in range(rank))) for t in range(rank)]
                back = [sum(U[d, s].item() * low[s] for s in range(rank)) for d in range(D)]
                outputs.append([x0[b, d].item() * (back[d] + layer.bias[layer_index, d].item()) for d in range(D)])
                if layer.gates is not None:
                    scores.append(sum(layer.gates[d, e].item() * x[d] for d in range(D)))
            gates = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores] if scores else [1.0]
            x = [sum(g * out[d] for g, out in zip(gates, outputs)) + x[d] for d in range(D)]
        expected[b] = torch.tensor(x)
    torch.testing.assert_close(layer(x0), expected)
    assert (layer.gates is None) == (experts == 1)


def test_cross_spec_builds_full_rank_or_the_mixture():
    assert isinstance(CrossSpec(layers=2, low_rank=None, num_experts=4).build(D), CrossNetworkV2)
    mixture = CrossSpec.of({"layers": 2, "low_rank": 3, "num_experts": 4}).build(D)
    assert isinstance(mixture, CrossNetworkMix) and mixture.U.shape == (2, 4, D, 3)
    assert sum(p.numel() for p in mixture.parameters()) == 2 * 4 * (2 * D * 3 + 3 * 3) + 2 * D + D * 4


# -- AutoInt's interacting layer -----------------------------------------------------------------


def attention_by_loops(layer: MultiHeadSelfAttention, e: torch.Tensor) -> torch.Tensor:
    """The layer's formula with a loop over examples, heads and field pairs (its docstring)."""
    heads, d = layer.heads, layer.head_dim
    Wq, Wk, Wv = layer.query.weight, layer.key.weight, layer.value.weight  # [H * d, input]
    out = torch.zeros(e.shape[0], e.shape[1], heads * d, dtype=torch.float64)
    for b in range(e.shape[0]):
        for h in range(heads):
            rows = slice(h * d, (h + 1) * d)
            q, k, v = e[b] @ Wq[rows].T, e[b] @ Wk[rows].T, e[b] @ Wv[rows].T  # [F, d] each
            for m in range(e.shape[1]):
                scores = [(q[m] * k[j]).sum().item() / (math.sqrt(d) if layer.scale else 1.0) for j in range(F)]
                weights = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
                out[b, m, rows] = sum(w * v[j] for j, w in enumerate(weights))
            if layer.residual:
                out[b, :, rows] += (e[b] if layer.project is None else e[b] @ layer.project.weight.T)[:, rows]
    if layer.layer_norm is not None:
        mean = out.mean(dim=2, keepdim=True)
        var = ((out - mean) ** 2).mean(dim=2, keepdim=True)
        out = (out - mean) / torch.sqrt(var + layer.layer_norm.eps) * layer.layer_norm.weight + layer.layer_norm.bias
    return out.clamp(min=0)


@pytest.mark.parametrize(
    "input_dim, output_dim, heads, residual, scale, layer_norm",
    [
        (3, 6, 2, True, False, False),  # the first layer: a projected residual
        (6, 6, 3, True, True, False),  # later layers: the identity
        (6, 6, 1, False, False, True),
        (3, 4, 2, True, True, True),
    ],
)
def test_attention_equals_its_definition(input_dim, output_dim, heads, residual, scale, layer_norm):
    layer = MultiHeadSelfAttention(input_dim, output_dim, heads, residual=residual, scale=scale, layer_norm=layer_norm)
    layer = randomised(layer)
    e = randn(B, F, input_dim, seed=7)
    torch.testing.assert_close(layer(e), attention_by_loops(layer, e))
    assert (layer.project is not None) == (residual and input_dim != output_dim)


def test_layer_norm_is_torchs():
    norm = randomised(LayerNorm(6))
    x = randn(B, F, 6, seed=3)
    torch.testing.assert_close(norm(x), torch.nn.functional.layer_norm(x, (6,), norm.weight, norm.bias, norm.eps))


def test_attention_dropout_drops_weights_in_training_only():
    plain = randomised(MultiHeadSelfAttention(3, 4, 2))
    dropped = MultiHeadSelfAttention(3, 4, 2, dropout=0.5).double()
    dropped.load_state_dict(plain.state_dict())
    e = randn(B, F, 3, seed=7)
    torch.testing.assert_close(dropped.eval()(e), plain(e))
    torch.manual_seed(0)
    assert not torch.equal(dropped.train()(e), plain(e))


def test_attention_spec_stacks_layers_from_the_embedding_width():
    spec = AttentionSpec(layers=3, dim=8, heads=2, residual=True, scale=False, layer_norm=True, dropout=0.0)
    stack = AttentionSpec.of(spec.to_dict()).build(K)
    assert [(layer.query.in_features, layer.query.out_features) for layer in stack] == [(K, 8), (8, 8), (8, 8)]
    assert [layer.project is not None for layer in stack] == [True, False, False]
    assert stack(torch.randn(B, F, K)).shape == (B, F, 8)
    with pytest.raises(ValueError, match="equal heads"):
        MultiHeadSelfAttention(K, 6, 4)


# -- the models ----------------------------------------------------------------------------------

SPEC = {"activation": "relu", "dropout": 0.0, "batch_norm": False}
CROSS = {"layers": 2, "low_rank": None, "num_experts": 4}


@pytest.mark.parametrize("structure", ["crossnet_only", "stacked", "parallel", "stacked_parallel"])
def test_dcn_v2_structures_compose_the_cross_network_and_the_mlps(structure):
    schema = small_schema()
    mlp, stacked = {**SPEC, "hidden_units": HIDDEN}, {**SPEC, "hidden_units": [7]}
    model = build("dcn_v2", schema, structure=structure, mlp=mlp, stacked_mlp=stacked)
    batch = random_batch(schema)
    x0 = model.embedding(batch).flatten(1)
    hidden = model.stacked(model.cross(x0)) if "stacked" in structure else model.cross(x0)
    parts = [hidden, model.dnn(x0)] if "parallel" in structure else [hidden]
    torch.testing.assert_close(model(batch), model.head(torch.cat(parts, dim=1)).squeeze(1))
    assert (model.stacked is not None) == ("stacked" in structure) and (model.dnn is not None) == (
        "parallel" in structure
    )


def test_dcn_v2_needs_only_the_mlps_its_structure_uses():
    schema = small_schema()
    assert build("dcn_v2", schema, structure="crossnet_only", mlp=None, stacked_mlp=None).head.in_features == F * K
    for structure, missing in [("stacked", "stacked_mlp"), ("parallel", "mlp"), ("stacked_parallel", "stacked_mlp")]:
        with pytest.raises(ValueError, match=f"structure '{structure}' needs {missing}"):
            build("dcn_v2", schema, structure=structure, **{missing: None})


def test_dcn_v2_rejects_an_unknown_structure():
    with pytest.raises(ValueError, match="structure 'deep'"):
        build("dcn_v2", small_schema(), structure="deep")


def test_crossnet_v2_is_dcn_v2s_cross_network_alone_under_its_own_name():
    from experiments.run.train import model_name

    schema = small_schema()
    alone = build("crossnet_v2", schema, cross=CROSS)
    full = build("dcn_v2", schema, structure="crossnet_only", cross=CROSS)
    assert isinstance(alone, models.DCNV2) and alone.structure == "crossnet_only" and alone.dnn is alone.stacked is None
    assert {n: p.shape for n, p in alone.named_parameters()} == {n: p.shape for n, p in full.named_parameters()}
    assert (model_name(None, alone), model_name(None, full)) == ("crossnet_v2", "dcn_v2")
    # a checkpoint's hyperparameters rebuild it (they hold this constructor's arguments alone)
    assert type(alone)(schema, **alone.hparams).structure == "crossnet_only"


@pytest.mark.parametrize(
    "name, settings",
    [
        ("dcn_v2", dict(structure="stacked_parallel", cross=dict(layers=2, low_rank=3, num_experts=3),
                        stacked_mlp=dict(hidden_units=[32], activation="relu", dropout=0.5, batch_norm=True))),
        ("autoint_plus", dict(wide=True, attention=dict(layers=2, dim=16, heads=4, residual=True, scale=True,
                                                        layer_norm=True, dropout=0.1), batch_norm=True)),
    ],
)  # fmt: skip
def test_the_thread_count_does_not_change_a_step_of_the_other_settings(name, settings):
    """The zoo's thread test runs each config's settings; these are the ones BARS's presets add."""
    schema = Schema.build([(f"c{i}", "categorical", 500) for i in range(8)], dense=["d0"])
    batch = random_batch(schema, size=4096)
    states = states_at_one_and_two_threads(name, schema, batch, embedding_dim=16, hidden_units=[256, 128], **settings)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), f"{name}: {key} differs between 1 and 2 threads"
