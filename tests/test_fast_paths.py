"""The training step's fast paths (dropout masks, coalesced row gradients, lazy Adam) and the
throughput benchmark that measures them."""

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from datamodules.schema import Batch, Schema
from experiments.benchmark import throughput, workload
from experiments.benchmark.__main__ import main as benchmark_main
from models.layers import embedding
from models.layers.embedding import RowSparseEmbedding, distinct_ids
from models.layers.mlp import MLP, Dropout, keep_mask, lane_bits, scaled_keep_mask
from models.optim import LazyAdam, distinct_rows
from tests.helpers import build, composed, random_batch

pytestmark = pytest.mark.usefixtures("single_thread")

CONF = Path(__file__).resolve().parents[1] / "conf"

# -- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_dropout_drops_at_rate_p_and_rescales_the_rest(p):
    torch.manual_seed(0)
    layer = Dropout(p)
    x = torch.rand(1000, 1000) + 0.5  # no zeros of its own
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / x.numel()))
    kept = y != 0
    level = round(p * 65536)
    torch.testing.assert_close(y[kept], x[kept] * 65536 / (65536 - level))


def test_dropout_mask_is_unbiased_per_unit_and_reproducible_under_a_seed():
    layer = Dropout(0.5)
    x = torch.ones(4000, 8)
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), first)
    assert not torch.equal(layer(x), first)
    # every unit (column) and every lane of a 64-bit draw is dropped half the time
    assert ((first == 0).float().mean(0) - 0.5).abs().max() < 0.04


def test_dropout_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = Dropout(0.5)(x)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)


def test_dropout_is_the_identity_in_eval_mode_and_at_p_zero():
    x = torch.randn(16, 4)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0)(x) is x
    mlp = MLP(4, [3], dropout=0.5)
    assert isinstance(mlp.layers[2], Dropout) and isinstance(mlp.layers[2], nn.Dropout)


