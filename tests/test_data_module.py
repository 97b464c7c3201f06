"""CTRDataModule: batches, epochs, the interface models and results use, Lightning, Hydra, CLI."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from datamodules import Batch, CriteoSource, CTRDataModule, Schema, SyntheticSource
from datamodules.__main__ import main as cli_main
from datamodules.sampling import ShuffledBatches
from tests.helpers import build as build_model
from tests.test_data_formats import AVAZU_COLUMNS, avazu_like_rows, libfm_rows, write_criteo, write_text

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture
def dm(tmp_path) -> CTRDataModule:
    module = CTRDataModule(SyntheticSource(rows=5000, seed=3), cache_dir=str(tmp_path), batch_size=512, seed=11)
    module.prepare_data()
    module.setup("fit")
    return module


def test_interface(dm):
    assert dm.name == "synthetic"
    assert isinstance(dm.schema, Schema) and dm.schema.num_sparse == 39 and dm.schema.num_dense == 0
    assert [dm.num_rows(s) for s in ("train", "val", "test")] == [4000, 500, 500]
    assert dm.labels("val").dtype == np.float32 and set(np.unique(dm.labels("val"))) <= {0.0, 1.0}
    p_true = dm.true_probabilities("test")
    assert p_true.shape == (500,) and ((0 < p_true) & (p_true < 1)).all()
    assert dm.manifest["splits"]["test"]["rows"] == 500


def test_batches_have_the_contract_shapes(dm):
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Batch) and batch.size == 512
    assert batch.x.dtype == torch.int64 and tuple(batch.x.shape) == (512, 39)
    assert batch.y.dtype == torch.float32 and tuple(batch.y.shape) == (512,)
    assert batch.x_dense is None
    assert 0 <= int(batch.x.min()) and int(batch.x.max()) < dm.schema.num_ids


def rows_as_set(x: np.ndarray, y: np.ndarray) -> list[tuple]:
    return sorted(map(tuple, np.column_stack([x, y])))


def test_each_epoch_covers_every_training_row_once_in_a_new_order(dm):
    loader = dm.train_dataloader()
    stored = dm.split_arrays("train")
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert [b.size for b in batches] == [512] * 7 + [4000 - 7 * 512]
        x = torch.cat([b.x for b in batches]).numpy()
        y = torch.cat([b.y for b in batches]).numpy()
        assert rows_as_set(x, y) == rows_as_set(np.asarray(stored.x), np.asarray(stored.y))
        epochs.append(x)
    assert not np.array_equal(epochs[0], epochs[1])


def test_shuffling_follows_run_seed_and_epoch():
    orders = {(seed, epoch): np.concatenate(list(_epoch(seed, epoch))) for seed in (0, 1) for epoch in (0, 1)}
    for order in orders.values():
        assert sorted(order.tolist()) == list(range(1000))
    assert not np.array_equal(orders[0, 0], orders[0, 1]) and not np.array_equal(orders[0, 0], orders[1, 0])
    np.testing.assert_array_equal(orders[0, 1], np.concatenate(list(_epoch(0, 1))))


def _epoch(seed: int, epoch: int):
    sampler = ShuffledBatches(1000, 64, seed)
    sampler.set_epoch(epoch)
    for rows in sampler:
        assert (np.diff(rows) > 0).all()  # sorted inside the batch
        yield rows


def test_drop_last_and_eval_batch_size(tmp_path):
    module = CTRDataModule(
        SyntheticSource(rows=5000, seed=3), cache_dir=str(tmp_path), batch_size=512, eval_batch_size=300, drop_last=True
    )
    assert [b.size for b in module.train_dataloader()] == [512] * 7
    assert [b.size for b in module.val_dataloader()] == [300, 200]


def test_eval_batches_follow_label_order(dm):
    y = torch.cat([b.y for b in dm.test_dataloader()]).numpy()
    np.testing.assert_array_equal(y, dm.labels("test"))
    np.testing.assert_array_equal(
        np.concatenate([b.x.numpy() for b in dm.val_dataloader()]), np.asarray(dm.split_arrays("val").x)
    )


def test_files_have_no_true_probabilities(tmp_path):
    path = write_criteo(tmp_path / "train.tsv", 30)
    module = CTRDataModule(CriteoSource(path=str(path)), cache_dir=str(tmp_path / "c"))
    assert module.name == "criteo" and module.true_probabilities("test") is None


def test_default_source_is_synthetic(tmp_path):
    module = CTRDataModule(cache_dir=str(tmp_path))
    assert module.name == "synthetic" and module.source.rows == 100_000


class TinyLR(pl.LightningModule):
    """Logistic regression over the schema's ids; records the rows each training epoch saw."""

    def __init__(self, schema: Schema):
        super().__init__()
        self.weights = torch.nn.Embedding(schema.num_ids, 1)
        self.seen: list[list[torch.Tensor]] = []

    def on_train_epoch_start(self):
        self.seen.append([])

    def training_step(self, batch: Batch, _):
        self.seen[-1].append(batch.x[:, 0].clone())
        return torch.nn.functional.binary_cross_entropy_with_logits(self.weights(batch.x).sum((1, 2)), batch.y)

    def validation_step(self, batch: Batch, _):
        self.log(
            "val_loss",
            torch.nn.functional.binary_cross_entropy_with_logits(self.weights(batch.x).sum((1, 2)), batch.y),
            batch_size=batch.size,
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trains_on_it_with_a_new_order_each_epoch(dm, tmp_path):
    model = TinyLR(dm.schema)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=dm)
    first, second = (torch.cat(epoch) for epoch in model.seen)
    assert len(first) == len(second) == 4000 and not torch.equal(first, second)
    assert torch.equal(first.sort().values, second.sort().values)


