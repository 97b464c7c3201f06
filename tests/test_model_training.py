"""CTRModule's training machinery: exact metrics, FTRL, the Lightning loop, FNN's two stages,
and learning on planted-signal data."""

import itertools
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import models
from datamodules.schema import Batch, Schema
from models.base import PredictionBuffer
from models.metrics import auc, logloss
from models.optim import FTRL, OptimSpec
from tests.helpers import build, train_plain

pytestmark = pytest.mark.usefixtures("single_thread")

# -- metrics -------------------------------------------------------------------------------


def brute_force_auc(y, p):
    positives, negatives = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = rng.integers(0, 12, 300) / 12.0  # many ties, some across classes
    assert auc(y, p) == pytest.approx(brute_force_auc(y, p), abs=1e-12)
    assert auc(torch.tensor(y), torch.tensor(p)) == pytest.approx(auc(y, p), abs=1e-12)


def test_auc_edge_cases():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(auc([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match="0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="3 values"):
        auc([0, 1, 1], [0.1, 0.2])


def test_logloss_is_mean_binary_cross_entropy():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    expected = -np.mean([np.log(0.9), np.log(0.8), np.log(0.6), np.log(0.5)])
    assert logloss(y, p) == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))  # clipped, not infinite
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-np.log(1e-15), rel=1e-4)


# -- FTRL ----------------------------------------------------------------------------------


def ftrl_objective(w, grads, iterates, alpha, beta, l1, l2):
    """FTRL-Proximal's per-coordinate objective (McMahan et al. 2013, eq. 2 with smoothing beta):
    g_{1:t} w + sum_s sigma_s/2 (w - w_s)^2 + beta/(2 alpha) w^2 + l1 |w| + l2/2 w^2."""
    sq = torch.cumsum(torch.stack(grads) ** 2, 0).sqrt()
    sigmas = torch.diff(sq, dim=0, prepend=torch.zeros_like(sq[:1])) / alpha
    value = sum(grads).unsqueeze(-1) * w + beta / (2 * alpha) * w**2 + l1 * w.abs() + l2 / 2 * w**2
    for sigma, w_s in zip(sigmas, iterates):
        value = value + sigma.unsqueeze(-1) / 2 * (w - w_s.unsqueeze(-1)) ** 2
    return value


def test_ftrl_iterate_minimises_the_ftrl_proximal_objective():
    alpha, beta, l1, l2 = 0.5, 1.0, 0.3, 0.2
    param = torch.nn.Parameter(torch.zeros(6, dtype=torch.float64))
    optimizer = FTRL([param], lr=alpha, beta=beta, l1=l1, l2=l2)
    generator = torch.Generator().manual_seed(0)
    grads, iterates = [], []
    for _ in range(5):
        iterates.append(param.detach().clone())
        grad = torch.randn(6, dtype=torch.float64, generator=generator)
        grad[0] = 0.05  # stays inside the L1 ball: exactly zero
        grads.append(grad)
        param.grad = grad.clone()
        optimizer.step()
    grid = torch.linspace(-3, 3, 600001, dtype=torch.float64)
    minimisers = grid[ftrl_objective(grid, grads, iterates, alpha, beta, l1, l2).argmin(dim=1)]
    torch.testing.assert_close(param.detach(), minimisers, atol=2e-5, rtol=0)
    assert param[0].item() == 0.0


def test_ftrl_keeps_initial_weights_until_gradients_move_them():
    param = torch.nn.Parameter(torch.randn(4, 3))
    start = param.detach().clone()
    optimizer = FTRL([param], lr=0.1, beta=1.0, l1=0.0, l2=0.5)
    param.grad = torch.zeros_like(param)
    optimizer.step()
    torch.testing.assert_close(param.detach(), start)


def test_ftrl_sparse_gradients_match_dense():
    ids = torch.tensor([[0, 3], [3, 5], [5, 0]])
    tables = []
    for sparse in (False, True):
        torch.manual_seed(0)
        table = torch.nn.Embedding(8, 2, sparse=sparse)
        optimizer = FTRL(table.parameters(), lr=0.2, beta=0.5, l1=0.01, l2=0.1)
        for step in range(3):
            optimizer.zero_grad()
            table(ids.roll(step)).pow(3).sum().backward()
            optimizer.step()
        tables.append(table.weight.detach())
    torch.testing.assert_close(tables[0], tables[1])


