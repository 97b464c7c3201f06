"""HFM's holographic interactions against loops over their formulas, the wiring of CrossNet, CIN,
HFM, HFM+ and DSSM over their layers, and BARS's settings reaching them."""

import pytest
import torch

from models.dssm import tower_fields
from models.layers import HolographicInteraction
from models.layers.holographic import circular, circular_direct
from tests.helpers import build, randn, random_batch, small_schema

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 3, 4, 5
KINDS = ("circular_convolution", "circular_correlation")


def circular_by_loops(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """``(a * b)_k = sum_j a_j b_{(k - j) mod K}`` or ``(a # b)_k = sum_j a_j b_{(k + j) mod K}``,
    entry by entry."""
    out, dim = torch.zeros(a.shape, dtype=torch.float64), a.shape[-1]
    for index in range(a.shape[0]):
        for k in range(dim):
            for j in range(dim):
                partner = (k - j) % dim if kind == "circular_convolution" else (k + j) % dim
                out[index, k] += a[index, j].item() * b[index, partner].item()
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_circular_composition_is_the_formula(kind):
    a, b = randn(6, K, seed=1), randn(6, K, seed=2)
    torch.testing.assert_close(circular(a, b, kind), circular_by_loops(a, b, kind), rtol=0, atol=1e-13)
    # the real-arithmetic path that ONNX graphs take
    torch.testing.assert_close(circular_direct(a, b, kind), circular_by_loops(a, b, kind), rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_an_onnx_export_composes_the_pairs_without_complex_numbers(kind, monkeypatch):
    layer, embedded = HolographicInteraction(F, kind), randn(B, F, K, seed=3)
    expected, pooled = layer(embedded), layer.pooled(embedded)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    monkeypatch.setattr(torch.fft, "rfft", None)  # the direct path must not transform
    torch.testing.assert_close(layer(embedded), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(layer.pooled(embedded), pooled, rtol=0, atol=1e-13)


def test_convolution_commutes_and_correlation_reverses():
    a, b = randn(6, K, seed=1), randn(6, K, seed=2)
    torch.testing.assert_close(circular(a, b, "circular_convolution"), circular(b, a, "circular_convolution"))
    # a # b at shift k is b # a at shift -k
    swapped = circular(b, a, "circular_correlation")
    torch.testing.assert_close(circular(a, b, "circular_correlation"), swapped[:, [(-k) % K for k in range(K)]])


@pytest.mark.parametrize("kind", KINDS)
def test_holographic_interaction_composes_each_pair_in_row_major_order(kind):
    layer = HolographicInteraction(F, kind)
    embedded = randn(B, F, K, seed=3)
    pairs = [(i, j) for i in range(F) for j in range(i + 1, F)]
    expected = torch.stack([circular_by_loops(embedded[:, i], embedded[:, j], kind) for i, j in pairs], dim=1)
    assert layer.num_pairs == len(pairs) and list(layer.parameters()) == []
    torch.testing.assert_close(layer(embedded), expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(layer.pooled(embedded), expected.sum(dim=1), rtol=0, atol=1e-13)


def test_unknown_interaction_is_named():
    with pytest.raises(ValueError, match="hadamard"):
        HolographicInteraction(F, "hadamard")


# -- the models' wiring ------------------------------------------------------------------------------


def test_hfm_is_its_formula_over_its_layers():
    schema = small_schema()
    model = build("hfm", schema).double()
    batch = random_batch(schema)
    with torch.no_grad():
        embedded = model.embedding(batch).double()
        fields = embedded.shape[1]
        pairs = sum(
            circular_by_loops(embedded[:, i], embedded[:, j], model.holographic.kind)
            for i in range(fields)
            for j in range(i + 1, fields)
        )
        expected = model.linear(batch) + pairs @ model.projection.weight[0]
        torch.testing.assert_close(model(batch), expected, rtol=0, atol=1e-12)


def test_hfm_plus_reads_every_pair_vector():
    schema = small_schema()
    model = build("hfm_plus", schema).double()
    batch = random_batch(schema)
    with torch.no_grad():
        embedded = model.embedding(batch)
        flat = model.holographic(embedded).flatten(1)
        assert flat.shape[1] == 6 * model.embedding.dim
        torch.testing.assert_close(model(batch), model.linear(batch) + model.dnn(flat).squeeze(1))


def test_crossnet_and_cin_are_dcn_and_xdeepfm_without_their_mlps():
    schema = small_schema()
    batch = random_batch(schema)
    crossnet = build("crossnet", schema)
    with torch.no_grad():
        x0 = crossnet.embedding(batch).flatten(1)
        torch.testing.assert_close(crossnet(batch), crossnet.head(crossnet.cross(x0)).squeeze(1))
    cin = build("cin", schema)
    xdeepfm = build("xdeepfm", schema)
    xdeepfm.load_state_dict({**xdeepfm.state_dict(), **cin.state_dict()})
    with torch.no_grad():
        for layer in xdeepfm.dnn.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
                layer.bias.zero_()
        torch.testing.assert_close(cin(batch), xdeepfm(batch))


def test_dssm_is_the_inner_product_of_its_towers():
    schema = small_schema()  # c0, c1, n0 and the dense d0
    model = build("dssm", schema, item_fields=["c1", "d0"])
    batch = random_batch(schema)
    assert model.user_fields.tolist() == [0, 2] and model.item_fields.tolist() == [1, 3]
    with torch.no_grad():
        embedded = model.embedding(batch)
        user = model.user_tower(torch.cat([embedded[:, 0], embedded[:, 2]], dim=1))
        item = model.item_tower(torch.cat([embedded[:, 1], embedded[:, 3]], dim=1))
        torch.testing.assert_close(model(batch), (user * item).sum(dim=1))


def test_dssm_towers_take_named_fields_or_the_last_alone():
    schema = small_schema()
    assert tower_fields(schema, None) == ([0, 1, 2], [3])
    assert tower_fields(schema, ["c0"]) == ([1, 2, 3], [0])
    for bad in (["c9"], ["c0", "c0"], [], ["c0", "c1", "n0", "d0"]):
        with pytest.raises(ValueError, match="item_fields"):
            tower_fields(schema, bad)