# --------------------------------------------------------------------------- Hydra configs and CLI


def compose_data(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(config_name=None, overrides=[f"+data={name}", "+seed=5", *overrides])


def build(cfg) -> CTRDataModule:
    return instantiate(cfg.data, _execution_whitelist_=["datamodules.*"])


def test_synthetic_config_is_the_default_dataset(tmp_path):
    cfg = compose_data("synthetic", f"data.cache_dir={tmp_path}", "data.source.rows=2000")
    module = build(cfg)
    assert module.name == "synthetic" and module.seed == 5 and module.source.rows == 2000
    assert module.num_rows("train") == 1600


def test_pairwise_config_switches_other_effects_off():
    source = compose_data("synthetic_pairwise").data.source
    assert (source.first_order, source.pairwise, source.higher_order) == (0.0, 1.5, 0.0)


def test_criteo_config_with_one_path_or_predefined_files(tmp_path):
    files = {s: write_criteo(tmp_path / f"{s}.tsv", 30, seed=i) for i, s in enumerate(("train", "val", "test"))}
    predefined = build(
        compose_data(
            "criteo",
            f"data.cache_dir={tmp_path / 'c'}",
            "data.source.files={" + ", ".join(f"{s}: {p}" for s, p in files.items()) + "}",
        )
    )
    assert [predefined.num_rows(s) for s in ("train", "val", "test")] == [30, 30, 30]
    assert predefined.manifest["encoding"] == {"min_count": 10, "numeric": "log_square", "convention": "ctr_bench"}
    single = build(compose_data("criteo", f"data.cache_dir={tmp_path / 'c'}", f"data.source.path={files['train']}"))
    assert [single.num_rows(s) for s in ("train", "val", "test")] == [24, 3, 3]  # 81/9/10 of 30


def test_criteo_config_without_data_says_what_to_set():
    with pytest.raises(Exception, match="no input file is set; give either `path`"):
        build(compose_data("criteo"))


@pytest.mark.parametrize("name,fields", [("frappe", 10), ("movielens_tag", 3)])
def test_libfm_configs(tmp_path, name, fields):
    files = {
        s: write_text(tmp_path / f"{s}.libfm", libfm_rows(20, fields, seed=i))
        for i, s in enumerate(("train", "val", "test"))
    }
    module = build(
        compose_data(
            name, f"data.cache_dir={tmp_path / 'c'}", *(f"data.source.files.{s}={p}" for s, p in files.items())
        )
    )
    assert module.name == name and module.schema.num_sparse == fields
    assert [module.num_rows(s) for s in ("train", "val", "test")] == [20, 20, 20]


def test_avazu_config_with_headerless_val_and_test(tmp_path):
    columns = ",".join(AVAZU_COLUMNS)
    files = {
        "train": write_text(tmp_path / "train.csv", [columns] + avazu_like_rows(40)),
        "val": write_text(tmp_path / "val.csv", avazu_like_rows(6, seed=1)),
        "test": write_text(tmp_path / "test.csv", avazu_like_rows(4, seed=2)),
    }
    module = build(
        compose_data(
            "avazu",
            f"data.cache_dir={tmp_path / 'c'}",
            f"data.source.column_names=[{columns}]",
            "data.source.categorical=[site_id,banner_pos,C14]",
            "data.source.files={" + ", ".join(f"{s}: {p}" for s, p in files.items()) + "}",
            "data.source.header={train: true, val: false, test: false}",
        )
    )
    assert [module.num_rows(s) for s in ("train", "val", "test")] == [40, 6, 4]


def test_cli_prints_schema_and_manifest(tmp_path, capsys):
    path = write_text(tmp_path / "t.csv", ["y,city,price"] + [f"{i % 2},c{i % 4},{i}" for i in range(50)])
    cli_main(
        [
            "table",
            f"source.path={path}",
            "source.label=y",
            "source.categorical=[city]",
            "source.numeric=[price]",
            f"cache_dir={tmp_path / 'c'}",
            "name=tiny",
        ]
    )
    printed = capsys.readouterr().out
    assert "dataset tiny" in printed and "rows read 50, kept 50, rejected 0" in printed
    assert "price            numeric     vocab" in printed and "train           40 rows" in printed


def test_loader_datasets_pickle_as_a_reference_not_the_data(dm):
    dataset = dm.train_dataloader().dataset
    payload = pickle.dumps(dataset)
    assert len(payload) < 2000  # 4000 rows x 39 ids would be 600 kB
    reopened = pickle.loads(payload)
    np.testing.assert_array_equal(reopened[np.arange(10)].x.numpy(), dataset[np.arange(10)].x.numpy())


def test_worker_processes_serve_the_same_batches(tmp_path):
    module = CTRDataModule(SyntheticSource(rows=5000, seed=3), cache_dir=str(tmp_path), batch_size=512, num_workers=1)
    in_process = CTRDataModule(SyntheticSource(rows=5000, seed=3), cache_dir=str(tmp_path), batch_size=512)
    for a, b in zip(module.val_dataloader(), in_process.val_dataloader()):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def batches_of(loader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(b.x.numpy().copy(), b.y.numpy().copy()) for b in loader]


def test_prefetching_thread_serves_the_same_batches_in_the_same_order_every_epoch(tmp_path):
    source = SyntheticSource(rows=5000, seed=3)
    ahead = CTRDataModule(source, cache_dir=str(tmp_path), batch_size=512, prefetch=2)
    inline = CTRDataModule(source, cache_dir=str(tmp_path), batch_size=512)
    ahead_train, inline_train = ahead.train_dataloader(), inline.train_dataloader()
    assert len(ahead_train) == len(inline_train) == 8
    for epoch in (0, 1, 5):  # Lightning's set_epoch reaches the shuffling sampler through the wrapper
        ahead_train.sampler.set_epoch(epoch)
        inline_train.sampler.set_epoch(epoch)
        got, want = batches_of(ahead_train), batches_of(inline_train)
        assert len(got) == len(want) == 8
        for (gx, gy), (wx, wy) in zip(got, want):
            np.testing.assert_array_equal(gx, wx)
            np.testing.assert_array_equal(gy, wy)
    for a, b in zip(batches_of(ahead.test_dataloader()), batches_of(inline.test_dataloader())):
        np.testing.assert_array_equal(a[0], b[0])


def test_prefetching_thread_raises_the_loaders_error_and_stops_when_the_consumer_does():
    import threading

    from datamodules.prefetch import Prefetched

    def failing():
        yield 1
        yield 2
        raise OSError("disk gone at batch 3")

    seen = []
    with pytest.raises(OSError, match="disk gone at batch 3"):
        for item in Prefetched(failing(), depth=1):
            seen.append(item)
    assert seen == [1, 2]

    endless = Prefetched(iter(range(10**9)), depth=2)
    iterator = iter(endless)
    assert [next(iterator) for _ in range(3)] == [0, 1, 2]
    iterator.close()  # what a `break` out of a for loop does
    assert not [t for t in threading.enumerate() if t.name == "ctr-bench-prefetch"]
    with pytest.raises(ValueError, match="depth must be >= 1"):
        Prefetched([], depth=0)


def test_a_model_trains_to_the_same_weights_with_batches_prefetched(tmp_path):

    def trained(prefetch: int) -> dict[str, torch.Tensor]:
        pl.seed_everything(0)
        data = CTRDataModule(
            SyntheticSource(rows=3000, seed=3), cache_dir=str(tmp_path), batch_size=256, prefetch=prefetch
        )
        data.setup()
        model = build_model("deepfm", data.schema, hidden_units=[16], dropout=0.5)
        trainer = pl.Trainer(
            max_epochs=2,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=True,
        )
        trainer.fit(model, datamodule=data)
        return {k: v.clone() for k, v in model.state_dict().items()}

    inline, ahead = trained(0), trained(2)
    assert inline.keys() == ahead.keys()
    for key in inline:
        assert torch.equal(inline[key], ahead[key]), key