def test_optim_spec_validates_names_and_sparse_use():
    with pytest.raises(ValueError, match="optimizer 'rmsprop'"):
        OptimSpec("rmsprop", 0.1)
    with pytest.raises(ValueError, match="sparse_embeddings=True"):
        build("fm", Schema.build([("a", "categorical", 3)]), sparse_embeddings=True, optimizer="adam")


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
@pytest.mark.parametrize("optimizer", ["adagrad", "sgd", "ftrl"])
def test_sparse_embeddings_train_with_sparse_optimizers(optimizer):
    schema = PLANTED_SCHEMA
    model = build("deepfm", schema, optimizer=optimizer, sparse_embeddings=True, lr=0.05, embedding_l2=0.01)
    batch = planted_data(64, seed=1)[0]
    opt = model.build_optimizer()
    model.losses(batch)[0].backward()
    assert model.embedding.table.weight.grad.is_sparse
    before = model.embedding.table.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.embedding.table.weight)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_handles_sparse_gradients(algorithm):
    model = build("deepfm", PLANTED_SCHEMA, optimizer="adagrad", sparse_embeddings=True)
    optimizer = model.build_optimizer()
    model.losses(planted_data(64, seed=1)[0])[0].backward()
    model.configure_gradient_clipping(optimizer, 1e-3, algorithm)
    values = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad for p in model.parameters()]
    if algorithm == "norm":
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v) for v in values]))
        assert total.item() == pytest.approx(1e-3, rel=1e-3)
    else:
        assert max(v.abs().max().item() for v in values) == pytest.approx(1e-3)


# -- planted-signal data ----------------------------------------------------------------------

PLANTED_SCHEMA = Schema.build([(f"c{i}", "categorical", v) for i, v in enumerate([6, 9, 12, 7, 5])], dense=["d0"])


def planted_truth(schema: Schema, seed: int = 123):
    """First-order weights and latent vectors (dim 3) per id; both centred within each field,
    so the pairwise part carries no first-order signal."""
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(schema.num_ids, 3, generator=generator)
    first = 0.3 * torch.randn(schema.num_ids, generator=generator)
    for f in schema.sparse_fields:
        rows = slice(f.offset, f.offset + f.vocab_size)
        latent[rows] -= latent[rows].mean(0)
        first[rows] -= first[rows].mean()
    return first, latent


def planted_data(n: int, seed: int, schema: Schema = PLANTED_SCHEMA):
    """``(Batch of n rows, true logits)``: logit = first order + 0.6 * dense + 0.35 * sum of
    pairwise latent dot products; labels drawn from sigmoid(logit)."""
    first, latent = planted_truth(schema)
    generator = torch.Generator().manual_seed(seed)
    x = torch.stack(
        [f.offset + torch.randint(0, f.vocab_size, (n,), generator=generator) for f in schema.sparse_fields], 1
    )
    dense = torch.randn(n, 1, generator=generator)
    vectors = latent[x]  # [n, S, 3]
    gram = vectors @ vectors.transpose(1, 2)
    pairwise = torch.triu(gram, diagonal=1).sum((1, 2))
    logits = first[x].sum(1) + 0.6 * dense[:, 0] + 0.35 * pairwise
    y = torch.bernoulli(torch.sigmoid(logits), generator=generator)
    return Batch(x, y, dense), logits


def split_batches(batch: Batch, size: int) -> list[Batch]:
    return [Batch(*(None if t is None else t[i : i + size] for t in batch)) for i in range(0, batch.size, size)]


