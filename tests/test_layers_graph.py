"""FiGNN's field graph, AFN's logarithmic neurons and SAM's self-attentive interactions against loops
over their papers' formulas, the models' wiring, and their presets' settings at one and two threads."""

import math

import pytest
import torch

from datamodules.schema import Schema
from models.layers import (
    AttentionalScoring,
    ChannelBatchNorm,
    FieldGraph,
    FieldGraphNetwork,
    GraphPropagation,
    LogarithmicTransformation,
    SAMLayer,
    SelfAttentiveInteraction,
)
from tests.helpers import build, randn, random_batch, randomised, small_schema, states_at_one_and_two_threads

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 3, 4, 5


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def dot(u, v) -> float:
    return sum(a * b for a, b in zip(u, v))


def matvec(m: torch.Tensor, v: list[float]) -> list[float]:
    return [dot(m[k].tolist(), v) for k in range(m.shape[0])]


# -- FiGNN ---------------------------------------------------------------------------------------


def graph_by_loops(layer: FieldGraph, e: torch.Tensor) -> torch.Tensor:
    """``A_ij = exp(s_ij) / sum_{l != i} exp(s_il)``, ``s_ij = LeakyReLU(w^T [e_i; e_j])``, ``A_ii = 0``."""
    w = layer.score.weight[0].tolist()
    out = torch.zeros(e.shape[0], F, F, dtype=torch.float64)
    for b in range(e.shape[0]):
        for i in range(F):
            scores = {}
            for j in range(F):
                if j != i:
                    s = dot(w, e[b, i].tolist() + e[b, j].tolist())
                    scores[j] = s if s > 0 else 0.01 * s
            total = sum(math.exp(s) for s in scores.values())
            for j, s in scores.items():
                out[b, i, j] = math.exp(s) / total
    return out


def test_field_graph_weighs_every_other_field_by_attention():
    layer, e = randomised(FieldGraph(K)), randn(B, F, K)
    graph = layer(e)
    torch.testing.assert_close(graph, graph_by_loops(layer, e))
    torch.testing.assert_close(graph.sum(-1), torch.ones(B, F, dtype=torch.float64))


