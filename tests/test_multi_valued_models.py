"""Multi-valued fields in the models (issue 35): pooling against a loop, and every model learning a
signal that only a multi-valued field carries, read from a CSV and a Parquet table."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import models
from datamodules import CTRDataModule, TableSource
from datamodules.schema import Batch, Schema
from models.layers.embedding import FeatureEmbedding, LinearLogit
from models.metrics import auc
from tests.helpers import build, run_app, train_plain

pytestmark = pytest.mark.usefixtures("single_thread")

SCHEMA = Schema.build(
    [("c0", "categorical", 3), ("c1", "categorical", 5)],
    dense=["d0"],
    multi=[("g", 7, 4, "mean", 1), ("h", 6, 3, "sum", 1), ("k", 5, 2, "max", 1)],
)


def multi_batch(size: int = 40, seed: int = 0) -> Batch:
    """Random ids, and lists of random length (0 included) padded with each field's padding id."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.stack(
        [f.offset + torch.randint(0, f.vocab_size, (size,), generator=generator) for f in SCHEMA.sparse_fields], 1
    )
    columns = []
    for f in SCHEMA.multi_fields:
        tokens = f.offset + torch.randint(0, f.vocab_size, (size, f.max_len), generator=generator)
        length = torch.randint(0, f.max_len + 1, (size, 1), generator=generator)
        columns.append(torch.where(torch.arange(f.max_len) < length, tokens, f.offset + f.padding_id))
    dense = torch.randn(size, 1, generator=generator)
    return Batch(x, torch.zeros(size), dense, torch.cat(columns, 1))


def looped(table: torch.Tensor, batch: Batch, dense_vectors: torch.Tensor) -> torch.Tensor:
    """``FeatureEmbedding``'s output, one row and one field at a time."""
    out = []
    for b in range(batch.size):
        vectors = [table[i] for i in batch.x[b].tolist()]
        start = 0
        for f in SCHEMA.multi_fields:
            ids = [i for i in batch.x_multi[b, start : start + f.max_len].tolist() if i != f.offset + f.padding_id]
            start += f.max_len
            rows = [table[i] for i in ids]
            if not rows:
                vectors.append(torch.zeros(table.shape[1], dtype=table.dtype))
            elif f.pooling == "mean":
                vectors.append(sum(rows) / len(rows))
            elif f.pooling == "sum":
                vectors.append(sum(rows))
            else:
                vectors.append(torch.stack(rows).max(0).values)
        vectors += [batch.x_dense[b, d] * dense_vectors[d] for d in range(SCHEMA.num_dense)]
        out.append(torch.stack(vectors))
    return torch.stack(out)


def test_pooled_embedding_equals_a_loop():
    torch.manual_seed(0)
    embedding = FeatureEmbedding(SCHEMA, 5, init_std=1.0).double()
    batch = multi_batch()
    batch = batch._replace(x_dense=batch.x_dense.double())
    got = embedding(batch)
    assert got.shape == (40, 2 + 3 + 1, 5)
    expected = looped(embedding.table.weight.detach(), batch, embedding.dense.detach())
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert (batch.x_multi[:, :4] == SCHEMA.multi_fields[0].offset + 1).all(1).any()  # an empty list is there


def test_embedding_penalty_counts_the_rows_read_not_the_padding():
    torch.manual_seed(0)
    embedding = FeatureEmbedding(SCHEMA, 3, init_std=1.0).double()
    batch = multi_batch()
    weight, padding = embedding.table.weight.detach(), embedding.multi.padding
    read = [i for i in batch.x.flatten().tolist()]
    read += [i for row in batch.x_multi for i, p in zip(row.tolist(), padding.tolist()) if i != p]
    expected = sum(float(weight[i].pow(2).sum()) for i in read) / batch.size + float(embedding.dense.pow(2).sum())
    assert float(embedding.squared_norm(batch)) == pytest.approx(expected, rel=1e-12)


