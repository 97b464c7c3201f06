"""Multi-valued fields side by side with FuxiCTR's sequence features (issue 35, item 3), where
FuxiCTR is installed (``pip install -e ".[reference]"``; elsewhere these tests skip): the same ids
from its preprocessing, the same mean-pooled embeddings, logits and loss on identical weights; and
where the two differ (first-order weights), what each one computes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("fuxictr", reason="FuxiCTR is an optional extra: pip install -e '.[reference]'")

from fuxictr.preprocess import FeatureProcessor
from fuxictr.pytorch.layers import LogisticRegression

from datamodules import CTRDataModule, TableSource
from datamodules.ctr import SplitBatches
from datamodules.schema import Schema
from experiments.reference.check import fuxictr_encoding
from experiments.reference.fuxictr_models import DNN, feature_map
from experiments.reference.weights import copy_tables, copy_weights
from models.layers.embedding import LinearLogit
from tests.helpers import build

MAX_LEN = 4
TOKENS = [f"g{i}" for i in range(9)]


def write_split(path, rows: int, seed: int) -> None:
    """label, user, genres: 0 to 6 distinct tokens (some lists longer than MAX_LEN), Zipf-ish frequencies."""
    rng = np.random.default_rng(seed)
    lines = ["label,user,genres"]
    for _ in range(rows):
        count = int(rng.integers(0, 7))
        tokens = rng.choice(len(TOKENS), count, replace=False, p=np.arange(9, 0, -1) / 45)
        lines.append(f"{rng.integers(0, 2)},u{rng.integers(0, 12)},{'|'.join(TOKENS[t] for t in tokens)}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """(our data module, FuxiCTR's vocabulary sizes and encoded splits) of the same three files."""
    folder = tmp_path_factory.mktemp("multi")
    files = {split: folder / f"{split}.csv" for split in ("train", "val", "test")}
    for seed, path in enumerate(files.values()):
        write_split(path, 400, seed)
    source = TableSource(
        label="label",
        categorical=["user"],
        files={s: str(p) for s, p in files.items()},
        multi_valued={"genres": {"max_len": MAX_LEN}},
    )
    dm = CTRDataModule(source, encoding={"convention": "fuxictr"}, cache_dir=str(folder / "cache"), progress=False)
    columns = [
        {"name": "user", "active": True, "dtype": "str", "type": "categorical"},
        {"name": "genres", "active": True, "dtype": "str", "type": "sequence", "splitter": "|", "max_len": MAX_LEN},
    ]
    sizes, theirs = fuxictr_encoding(FeatureProcessor, columns, {"name": "label", "dtype": "float"}, files, 1)
    return dm, sizes, theirs


def test_fuxictr_sequence_preprocessing_gives_our_ids(encoded):
    dm, sizes, theirs = encoded
    genres = dm.schema.multi_fields[0]
    assert sizes == {"user": dm.schema.sparse_fields[0].vocab_size, "genres": genres.vocab_size}
    for split in ("train", "val", "test"):
        ours = np.asarray(dm.split_arrays(split).x_multi).astype(np.int64) - genres.offset
        np.testing.assert_array_equal(ours, theirs[split]["genres"])
        assert (ours == 0).all(1).any() and (ours != 0).all(1).any()  # empty lists and cut ones are there


def batches(dm):
    """(our batch, FuxiCTR's inputs) of the whole test split, float64 labels."""
    batch = SplitBatches(dm.split_arrays("test"))[slice(None)]
    batch = batch._replace(y=batch.y.double())
    fields = dm.schema.id_fields
    inputs = {"user": batch.x[:, 0] - fields[0].offset, "genres": batch.x_multi - fields[1].offset, "label": batch.y}
    return batch, inputs


def test_mean_pooled_embeddings_logits_and_loss_equal_fuxictr_on_the_same_weights(encoded, tmp_path):
    dm, _, _ = encoded
    schema = dm.schema
    fmap = feature_map([f.vocab_size for f in schema.id_fields], 4, [f.name for f in schema.id_fields], {"genres": 4})
    theirs = DNN(
        fmap,
        embedding_dim=4,
        hidden_units=[8, 6],
        activation="relu",
        dropout=0.0,
        batch_norm=False,
        embedding_regularizer=0.0,
        net_regularizer=0.0,
        monitor="AUC",
        early_stop_patience=1,
        model_root=tmp_path,
    ).double()
    ours = build("dnn", schema, batch_norm=False).double()
    with torch.no_grad():
        copy_weights("dnn", ours, theirs)
    batch, inputs = batches(dm)
    with torch.no_grad():
        their_embedded = theirs.embedding_layer(theirs.get_inputs(inputs))
        torch.testing.assert_close(ours.embedding(batch), their_embedded, rtol=0, atol=1e-15)
        their_p = theirs(inputs)["y_pred"].squeeze(1)
        torch.testing.assert_close(torch.sigmoid(ours(batch)), their_p, rtol=1e-13, atol=1e-15)
        their_loss = F.binary_cross_entropy(their_p, batch.y)
        assert float(ours.losses(batch)[0]) == pytest.approx(float(their_loss), rel=1e-12)


def test_fuxictrs_first_order_weights_of_a_sequence_are_summed_where_ours_pool_as_the_field_does(encoded):
    dm, _, _ = encoded
    schema = dm.schema
    fmap = feature_map([f.vocab_size for f in schema.id_fields], 1, [f.name for f in schema.id_fields], {"genres": 4})
    theirs = LogisticRegression(fmap, use_bias=False).double()
    torch.nn.init.normal_(theirs.embedding_layer.embedding_layer.embedding_layers["genres"].weight)
    with torch.no_grad():  # FuxiCTR keeps padding rows at zero
        theirs.embedding_layer.embedding_layer.embedding_layers["genres"].weight[0] = 0
    batch, inputs = batches(dm)
    summed = Schema(tuple(replace(f, pooling="sum") if f.multi else f for f in schema.fields))
    for pooled_schema, equal in ((summed, True), (schema, False)):
        ours = LinearLogit(pooled_schema, bias=False).double()
        with torch.no_grad():
            copy_tables(ours.weights.table.weight, theirs.embedding_layer, pooled_schema)
            close = torch.allclose(ours(batch), theirs({k: v for k, v in inputs.items() if k != "label"}).squeeze(1))
        assert close == equal
