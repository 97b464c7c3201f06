"""The synthetic generator: deterministic, Criteo-shaped, and with the signal it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules import CTRDataModule, SyntheticSource
from datamodules.sources.synthetic import BLOCK_ROWS


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties averaged)."""
    ranks = pd.Series(scores).rank().to_numpy()
    positive = labels == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def assert_same_chunk(a, b):
    for name in ("row_index", "labels", "numeric", "true_probability"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for column_a, column_b in zip(a.categorical, b.categorical):
        np.testing.assert_array_equal(column_a.uniques[column_a.codes], column_b.uniques[column_b.codes])


def test_same_seed_same_rows_other_seed_other_rows():
    first, again, other = (SyntheticSource(rows=5000, seed=s).block(0) for s in (4, 4, 5))
    assert_same_chunk(first, again)
    assert not np.array_equal(first.true_probability, other.true_probability)


def test_rows_do_not_depend_on_how_many_are_generated():
    shorter, longer = SyntheticSource(rows=2 * BLOCK_ROWS + 10), SyntheticSource(rows=3 * BLOCK_ROWS)
    assert_same_chunk(shorter.block(1), longer.block(1))
    assert shorter.block(2).num_rows == 10


def test_full_criteo_size_streams_in_blocks():
    source = SyntheticSource(rows=45_840_617)
    chunks = source.read("all", rejects=None)
    first = next(chunks)
    assert first.num_rows == BLOCK_ROWS and first.row_index[0] == 0
    last = source.block(45_840_617 // BLOCK_ROWS)
    assert last.row_index[-1] == 45_840_616 and last.num_rows == 45_840_617 % BLOCK_ROWS


def test_criteo_shape():
    source = SyntheticSource(rows=BLOCK_ROWS)
    chunk = source.block(0)
    assert chunk.numeric.shape == (BLOCK_ROWS, 13) and len(chunk.categorical) == 26
    missing = np.isnan(chunk.numeric).mean(axis=0)
    assert (missing > 0.01).all() and missing.max() > 0.5
    present = chunk.numeric[~np.isnan(chunk.numeric)]
    assert present.min() < 0  # some fields reach -1 or below, as Criteo's I2
    tails = [np.nanmax(c) / max(np.nanmedian(c), 1) for c in chunk.numeric.T]
    assert max(tails) > 100
    cardinalities = sorted(len(column.uniques) for column in chunk.categorical)
    assert cardinalities[0] <= 5 and cardinalities[-1] >= 20_000
    largest = max(chunk.categorical, key=lambda c: len(c.uniques))
    counts = np.sort(np.bincount(largest.codes[largest.codes >= 0]))[::-1]
    assert counts[: len(counts) // 100].sum() > 0.3 * counts.sum()  # Zipf: 1% of the values, >30% of the rows
    assert any((column.codes < 0).mean() > 0.05 for column in chunk.categorical)


def test_positive_rate_and_oracle():
    chunk = SyntheticSource(rows=60_000, positive_rate=0.25).block(0)
    assert abs(chunk.labels.mean() - 0.25) < 0.01
    assert abs(chunk.true_probability.mean() - chunk.labels.mean()) < 0.01
    assert auc(chunk.labels, chunk.true_probability) > 0.8


def train_and_score(dm: CTRDataModule, pairwise: bool, epochs: int = 10) -> float:
    """Test AUC of a small LR (first-order weights) or FM (plus <v_i, v_j> over field pairs)
    trained with Adam on the datamodule's batches."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(dm.schema.num_ids, 1 + 8)  # column 0: first-order weight, 1..8: latent vector
    torch.nn.init.normal_(table.weight, std=0.01)
    bias = torch.nn.Parameter(torch.zeros(1))

    def logit(x: torch.Tensor) -> torch.Tensor:
        rows = table(x)
        out = bias + rows[..., 0].sum(1)
        if pairwise:
            v = rows[..., 1:]
            out = out + 0.5 * (v.sum(1) ** 2 - (v**2).sum(1)).sum(1)
        return out

    optimiser = torch.optim.Adam([*table.parameters(), bias], lr=0.01)
    for _ in range(epochs):
        for batch in dm.train_dataloader():
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit(batch.x), batch.y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        scores = torch.cat([logit(batch.x) for batch in dm.test_dataloader()]).numpy()
    return auc(dm.labels("test"), scores)


def signal_dm(tmp_path, **effects) -> CTRDataModule:
    return CTRDataModule(
        SyntheticSource(rows=40_000, seed=0, **effects),
        cache_dir=str(tmp_path),
        batch_size=512,
        encoding={"min_count": 2},
    )


@pytest.mark.slow
def test_pairwise_only_signal_is_learnt_by_fm_not_lr(tmp_path, single_thread):
    dm = signal_dm(tmp_path, first_order=0.0, pairwise=1.5, higher_order=0.0)
    oracle = auc(dm.labels("test"), dm.true_probabilities("test"))
    lr, fm = train_and_score(dm, pairwise=False), train_and_score(dm, pairwise=True)
    assert lr < 0.53 and fm > lr + 0.08 and oracle > fm + 0.1


@pytest.mark.slow
def test_default_mix_has_first_order_signal_and_headroom(tmp_path, single_thread):
    dm = signal_dm(tmp_path)
    oracle = auc(dm.labels("test"), dm.true_probabilities("test"))
    lr = train_and_score(dm, pairwise=False)
    assert lr > 0.58 and oracle > lr + 0.15


# -- the ceilings --------------------------------------------------------------------------------


@pytest.mark.parametrize("effects", [{}, {"first_order": 0.5, "pairwise": 2.0, "higher_order": 2.0}])
def test_ceilings_are_ordered_below_the_oracle(effects):
    chunk = SyntheticSource(rows=60_000, seed=3, **effects).block(0)
    first, pairwise = (auc(chunk.labels, chunk.ceiling_probability[:, j]) for j in range(2))
    oracle = auc(chunk.labels, chunk.true_probability)
    assert 0.5 < first < pairwise < oracle


@pytest.mark.parametrize(
    "effects, equal", [({"higher_order": 0.0}, [1]), ({"pairwise": 0.0, "higher_order": 0.0}, [0, 1])]
)
def test_a_ceiling_is_the_oracle_when_the_families_it_leaves_out_are_off(effects, equal):
    chunk = SyntheticSource(rows=5_000, seed=1, **effects).block(0)
    for j in equal:
        np.testing.assert_allclose(chunk.ceiling_probability[:, j], chunk.true_probability, rtol=1e-6)


def test_a_ceiling_is_calibrated():
    chunk = SyntheticSource(rows=BLOCK_ROWS, seed=2).block(0)
    for j in range(2):  # Platt scaling against the true probabilities: the mean prediction is the click rate
        assert chunk.ceiling_probability[:, j].mean() == pytest.approx(chunk.true_probability.mean(), abs=0.005)


def small_vocabulary_dm(tmp_path, **effects) -> CTRDataModule:
    return CTRDataModule(
        SyntheticSource(rows=100_000, seed=0, max_cardinality=50, **effects),
        cache_dir=str(tmp_path),
        batch_size=512,
        encoding={"min_count": 2},
    )


@pytest.mark.slow
def test_lr_approaches_its_ceiling_on_first_order_data(tmp_path, single_thread):
    dm = small_vocabulary_dm(tmp_path, first_order=1.0, pairwise=0.0, higher_order=0.0)
    ceiling = auc(dm.labels("test"), dm.ceiling_probabilities("test")["first_order"])
    lr = train_and_score(dm, pairwise=False, epochs=3)
    assert (lr - 0.5) / (ceiling - 0.5) > 0.9


@pytest.mark.slow
def test_fm_approaches_its_ceiling_on_pairwise_data(tmp_path, single_thread):
    dm = small_vocabulary_dm(tmp_path, first_order=1.0, pairwise=1.5, higher_order=0.0)
    ceilings = dm.ceiling_probabilities("test")
    fm = train_and_score(dm, pairwise=True, epochs=5)
    lr = train_and_score(dm, pairwise=False, epochs=3)
    assert (fm - 0.5) / (auc(dm.labels("test"), ceilings["pairwise"]) - 0.5) > 0.8
    assert lr < auc(dm.labels("test"), ceilings["first_order"]) + 0.01 < fm


def test_field_names_rename_the_fields_and_change_no_value():
    plain = next(SyntheticSource(rows=500, cardinalities=(9, 8, 7, 6), missing_values=False).read("all", None))
    names = ("user", "item", "day", "city")
    source = SyntheticSource(rows=500, cardinalities=(9, 8, 7, 6), missing_values=False, field_names=names)
    named = next(source.read("all", None))
    assert source.categorical_fields == names
    assert all(np.array_equal(a.codes, b.codes) for a, b in zip(plain.categorical, named.categorical))
    np.testing.assert_array_equal(plain.labels, named.labels)
    with pytest.raises(ValueError, match="field_names"):
        SyntheticSource(rows=10, cardinalities=(9, 8, 7, 6), field_names=("a", "a", "b", "c"))


def test_the_frappe_shaped_data_has_frappes_fields_and_frappe_x1s_split_to_the_row():
    from datamodules.sources.frappe import FIELDS
    from datamodules.splits import SplitConfig
    from experiments.run.config import compose_config

    data = compose_config(["data=frappe_like"]).data
    assert tuple(data.source.field_names) == FIELDS  # the names the Frappe files are read with
    split = SplitConfig.from_any(data.split).resolved(("all",))
    counts = np.bincount(split.assign("all", data.source.rows), minlength=3)
    assert counts.tolist() == [202_027, 57_722, 28_860]