def test_first_order_weights_are_pooled_the_same_way():
    linear = LinearLogit(SCHEMA, bias=False).double()
    with torch.no_grad():
        linear.weights.table.weight.copy_(torch.randn(SCHEMA.num_ids, 1, dtype=torch.float64))
        linear.weights.dense.zero_()
    batch = multi_batch()
    expected = looped(linear.weights.table.weight.detach(), batch, torch.zeros(1, 1, dtype=torch.float64))
    torch.testing.assert_close(linear(batch), expected.sum((1, 2)), rtol=1e-12, atol=1e-12)


def test_a_batch_without_its_lists_is_refused():
    embedding = FeatureEmbedding(SCHEMA, 3, init_std=1.0)
    with pytest.raises(ValueError, match="take 9 columns but batch.x_multi is None"):
        embedding(multi_batch()._replace(x_multi=None))


# -- planted signal: only the genres say who clicks ----------------------------------------------

GENRES = [f"genre{i}" for i in range(12)]


def planted_table(rows: int, seed: int) -> pa.Table:
    """c0, c1, c2: noise; genres: 0 to 4 of 12 tokens; logit = 3 * mean of the tokens' weights."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(99).normal(0, 1.5, len(GENRES))
    lengths = rng.integers(0, 5, rows)
    lists = [rng.choice(len(GENRES), n, replace=False) for n in lengths]
    logits = np.array([3 * weights[g].mean() if len(g) else 0.0 for g in lists])
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    return pa.table(
        {
            "label": labels,
            "c0": rng.integers(0, 20, rows).astype(str),
            "c1": rng.integers(0, 50, rows).astype(str),
            "c2": rng.integers(0, 5, rows).astype(str),
            "genres": ["|".join(GENRES[i] for i in g) for g in lists],
        }
    )


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    files = {}
    for fmt in ("csv", "parquet"):
        parts = {
            split: planted_table(n, seed) for split, n, seed in (("train", 4000, 1), ("val", 400, 2), ("test", 1500, 3))
        }
        for split, table in parts.items():
            path = folder / f"{split}.{fmt}"
            if fmt == "csv":
                pa.csv.write_csv(table, path)
            else:
                table = table.set_column(4, "genres", pa.compute.split_pattern(table["genres"], "|"))  # real lists
                pq.write_table(table, path)
            files.setdefault(fmt, {})[split] = str(path)
    return files


def planted_module(files: dict, cache, with_genres: bool) -> CTRDataModule:
    source = TableSource(
        label="label", categorical=["c0", "c1", "c2"], files=files, multi_valued=["genres"] if with_genres else None
    )
    dm = CTRDataModule(source, cache_dir=str(cache), batch_size=200, progress=False)
    dm.setup()
    return dm


def trained_auc(name: str, dm: CTRDataModule, epochs: int = 4) -> float:
    """Test AUC of ``name`` trained ``epochs`` epochs on ``dm`` (plain torch loop)."""
    model = build(name, dm.schema, lr=0.02)
    train = list(dm.train_dataloader())
    if name == "fnn":
        model.load_fm(model.pretrain_fm(train, epochs=1))
    train_plain(model, train, epochs)
    model.eval()
    with torch.no_grad():
        p = torch.cat([torch.sigmoid(model(batch)) for batch in dm.test_dataloader()])
    return auc(dm.labels("test"), p.double().numpy())


def check_uses_the_field(name, fmt, planted_files, cache):
    with_field = trained_auc(name, planted_module(planted_files[fmt], cache, True))
    without = trained_auc(name, planted_module(planted_files[fmt], cache, False))
    assert without < 0.56 and with_field > without + 0.1, (with_field, without)


QUICK = ["lr", "fm", "ffm", "deepfm", "dcn", "xdeepfm", "ipnn", "dlrm"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("name", QUICK)
def test_models_learn_from_a_multi_valued_field(name, fmt, planted_files, cache):
    check_uses_the_field(name, fmt, planted_files, cache)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("name", sorted(set(models.MODELS) - set(QUICK)))
def test_every_model_learns_from_a_multi_valued_field(name, fmt, planted_files, cache):
    check_uses_the_field(name, fmt, planted_files, cache)


def test_the_synthetic_list_field_carries_signal_lr_reads(cache):
    from datamodules import SyntheticSource

    source = SyntheticSource(
        rows=20_000,
        seed=3,
        pairwise=0.0,
        higher_order=0.0,
        num_numeric=0,
        num_categorical=8,
        max_cardinality=100,
        list_field={"name": "tags", "tokens": 40, "max_len": 6},
    )
    dm = CTRDataModule(source, cache_dir=str(cache), batch_size=500, progress=False)
    dm.setup()
    (tags,) = dm.schema.multi_fields
    assert (tags.name, tags.max_len, tags.vocab_size) == ("tags", 6, 40 + 2)
    assert dm.manifest["multi_valued"]["tags"]["max"] == 6 and dm.manifest["multi_valued"]["tags"]["truncated"] == 0
    train, test = list(dm.train_dataloader()), list(dm.test_dataloader())
    hidden = lambda batches: [b._replace(x_multi=torch.full_like(b.x_multi, tags.offset + 1)) for b in batches]  # noqa: E731
    scores = {}
    for name, (fit, evaluate) in {"with": (train, test), "without": (hidden(train), hidden(test))}.items():
        model = train_plain(build("lr", dm.schema, lr=0.05), fit, 4).eval()
        with torch.no_grad():
            p = torch.cat([torch.sigmoid(model(batch)) for batch in evaluate])
        scores[name] = auc(dm.labels("test"), p.double().numpy())
    ceiling = auc(dm.labels("test"), dm.ceiling_probabilities("test")["first_order"])
    assert scores["with"] > scores["without"] + 0.03 and scores["with"] > ceiling - 0.03, (scores, ceiling)


@pytest.mark.parametrize("optimizer", ["lazy_adam", "ftrl"])
def test_row_sparse_optimisers_move_the_token_rows_a_batch_reads(optimizer):
    model = build("deepfm", SCHEMA, optimizer, sparse_embeddings=True)
    batch = multi_batch(size=6)
    step = model.build_optimizer()
    before = model.embedding.table.weight.detach().clone()
    step.zero_grad()
    model.losses(batch)[0].backward()
    step.step()
    moved = (model.embedding.table.weight.detach() != before).any(1)
    padding = set(model.embedding.multi.padding.tolist())
    tokens = {i for i in batch.x_multi.flatten().tolist() if i not in padding}
    assert tokens and tokens <= set(torch.nonzero(moved).flatten().tolist())
    never_read = set(range(SCHEMA.num_ids)) - tokens - padding - set(batch.x.flatten().tolist())
    assert never_read and not moved[sorted(never_read)].any()


@pytest.mark.integration
def test_run_py_trains_on_a_table_with_a_list_column(planted_files, tmp_path, cache):
    files, run = planted_files["csv"], tmp_path / "run"
    table = [
        "data=table",
        f"data.source.files={{train: {files['train']}, val: {files['val']}, test: {files['test']}}}",
        "data.source.label=label",
        "data.source.categorical=[c0,c1,c2]",
        "data.source.multi_valued={genres: {max_len: 3, pooling: sum}}",
    ]
    training = ["data.batch_size=256", "model=deepfm", "model.mlp.hidden_units=[8]", "trainer.max_epochs=2"]
    done = run_app(*table, *training, f"data.cache_dir={cache}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/auc"] > 0.75 and metrics["still_improving"] == (metrics["best_epoch"] == 1)
    manifests = [json.loads(p.read_text()) for p in cache.glob("table-*/manifest.json")]
    (lists,) = [
        m["multi_valued"]["genres"]
        for m in manifests
        if m.get("multi_valued", {}).get("genres", {}).get("max_len") == 3
    ]
    assert lists["pooling"] == "sum" and lists["truncated"] > 0