class BatchLoader:
    """An iterable of ready batches (a bare list would read to Lightning as a list of loaders)."""

    def __init__(self, batches: list[Batch]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class PlantedData(pl.LightningDataModule):
    def __init__(self, n_train=4000, n_val=2000, batch_size=256):
        super().__init__()
        self.schema = PLANTED_SCHEMA
        self.splits = {
            "train": planted_data(n_train, seed=1)[0],
            "val": planted_data(n_val, seed=2)[0],
            "test": planted_data(n_val, seed=3)[0],
        }
        self.batch_size = batch_size

    def loader(self, split):
        return BatchLoader(split_batches(self.splits[split], self.batch_size))

    def train_dataloader(self):
        return self.loader("train")

    def val_dataloader(self):
        return self.loader("val")

    def test_dataloader(self):
        return self.loader("test")


def quiet_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def fit(model, data, **kwargs) -> pl.Trainer:
    trainer = quiet_trainer(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's notes on worker counts and small batches
        trainer.fit(model, datamodule=data)
    return trainer


def predicted_metrics(model, batch: Batch) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        p = torch.sigmoid(model(batch).double())
    return auc(batch.y, p), logloss(batch.y, p)


def test_lightning_logs_whole_split_metrics():
    data = PlantedData()
    model = build("fm", data.schema, lr=0.02)
    trainer = fit(model, data, max_epochs=2)
    val_auc, val_logloss = predicted_metrics(model, data.splits["val"])
    assert trainer.callback_metrics["val/auc"].item() == pytest.approx(val_auc, abs=1e-6)
    assert trainer.callback_metrics["val/logloss"].item() == pytest.approx(val_logloss, abs=1e-6)
    assert "train/loss" in trainer.callback_metrics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = trainer.test(model, datamodule=data, verbose=False)[0]
    test_auc, test_logloss = predicted_metrics(model, data.splits["test"])
    assert test["test/auc"] == pytest.approx(test_auc, abs=1e-6) and test_auc > 0.7
    assert test["test/logloss"] == pytest.approx(test_logloss, abs=1e-6)


@pytest.mark.parametrize("capacity", [None, 10, 3])  # unknown, as announced, fewer than come
def test_prediction_buffer_keeps_every_batch_in_order(capacity):
    buffer = PredictionBuffer(capacity, torch.float32, torch.device("cpu"), unknown_capacity=4)
    logits, labels = torch.randn(10), torch.randint(0, 2, (10,)).float()
    for rows in (slice(0, 4), slice(4, 5), slice(5, 10)):
        buffer.add(logits[rows], labels[rows])
    kept_logits, kept_labels = buffer.values()
    assert torch.equal(kept_logits, logits) and torch.equal(kept_labels, labels)


# -- FNN's two stages through Lightning ----------------------------------------------------------


class SnapshotAtTrainStart(pl.Callback):
    """What the model holds once ``on_fit_start`` has run, before any FNN step."""

    def on_train_start(self, trainer, model):
        self.embedding = model.embedding.table.weight.detach().clone()
        self.first_order = model.first_order.table.weight.detach().clone()


def test_fnn_loads_a_trained_fm_checkpoint_before_training(tmp_path):
    data = PlantedData(n_train=1024, n_val=512)
    fm = build("fm", data.schema, lr=0.02)
    trainer = fit(fm, data, max_epochs=1)
    trainer.save_checkpoint(tmp_path / "fm.ckpt")
    fnn = build("fnn", data.schema, fm_checkpoint=str(tmp_path / "fm.ckpt"))
    snapshot = SnapshotAtTrainStart()
    fit(fnn, data, max_epochs=1, callbacks=[snapshot])
    assert torch.equal(snapshot.embedding, fm.embedding.table.weight)
    assert torch.equal(snapshot.first_order, fm.linear.weights.table.weight)


def test_fnn_pretrains_an_fm_on_the_training_split_first():
    data = PlantedData()
    fnn = build("fnn", data.schema, pretrain_epochs=3, lr=0.02)
    snapshot = SnapshotAtTrainStart()
    fit(fnn, data, max_epochs=1, callbacks=[snapshot])
    assert bool(fnn.fm_initialised)
    # the input layer it started from is a trained FM: as an FM it ranks validation rows well
    fm = build("fm", data.schema)
    with torch.no_grad():
        fm.embedding.table.weight.copy_(snapshot.embedding)
        fm.linear.weights.table.weight.copy_(snapshot.first_order)
        fm.embedding.dense.zero_()  # the dense field's part is left out of this check
        fm.linear.weights.dense.zero_()
    assert predicted_metrics(fm, data.splits["val"])[0] > 0.7
    # a resumed fit does not pre-train again
    fnn.hparams.fm_checkpoint = "no-such-file.ckpt"
    fnn.on_fit_start()


# -- learning --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_splits():
    train, _ = planted_data(6000, seed=1)
    val, val_logits = planted_data(3000, seed=2)
    return split_batches(train, 200), val, auc(val.y, val_logits)


def test_fm_beats_lr_on_pairwise_structure(planted_splits):
    train, val, oracle = planted_splits
    lr_auc = predicted_metrics(train_plain(build("lr", PLANTED_SCHEMA, lr=0.05), train, 4), val)[0]
    fm_auc = predicted_metrics(train_plain(build("fm", PLANTED_SCHEMA, lr=0.05), train, 4), val)[0]
    assert fm_auc > lr_auc + 0.05, (lr_auc, fm_auc, oracle)


def test_lr_learns_with_ftrl_at_its_config(planted_splits):
    train, val, _ = planted_splits
    model = build("lr", PLANTED_SCHEMA, "ftrl", sparse_embeddings=True)
    assert predicted_metrics(train_plain(model, train, 4), val)[0] > 0.62


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_learns_the_planted_signal(name, planted_splits):
    train, val, oracle = planted_splits
    model = build(name, PLANTED_SCHEMA, lr=0.02)
    if name == "fnn":
        model.load_fm(model.pretrain_fm(train, epochs=1))
    val_auc = predicted_metrics(train_plain(model, train, 4), val)[0]
    assert val_auc > 0.6, (val_auc, oracle)  # LR's ceiling here is about 0.64, the oracle's 0.87