@pytest.mark.parametrize("p", [0.5, 0.25, 0.1875, 0.75, 0.2, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_scaled_mask_is_the_keep_mask_times_the_scale_bit_for_bit(p, dtype):
    # the table look-up (lanes of <= 4 bits) and the comparison (8 and 16 bits) both give the mask
    # the lanes themselves give, scaled as a Python-float multiply rounds the scale, from the same draws
    bits, level = lane_bits(p)
    shape = torch.Size([333, 7])  # not a whole number of 64-bit draws
    torch.manual_seed(11)
    expected = keep_mask(shape, bits, level, torch.device("cpu")).to(dtype).mul_((1 << bits) / ((1 << bits) - level))
    torch.manual_seed(11)
    got = scaled_keep_mask(shape, bits, level, dtype, torch.device("cpu"))
    assert got.dtype == dtype and got.shape == shape
    assert torch.equal(got, expected)
    assert 0 < (got == 0).float().mean().item() < 1


def test_keep_mask_reads_each_units_own_lane_low_bits_first():
    # brute force from the draws themselves: unit u reads bits [b*u, b*(u+1)) of the stream
    for p in (0.5, 0.25, 0.1875):
        bits, level = lane_bits(p)
        torch.manual_seed(4)
        keep = keep_mask(torch.Size([40]), bits, level, torch.device("cpu"))
        torch.manual_seed(4)
        word = torch.empty(1, dtype=torch.int64).random_(-(1 << 63), None).item() % (1 << 64)
        lanes = [(word >> (bits * u)) & ((1 << bits) - 1) for u in range(40) if bits * (u + 1) <= 64]
        assert keep[: len(lanes)].tolist() == [lane >= level for lane in lanes]


# -- row-sparse embedding gradients ------------------------------------------------------------


def test_sparse_lookup_gradient_is_coalesced_and_equals_the_dense_one():
    torch.manual_seed(0)
    ids = torch.tensor([[3, 1, 3], [7, 1, 3]])
    sparse, dense = RowSparseEmbedding(10, 4, sparse=True), nn.Embedding(10, 4)
    dense.weight.data.copy_(sparse.weight.data)
    upstream = torch.randn(2, 3, 4)
    torch.testing.assert_close(sparse(ids), dense(ids))
    sparse(ids).backward(upstream)
    dense(ids).backward(upstream)
    grad = sparse.weight.grad
    assert grad.is_sparse
    assert grad._indices().tolist() == [[1, 3, 7]]  # each distinct id once, in order
    torch.testing.assert_close(grad.to_dense(), dense.weight.grad)
    rows, values = distinct_rows(grad)
    assert rows.data_ptr() == grad._indices().data_ptr()  # used as they are, no coalesce
    torch.testing.assert_close(values, dense.weight.grad[[1, 3, 7]])


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_lookup_gradient_is_torchs_bit_for_bit_at_any_thread_count(threads):
    # heavy repeats (a few hot rows, as real ids are) so that the summation order matters
    generator = torch.Generator().manual_seed(0)
    ids = (torch.rand(512, 39, generator=generator) ** 4 * 300).long()
    upstream = torch.randn(512, 39, 10, generator=generator)
    fast, plain = RowSparseEmbedding(300, 10), nn.Embedding(300, 10)
    plain.weight.data.copy_(fast.weight.data)
    torch.set_num_threads(threads)
    fast(ids).backward(upstream)
    plain(ids).backward(upstream)
    assert not fast.weight.grad.is_sparse
    assert torch.equal(fast.weight.grad, plain.weight.grad)
    assert fast.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "shape, num_rows", [((500, 4), 50), ((500, 4), 5000), ((500, 4), 10**6), ((0,), 10), ((1,), 1)]
)
def test_distinct_ids_by_marks_or_sort_equal_unique(shape, num_rows):
    # both ways (marks when the table is small for the ids read, sort otherwise) give torch.unique's
    # sorted distinct ids and inverse positions, bit for bit
    ids = torch.randint(0, num_rows, shape, generator=torch.Generator().manual_seed(num_rows))
    rows, position = distinct_ids(ids, num_rows)
    expected_rows, expected_position = torch.unique(ids.reshape(-1), sorted=True, return_inverse=True)
    assert rows.dtype == position.dtype == torch.int64
    assert torch.equal(rows, expected_rows) and torch.equal(position, expected_position)
    assert torch.equal(rows[position], ids.reshape(-1))


def test_distinct_rows_coalesces_gradients_that_need_it():
    grad = torch.sparse_coo_tensor(
        torch.tensor([[4, 1, 4]]), torch.tensor([[1.0], [2.0], [3.0]]), (6, 1), check_invariants=True
    )
    rows, values = distinct_rows(grad)
    assert rows.tolist() == [1, 4] and values.flatten().tolist() == [2.0, 4.0]


def test_sparse_lookup_gradients_accumulate_over_two_reads():
    table = RowSparseEmbedding(6, 2, sparse=True)
    (table(torch.tensor([0, 2])).sum() + 3 * table(torch.tensor([2, 5])).sum()).backward()
    expected = torch.zeros(6, 2)
    expected[0], expected[2], expected[5] = 1.0, 4.0, 3.0
    torch.testing.assert_close(table.weight.grad.to_dense(), expected)


def test_tables_reading_the_same_ids_sort_them_once_and_see_in_place_edits(monkeypatch):
    sorts = []
    find = embedding.distinct_ids
    monkeypatch.setattr(embedding, "distinct_ids", lambda *args: sorts.append(1) or find(*args))
    first, second = RowSparseEmbedding(6, 2, sparse=True), RowSparseEmbedding(6, 3, sparse=True)
    ids = torch.tensor([4, 1, 4])
    (first(ids).sum() + second(ids).sum()).backward()
    assert len(sorts) == 1
    assert first.weight.grad._indices().tolist() == second.weight.grad._indices().tolist() == [[1, 4]]
    ids[0] = 5
    first.weight.grad = None
    first(ids).sum().backward()
    assert len(sorts) == 2 and first.weight.grad._indices().tolist() == [[1, 4, 5]]


def test_dense_tables_keep_dense_gradients():
    table = RowSparseEmbedding(6, 2, sparse=False)
    table(torch.tensor([1, 1])).sum().backward()
    assert not table.weight.grad.is_sparse and table.weight.grad[1].tolist() == [2.0, 2.0]


# -- lazy Adam ---------------------------------------------------------------------------------


def test_lazy_adam_equals_torch_adam_on_dense_gradients():
    torch.manual_seed(0)
    ours = nn.Parameter(torch.randn(5, 3))
    reference = nn.Parameter(ours.detach().clone())
    optimizers = [
        LazyAdam([ours], lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        torch.optim.Adam([reference], lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    ]
    for _ in range(4):
        grad = torch.randn(5, 3)
        for param, optimizer in zip((ours, reference), optimizers):
            param.grad = grad.clone()
            optimizer.step()
    torch.testing.assert_close(ours, reference)


def lazy_adam_reference(weight, steps, lr, beta1, beta2, eps):
    """Adam applied row by row, each row only at the steps whose batch read it (global t)."""
    weight, m, v = weight.clone(), torch.zeros_like(weight), torch.zeros_like(weight)
    for t, (rows, grads) in enumerate(steps, start=1):
        for row, grad in zip(rows.tolist(), grads):
            m[row] = beta1 * m[row] + (1 - beta1) * grad
            v[row] = beta2 * v[row] + (1 - beta2) * grad**2
            denom = (v[row] / (1 - beta2**t)).sqrt() + eps
            weight[row] -= lr / (1 - beta1**t) * m[row] / denom
    return weight


def test_lazy_adam_moves_only_the_rows_of_each_sparse_gradient():
    torch.manual_seed(0)
    table = RowSparseEmbedding(8, 3, sparse=True)
    start = table.weight.detach().clone()
    optimizer = LazyAdam(table.parameters(), lr=0.05, betas=(0.9, 0.99), eps=1e-8)
    batches = [torch.tensor([0, 2, 2]), torch.tensor([2, 5]), torch.tensor([0, 5, 6])]
    applied = []
    for ids in batches:
        upstream = torch.randn(len(ids), 3)
        optimizer.zero_grad()
        table(ids).backward(upstream)
        applied.append(tuple(t.clone() for t in distinct_rows(table.weight.grad)))
        optimizer.step()
    expected = lazy_adam_reference(start, applied, lr=0.05, beta1=0.9, beta2=0.99, eps=1e-8)
    torch.testing.assert_close(table.weight.detach(), expected)
    never_read = [1, 3, 4, 7]
    assert torch.equal(table.weight[never_read], start[never_read])
    assert (optimizer.state[table.weight]["exp_avg"][never_read] == 0).all()


def test_lazy_adam_rejects_bad_settings():
    with pytest.raises(ValueError, match="betas"):
        LazyAdam([nn.Parameter(torch.zeros(1))], betas=(0.9, 1.0))


def test_lazy_adam_config_trains_deepfm_with_row_sparse_tables():
    _, settings = composed("deepfm", "lazy_adam")
    _, adam = composed("deepfm", "adam")
    # the same settings as plain Adam, but for sparse tables (and fusing, which only adam's kernel has)
    assert settings["sparse_embeddings"] and not adam["sparse_embeddings"]
    assert {k: v for k, v in settings.items() if k not in ("name", "sparse_embeddings")} == {
        k: ({o: w for o, w in v.items() if o != "fused"} if k == "options" else v)
        for k, v in adam.items()
        if k not in ("name", "sparse_embeddings")
    }
    schema = Schema.build([("a", "categorical", 5), ("b", "categorical", 7)])
    model = build("deepfm", schema, "lazy_adam", hidden_units=[8], dropout=0.5)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, LazyAdam)
    before = model.embedding.table.weight.detach().clone()
    batch = Batch(torch.tensor([[0, 5], [1, 5]]), torch.tensor([1.0, 0.0]))
    model.losses(batch)[0].backward()
    assert model.embedding.table.weight.grad.is_sparse
    optimizer.step()
    moved = (model.embedding.table.weight != before).any(dim=1)
    assert moved.tolist() == [True, True, False, False, False, True] + [False] * 6


# -- the benchmark -----------------------------------------------------------------------------


def test_criteo_schema_has_39_fields_and_about_the_asked_vocabulary():
    schema = workload.criteo_schema(1_000_000)
    assert schema.num_sparse == 39 and schema.num_dense == 0
    assert 990_000 < schema.num_ids <= 1_000_000
    sizes = [f.vocab_size for f in schema.sparse_fields]
    assert sizes[13 + 5] == 24 and max(sizes) < 200_000  # small fields kept, long tails capped
    with pytest.raises(ValueError, match="num_ids"):
        workload.criteo_schema(100)


def test_id_rows_stay_inside_their_fields():
    schema = workload.criteo_schema(50_000)
    x, y = workload.id_rows(schema, 5000, seed=1)
    assert x.shape == (5000, 39) and set(y.tolist()) <= {0.0, 1.0}
    low = torch.tensor([f.offset for f in schema.sparse_fields])
    high = low + torch.tensor([f.vocab_size for f in schema.sparse_fields])
    ids = torch.from_numpy(x).long()
    assert ((ids >= low) & (ids < high)).all()
    # Zipf(1.2): the head id of a field is 1/zeta(1.2) = 18% of its values, then frequencies fall
    head, second, third = torch.bincount((ids - low).flatten())[:3].tolist()
    assert head > 0.17 * ids.numel() and head > second > third


def test_flop_count_and_largest_layer_of_deepfm():
    schema = Schema.build([(f"c{i}", "categorical", 4) for i in range(5)])
    model = build("deepfm", schema, embedding_dim=3, hidden_units=[7, 6])
    batch = random_batch(schema, size=8)
    assert throughput.largest_linear_shape(model, batch) == (8, 15, 7)
    narrow_first = build("deepfm", schema, embedding_dim=3, hidden_units=[1, 20])  # 15 x 1, then 1 x 20
    assert throughput.largest_linear_shape(narrow_first, batch) == (8, 1, 20)
    # forward 2 * in * out per layer; backward twice that (input and weight gradients)
    assert throughput.matmul_flops_per_sample(model, batch) == 6 * (15 * 7 + 7 * 6 + 6 * 1)
    assert all(p.grad is None for p in model.parameters())
    assert throughput.largest_linear_shape(build("fm", schema), batch) is None


@pytest.mark.slow
def test_benchmark_writes_its_tables(tmp_path):
    out = tmp_path / "results"
    report = benchmark_main(
        [
            "--models",
            "deepfm,fm:adam,deepfm::bf16",
            "--lightning-models",
            "deepfm",
            "--num-ids",
            "3000",
            "--rows",
            "2048",
            "--batch-size",
            "256",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--encode-rows",
            "0",
            "--contention",
            "",
            "--out",
            str(out),
        ]
    )
    with (out / "benchmark.csv").open() as f:
        rows = list(csv.DictReader(f))
    value = {(r["item"], r["metric"]): float(r["value"]) for r in rows}
    assert value[("deepfm:lazy_adam", "mflop_per_sample")] == pytest.approx(
        6 * (39 * 10 * 400 + 400 * 400 * 2 + 400) / 1e6
    )
    assert 0 < value[("deepfm:lazy_adam", "roofline_fraction")] < 1.5
    assert value[("deepfm:lazy_adam", "train_samples_per_s")] > 0
    assert ("fm:adam", "roofline_fraction") not in value and value[("fm:adam", "mflop_per_sample")] == 0
    assert value[("deepfm:lazy_adam:bf16", "train_samples_per_s")] > 0  # its roofline is a bf16 matmul's
    assert 0 < value[("deepfm:lazy_adam:bf16", "roofline_fraction")] < 1.5
    # the default --multi-models: DeepFM with one more field, 20 ids per row mean-pooled into it
    assert value[("deepfm:lazy_adam+list20", "mflop_per_sample")] == pytest.approx(
        6 * (40 * 10 * 400 + 400 * 400 * 2 + 400) / 1e6
    )
    assert value[("deepfm:lazy_adam+list20", "train_samples_per_s")] > 0
    assert value[("deepfm:lazy_adam bare loop", "ratio_to_bare")] == 1.0
    assert value[("deepfm:lazy_adam Trainer as configured", "samples_per_s")] > 0
    assert {s["setting"] for s in report.lightning[0]["settings"]} == {"bare loop", "Trainer as configured"} | {
        label for label, _ in throughput.TRAINER_VARIANTS
    }
    text = (out / "benchmark.md").read_text()
    assert "| deepfm | lazy_adam | 32 |" in text and "| fm | adam | 32 |" in text and "Lightning Trainer" in text
    assert "| deepfm + list of 20 | lazy_adam | 32 |" in text
    assert "| deepfm | lazy_adam | bf16 |" in text and "deepfm bf16 >= 1.6x float32 training rate" in text
    assert f"torch {torch.__version__}" in text and "torch threads: 1" in text


@pytest.mark.integration
def test_benchmark_measures_training_beside_busy_processes(tmp_path):
    out = tmp_path / "results"
    report = benchmark_main(
        [
            "--models",
            "",
            "--lightning-models",
            "",
            "--contention",
            "fm",
            "--hogs",
            "1",
            "--contention-seconds",
            "0.3,0.5",
            "--num-ids",
            "3000",
            "--rows",
            "2048",
            "--batch-size",
            "256",
            "--repeats",
            "1",
            "--threads",
            "2",
            "--encode-rows",
            "0",
            "--out",
            str(out),
        ]
    )
    assert [(c["model"], c["policy"], c["batches"], c["hogs"]) for c in report.contention] == [
        ("fm", "auto", "inline", 1),
        ("fm", "fixed", "inline", 1),
        ("fm", "auto", "thread", 1),
        ("fm", "auto", "process", 1),
    ]
    for c in report.contention:
        assert c["quiet_samples_per_s"] > 0 and c["loaded_samples_per_s"] > 0
        assert c["slowdown"] == pytest.approx(c["quiet_samples_per_s"] / c["loaded_samples_per_s"])
    assert report.contention[1]["quiet_threads"] == report.contention[1]["loaded_threads"] == "2"
    text = (out / "benchmark.md").read_text()
    assert "## Sharing the machine" in text and "| fm | lazy_adam | auto | thread |" in text
    assert "fm beside 1 busy processes <= 2.5x slower than quiet (threads: auto)" in text


def test_fused_adam_takes_torch_adams_steps_to_the_last_bits():
    # optim=adam runs torch's fused kernel by default; optim.options.fused=false is torch's per-tensor loop
    schema = Schema.build([("a", "categorical", 50), ("b", "categorical", 70), ("n", "numeric", 1)])
    batch = random_batch(schema, 64, seed=3)
    weights = []
    for fused in (True, False):
        model = build("deepfm", schema, hidden_units=[16], options={**composed("deepfm")[1]["options"], "fused": fused})
        optimizer = model.configure_optimizers()
        assert optimizer.param_groups[0]["fused"] is fused
        for _ in range(5):
            optimizer.zero_grad()
            model.losses(batch)[0].backward()
            optimizer.step()
        weights.append([p.detach().clone() for p in model.parameters()])
    for fused, loop in zip(*weights):
        torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-7)