def propagation_by_loops(layer: GraphPropagation, graph: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``a_i = W_in^i sum_j A_ij W_out^j h_j + b``."""
    out = torch.zeros(h.shape[0], F, K, dtype=torch.float64)
    for b in range(h.shape[0]):
        sent = [matvec(layer.w_out[j], h[b, j].tolist()) for j in range(F)]
        for i in range(F):
            gathered = [sum(graph[b, i, j].item() * sent[j][k] for j in range(F)) for k in range(K)]
            received = matvec(layer.w_in[i], gathered)
            out[b, i] = torch.tensor([received[k] + layer.bias[k].item() for k in range(K)], dtype=torch.float64)
    return out


def test_graph_propagation_sends_and_receives_through_each_fields_own_maps():
    layer, h = randomised(GraphPropagation(F, K)), randn(B, F, K)
    graph = torch.softmax(randn(B, F, F, seed=3), dim=-1)
    torch.testing.assert_close(layer(graph, h), propagation_by_loops(layer, graph, h))


def gru_by_loops(cell: torch.nn.GRUCell, x: list[float], h: list[float]) -> list[float]:
    """``r, z = sigma(W_i x + b_i + W_h h + b_h)`` (rows r, z, n of the stacked maps),
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``."""
    gi = [a + b for a, b in zip(matvec(cell.weight_ih, x), cell.bias_ih.tolist())]
    gh = [a + b for a, b in zip(matvec(cell.weight_hh, h), cell.bias_hh.tolist())]
    r = [sigmoid(gi[k] + gh[k]) for k in range(K)]
    z = [sigmoid(gi[K + k] + gh[K + k]) for k in range(K)]
    n = [math.tanh(gi[2 * K + k] + r[k] * gh[2 * K + k]) for k in range(K)]
    return [(1 - z[k]) * n[k] + z[k] * h[k] for k in range(K)]


@pytest.mark.parametrize("gru, residual, shared", [(True, True, False), (False, True, False), (True, False, True)])
def test_field_graph_network_updates_every_node_for_each_step(gru, residual, shared):
    net, e = randomised(FieldGraphNetwork(F, K, 3, gru, residual, shared)), randn(B, F, K)
    graph = graph_by_loops(net.graph, e)
    h = e.clone()
    for t in range(3):
        messages = propagation_by_loops(net.steps[0 if shared else t], graph, h)
        for b in range(B):
            for i in range(F):
                if gru:
                    state = gru_by_loops(net.gru, messages[b, i].tolist(), h[b, i].tolist())
                else:
                    state = (h[b, i] + messages[b, i]).tolist()
                messages[b, i] = torch.tensor(state, dtype=torch.float64) + (e[b, i] if residual else 0)
        h = messages
    torch.testing.assert_close(net(e), h)
    assert len(net.steps) == (1 if shared else 3) and (net.gru is not None) == gru


def test_attentional_scoring_gates_each_fields_score():
    layer, h = randomised(AttentionalScoring(F, K)), randn(B, F, K)
    expected = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        flat = h[b].flatten().tolist()
        for i in range(F):
            gate = sigmoid(dot(layer.gate.weight[i].tolist(), flat))
            expected[b] += gate * dot(layer.score.weight[0].tolist(), h[b, i].tolist())
    torch.testing.assert_close(layer(h), expected)


def test_fignn_reads_out_the_propagated_embeddings():
    schema = small_schema()
    model = build("fignn", schema).eval()
    batch = random_batch(schema)
    torch.testing.assert_close(model(batch), model.readout(model.gnn(model.embedding(batch))))
    with pytest.raises(ValueError, match="at least one layer"):
        FieldGraphNetwork(F, K, 0, True, True, False)


# -- AFN -----------------------------------------------------------------------------------------


def normalised_by_loops(x: torch.Tensor, weight, bias, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode batch norm of ``[B, C, L]``: channel ``c`` over its ``B L`` values, biased variance."""
    out = torch.zeros_like(x)
    for c in range(x.shape[1]):
        values = [x[b, c, k].item() for b in range(x.shape[0]) for k in range(x.shape[2])]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        for b in range(x.shape[0]):
            for k in range(x.shape[2]):
                out[b, c, k] = (x[b, c, k] - mean) / math.sqrt(var + eps) * weight[c].item() + bias[c].item()
    return out


def test_channel_batch_norm_is_torchs_batch_norm_over_a_sequence():
    x = randn(6, F, K)
    ours, torchs = randomised(ChannelBatchNorm(F)), randomised(torch.nn.BatchNorm1d(F))
    torchs.load_state_dict(ours.state_dict())
    out = ours(x)
    torch.testing.assert_close(out, normalised_by_loops(x, ours.weight, ours.bias))
    torch.testing.assert_close(out, torchs(x))
    for name, buffer in ours.named_buffers():  # the running statistics follow torch's rule
        torch.testing.assert_close(buffer, dict(torchs.named_buffers())[name])
    ours.eval(), torchs.eval()
    torch.testing.assert_close(ours(x), torchs(x))


def test_logarithmic_neurons_raise_the_fields_magnitudes_to_learned_powers():
    layer, e = randomised(LogarithmicTransformation(F, 3, floor=1e-3)), randn(B, F, K)
    e[0, 1, 2], e[1, 2, 0] = 0.0, -1e-6  # below the floor: counted as the floor
    logs = torch.tensor(
        [[[math.log(max(abs(e[b, i, k].item()), 1e-3)) for k in range(K)] for i in range(F)] for b in range(B)],
        dtype=torch.float64,
    )
    logs = normalised_by_loops(logs, layer.log_norm.weight, layer.log_norm.bias)
    w = layer.powers.weight
    neurons = torch.zeros(B, 3, K, dtype=torch.float64)
    for b in range(B):
        for j in range(3):
            for k in range(K):
                neurons[b, j, k] = math.exp(sum(w[j, i].item() * logs[b, i, k].item() for i in range(F)))
    expected = normalised_by_loops(neurons, layer.exp_norm.weight, layer.exp_norm.bias).flatten(1)
    torch.testing.assert_close(layer(e), expected)
    assert layer.output_dim(K) == 3 * K


def test_afn_plus_weighs_the_afn_and_the_dnn_logits():
    schema = small_schema()
    model = build("afn_plus", schema).eval()
    batch = random_batch(schema)
    afn = model.afn(model.lnn(model.embedding(batch)))
    dnn = model.dnn(model.dnn_embedding(batch).flatten(1))
    torch.testing.assert_close(model(batch), model.head(torch.cat([afn, dnn], dim=1)).squeeze(1))
    plain = build("afn", schema).eval()
    torch.testing.assert_close(plain(batch), plain.afn(plain.lnn(plain.embedding(batch))).squeeze(1))
    with pytest.raises(ValueError, match="positive floor"):
        LogarithmicTransformation(F, 3, floor=0.0)


# -- SAM -----------------------------------------------------------------------------------------


def sam_layer_by_loops(layer: SAMLayer, e: torch.Tensor) -> torch.Tensor:
    """``s_ij = <e_i, W_K e_j>``; pairs ``s_ij w_ij`` / ``s_ij e_i * e_j`` (SAM2), their sums over ``j``
    plus ``W_Q e_i`` (SAM3)."""
    kind = layer.interaction
    pairs = torch.zeros(e.shape[0], F, F, K, dtype=torch.float64)
    for b in range(e.shape[0]):
        for i in range(F):
            for j in range(F):
                key = e[b, j].tolist() if layer.key is None else matvec(layer.key.weight, e[b, j].tolist())
                s = dot(e[b, i].tolist(), key)
                for k in range(K):
                    other = (
                        layer.weight[i, j, k].item() if kind.endswith("A") else e[b, i, k].item() * e[b, j, k].item()
                    )
                    pairs[b, i, j, k] = s * other
    if kind.startswith("SAM2"):
        return pairs
    out = pairs.sum(dim=2)
    if layer.residual is not None:
        for b in range(e.shape[0]):
            for i in range(F):
                out[b, i] += torch.tensor(matvec(layer.residual.weight, e[b, i].tolist()), dtype=torch.float64)
    return out


@pytest.mark.parametrize("interaction", ["SAM2A", "SAM2E", "SAM3A", "SAM3E"])
def test_sam_layers_follow_their_formulas(interaction):
    layer, e = randomised(SAMLayer(F, K, interaction, residual=True, dropout=0.0)), randn(B, F, K)
    torch.testing.assert_close(layer(e), sam_layer_by_loops(layer, e))
    assert (layer.key is None) == interaction.startswith("SAM2") and (layer.weight is None) == interaction.endswith("E")


def test_sam_stacks_the_sam3_layers_and_keeps_one_layer_of_pairs():
    e = randn(B, F, K)
    stacked = randomised(SelfAttentiveInteraction(F, K, "SAM3E", 3, residual=False, dropout=0.0))
    out = e
    for layer in stacked.layers:
        out = sam_layer_by_loops(layer, out)
    torch.testing.assert_close(stacked(e), out.flatten(1))
    assert stacked.output_dim == F * K and len(stacked.layers) == 3
    pairs = SelfAttentiveInteraction(F, K, "SAM2A", 3, residual=False, dropout=0.0)
    assert len(pairs.layers) == 1 and pairs.output_dim == F * F * K
    with pytest.raises(ValueError, match="expected one of"):
        SAMLayer(F, K, "SAM1", residual=False, dropout=0.0)


# -- the presets' settings at one and two threads --------------------------------------------------

PRESET_SETTINGS = [
    ("fignn", dict(graph_layers=3, gru=False, residual=True)),  # BARS's Frappe_x1 run: plain sums
    ("afn_plus", dict(logarithmic_neurons=64, log_floor=1e-5, batch_norm=True)),  # BARS's Criteo_x4 run
    ("sam", dict(interaction="SAM3A", interaction_layers=2, residual=True)),  # BARS's Frappe_x1 run
    ("sam", dict(interaction="SAM2A")),
]


@pytest.mark.parametrize(
    "name, settings", PRESET_SETTINGS, ids=[f"{name}-{index}" for index, (name, _) in enumerate(PRESET_SETTINGS)]
)
def test_the_thread_count_does_not_change_a_step_of_the_presets_settings(name, settings):
    """The zoo's thread test runs each config's settings; these are the ones BARS's presets add."""
    schema = Schema.build([(f"c{i}", "categorical", 500) for i in range(8)], dense=["d0"])
    batch = random_batch(schema, size=4096)
    states = states_at_one_and_two_threads(name, schema, batch, embedding_dim=16, **settings)
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), f"{name}: {key} differs between 1 and 2 threads"
