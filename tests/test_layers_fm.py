"""The FM family's layers (NFM, AFM, FmFM, HOFM) against loops over each paper's formula, and the
models' options."""

import itertools
import math

import pytest
import torch

from models.layers import AnovaKernel, AttentionalPooling, BiInteraction, FieldMatrixedInteraction
from tests.helpers import build, random_batch, small_schema

pytestmark = pytest.mark.usefixtures("single_thread")

B, F, K = 5, 4, 3


@pytest.fixture
def embedded():
    return torch.randn(B, F, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def pairs(n):
    return list(itertools.combinations(range(n), 2))


def test_bi_interaction_equals_the_sum_over_pairs(embedded):
    expected = torch.empty(B, K, dtype=embedded.dtype)
    for b, k in itertools.product(range(B), range(K)):
        expected[b, k] = sum(embedded[b, i, k] * embedded[b, j, k] for i, j in pairs(F))
    torch.testing.assert_close(BiInteraction()(embedded), expected)


def test_attentional_pooling_equals_its_definition(embedded):
    layer = AttentionalPooling(F, K, attention_dim=2, dropout=0.0).double()
    w, bias, h = layer.hidden.weight.tolist(), layer.hidden.bias.tolist(), layer.score.weight[0].tolist()
    expected = torch.empty(B, K, dtype=embedded.dtype)
    for b in range(B):
        products = [[embedded[b, i, k].item() * embedded[b, j, k].item() for k in range(K)] for i, j in pairs(F)]
        scores = []
        for product in products:
            hidden = [max(sum(w[a][k] * product[k] for k in range(K)) + bias[a], 0.0) for a in range(2)]
            scores.append(sum(h[a] * hidden[a] for a in range(2)))
        total = sum(math.exp(s) for s in scores)
        for k in range(K):
            expected[b, k] = sum(math.exp(s) / total * product[k] for s, product in zip(scores, products))
    torch.testing.assert_close(layer(embedded), expected)


def test_attentional_pooling_drops_attention_weights_in_training_only(embedded):
    layer = AttentionalPooling(F, K, attention_dim=2, dropout=0.5).double()
    plain = AttentionalPooling(F, K, attention_dim=2, dropout=0.0).double()
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer.eval()(embedded), plain(embedded))
    assert not torch.allclose(layer.train()(embedded), plain(embedded))


@pytest.mark.parametrize("form", FieldMatrixedInteraction.FORMS)
def test_field_matrixed_interaction_and_its_gradient_equal_the_loop(embedded, form):
    layer = FieldMatrixedInteraction(F, K, form).double()
    inputs = embedded.clone().requires_grad_()
    upstream = torch.randn(B, dtype=torch.float64)
    layer(inputs).backward(upstream)
    grads = inputs.grad.clone(), layer.weight.grad.clone()
    inputs.grad, layer.weight.grad = None, None
    expected = torch.zeros(B, dtype=torch.float64)
    for b, (p, (i, j)) in itertools.product(range(B), enumerate(pairs(F))):
        m = layer.weight[p] if form == "matrixed" else torch.diag(layer.weight[p])
        expected[b] = expected[b] + sum(inputs[b, i, k] * m[k, c] * inputs[b, j, c] for k in range(K) for c in range(K))
    expected.backward(upstream)
    torch.testing.assert_close(layer(inputs), expected.detach())
    torch.testing.assert_close(grads, (inputs.grad, layer.weight.grad))


def test_field_matrixed_maps_start_glorot_normal_for_their_tensor():
    matrices = FieldMatrixedInteraction(40, 10, "matrixed").weight  # 780 pairs: fans 10*10 and 780*10
    vectors = FieldMatrixedInteraction(40, 10, "vectorized").weight  # fans 10 and 780
    assert matrices.std().item() == pytest.approx(math.sqrt(2 / (100 + 7800)), rel=0.02)
    assert vectors.std().item() == pytest.approx(math.sqrt(2 / (10 + 780)), rel=0.05)
    with pytest.raises(ValueError, match="form"):
        FieldMatrixedInteraction(F, K, "diagonal")


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_anova_kernel_equals_the_sum_over_field_tuples(embedded, order):
    kernels = AnovaKernel(order)(embedded)
    assert kernels.shape == (B, order, K)
    for t in range(1, order + 1):
        expected = torch.zeros(B, K, dtype=torch.float64)
        for fields in itertools.combinations(range(F), t):
            expected += torch.stack([embedded[:, i] for i in fields]).prod(dim=0)
        torch.testing.assert_close(kernels[:, t - 1], expected)
    with pytest.raises(ValueError, match="fields"):
        AnovaKernel(F + 1)(embedded)


def test_hofm_sums_each_orders_kernel_of_its_own_table_or_of_one_shared():
    schema = small_schema()
    batch = random_batch(schema)
    separate = build("hofm", schema, order=3, reuse_embedding=False)
    tables = [table(batch) for table in separate.embeddings]
    expected = separate.linear(batch) + AnovaKernel(2)(tables[0])[:, 1].sum(1) + AnovaKernel(3)(tables[1])[:, 2].sum(1)
    torch.testing.assert_close(separate(batch), expected)
    shared = build("hofm", schema, order=4, reuse_embedding=True)
    assert len(shared.embeddings) == 1
    kernels = AnovaKernel(4)(shared.embeddings[0](batch))
    torch.testing.assert_close(shared(batch), shared.linear(batch) + kernels[:, 1:].sum(dim=(1, 2)))
    with pytest.raises(ValueError, match="order"):
        build("hofm", schema, order=1)


@pytest.mark.parametrize("linear_type", ["LW", "FeLV", "FiLV"])
def test_fwfm_weights_each_pair_and_adds_its_linear_part(linear_type):
    schema = small_schema()
    batch = random_batch(schema)
    model = build("fwfm", schema, linear_type=linear_type)
    embedded = model.embedding(batch)
    pair_sum = sum(
        model.pair_weights.weight[0, p] * (embedded[:, i] * embedded[:, j]).sum(1) for p, (i, j) in enumerate(pairs(4))
    )
    linear = {
        "LW": lambda: model.linear(batch),
        "FeLV": lambda: (embedded * model.linear(batch)).sum(dim=(1, 2)),
        "FiLV": lambda: sum((embedded[:, i] * model.linear.weight[0, 4 * i : 4 * i + 4]).sum(1) for i in range(4)),
    }[linear_type]()
    torch.testing.assert_close(model(batch), pair_sum + model.pair_weights.bias + linear)
    with pytest.raises(ValueError, match="linear_type"):
        build("fwfm", schema, linear_type="LV")
