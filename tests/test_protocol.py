"""The training protocol's knobs, each on its math: the plateau rule (best epoch, learning-rate
decay, early stopping), the whole-table and all-parameter L2 forms, and the initialisers."""

import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from experiments.run.plateau import PlateauSchedule
from models.init import initialize
from tests.helpers import build, random_batch, small_schema
from tests.test_model_training import PlantedData, quiet_trainer

pytestmark = pytest.mark.usefixtures("single_thread")


# -- the plateau rule ----------------------------------------------------------------------------


class StubTrainer:
    """What ``PlateauSchedule`` reads of a Trainer: the epoch's metrics, one optimiser, a checkpoint
    writer that records the epochs it saved."""

    def __init__(self, lr: float):
        self.optimizers = [torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)]
        self.sanity_checking = False
        self.state = SimpleNamespace(fn="fit")
        self.callback_metrics: dict = {}
        self.current_epoch = 0
        self.should_stop = False
        self.saved: list[int] = []

    def save_checkpoint(self, path, weights_only=False):
        self.saved.append(self.current_epoch)

    @property
    def lr(self) -> float:
        return self.optimizers[0].param_groups[0]["lr"]


def run_schedule(values, mode="max", **settings):
    """Feeds one validation value per epoch until the schedule stops training; returns the stub
    trainer (lr after each epoch in ``lrs``) and the schedule."""
    trainer, schedule = StubTrainer(lr=1e-3), PlateauSchedule("val/auc", mode, "best.ckpt", **settings)
    trainer.lrs = []
    for epoch, value in enumerate(values):
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val/auc": torch.tensor(value)}
        schedule.on_validation_end(trainer, None)
        trainer.lrs.append(trainer.lr)
        if trainer.should_stop:
            break
    return trainer, schedule


def test_learning_rate_decays_exactly_on_the_epochs_that_do_not_improve_by_min_delta():
    # epoch 1 improves by less than min_delta: it does not count as better, so the rate decays;
    # epoch 2 improves on the best by exactly min_delta, which counts; epoch 3 ties; epoch 4 is worse
    values = [0.70, 0.70 + 5e-7, 0.70 + 1e-6, 0.70 + 1e-6, 0.69, 0.80]
    trainer, schedule = run_schedule(values, patience=3, min_delta=1e-6, lr_factor=0.1, min_lr=1e-9)
    assert trainer.lrs == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5, 1e-6, 1e-6])
    assert trainer.saved == [0, 2, 5] and schedule.best_epoch == 5
    assert not trainer.should_stop


def test_training_stops_after_patience_non_improving_epochs_in_a_row_and_keeps_the_best():
    trainer, schedule = run_schedule([0.60, 0.65, 0.64, 0.66, 0.66, 0.65, 0.99], patience=2)
    assert len(trainer.lrs) == 6 and trainer.should_stop  # stopped after epoch 5, never saw 0.99
    assert trainer.saved == [0, 1, 3] and schedule.best_epoch == 3 and schedule.best == pytest.approx(0.66)
    assert trainer.lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-6])  # floor 1e-6


def test_a_minimised_objective_improves_downwards_and_nan_never_improves():
    trainer, schedule = run_schedule([0.50, 0.49, math.nan, 0.48], mode="min", patience=3, lr_factor=0.5)
    assert trainer.saved == [0, 1, 3] and trainer.lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4])


def test_lr_factor_one_never_decays():
    trainer, _ = run_schedule([0.5, 0.4, 0.3], patience=3, lr_factor=1.0)
    assert trainer.lrs == [1e-3] * 3


def test_the_real_trainer_decays_and_stops_by_the_rule(tmp_path):
    """SGD at 1e-7 leaves validation AUC flat: every epoch after the first fails to improve by 1e-6,
    so the rate falls tenfold per epoch and training stops after `patience` of them."""
    data = PlantedData(n_train=512, n_val=512)
    model = build("fm", data.schema, optimizer="sgd", lr=1e-7)
    schedule = PlateauSchedule(
        "val/auc", "max", tmp_path / "best.ckpt", patience=2, min_delta=1e-6, lr_factor=0.1, min_lr=1e-12
    )
    trainer = quiet_trainer(max_epochs=10, callbacks=[schedule])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    assert trainer.current_epoch == 3  # epochs 0, 1, 2 ran; 1 and 2 did not improve
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-9)
    assert schedule.best_epoch == 0 and (tmp_path / "best.ckpt").is_file()


# -- regularisers ------------------------------------------------------------------------------


def penalty_gradients(model, batch):
    model.zero_grad()
    model.penalty(batch).backward()
    return {name: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for name, p in model.named_parameters()}


def test_whole_table_l2_has_gradient_lambda_times_every_row_read_or_not():
    schema = small_schema()
    model = build("deepfm", schema, embedding_table_l2=0.3)
    batch = random_batch(schema, size=2)  # two rows: most ids are not read
    grads = penalty_gradients(model, batch)
    tables = {id(p) for p in model.id_table_parameters()}
    assert tables  # embeddings, first-order weights and the dense fields' vectors
    for name, p in model.named_parameters():
        expected = 0.3 * p.detach() if id(p) in tables else torch.zeros_like(p)
        assert torch.allclose(grads[name], expected, atol=1e-7), name
    read = set(batch.x.flatten().tolist())
    unread = [i for i in range(schema.num_ids) if i not in read]
    assert unread and grads["embedding.table.weight"][unread].abs().sum() > 0


def test_net_l2_covers_every_parameter_outside_the_tables_biases_and_batch_norm_included():
    schema = small_schema()
    model = build("dnn", schema, net_l2=0.2, batch_norm=True)
    grads = penalty_gradients(model, random_batch(schema))
    tables = {id(p) for p in model.id_table_parameters()}
    names = {name for name, p in model.named_parameters() if id(p) not in tables}
    assert any(".bias" in n for n in names) and any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    for name, p in model.named_parameters():
        expected = torch.zeros_like(p) if id(p) in tables else 0.2 * p.detach()
        assert torch.allclose(grads[name], expected, atol=1e-7), name


def test_whole_table_l2_value_is_half_lambda_times_the_squared_norms():
    schema = small_schema()
    model = build("fm", schema, embedding_table_l2=0.5, net_l2=0.1)
    with torch.no_grad():
        model.linear.bias.fill_(2.0)
    tables = sum(
        p.pow(2).sum()
        for p in (
            model.embedding.table.weight,
            model.embedding.dense,
            model.linear.weights.table.weight,
            model.linear.weights.dense,
        )
    )
    expected = 0.25 * tables + 0.05 * 4.0
    assert model.penalty(random_batch(schema)).item() == pytest.approx(expected.item(), rel=1e-6)


def test_whole_table_l2_refuses_sparse_gradients():
    with pytest.raises(ValueError, match="dense"):
        build("fm", small_schema(), optimizer="lazy_adam", sparse_embeddings=True, embedding_table_l2=0.1)


# -- initialisers --------------------------------------------------------------------------------


def test_default_init_changes_nothing():
    model = build("deepfm", small_schema())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fuxictr_init_draws_tables_normal_and_linear_layers_glorot_with_zero_bias():
    from datamodules.schema import Schema

    schema = Schema.build([("a", "categorical", 20000), ("b", "categorical", 20000)], dense=["d"])
    model = build(
        "dcn", schema, init={"embedding_std": 1e-4, "linear": "xavier_normal"}, hidden_units=[300], embedding_dim=64
    )
    torch.manual_seed(1)
    model.reset_parameters()
    for table in (model.embedding.table.weight,):
        assert table.mean().abs() < 1e-6 and table.std().item() == pytest.approx(1e-4, rel=0.03)
    first = model.dnn.layers[0]
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / (first.in_features + first.out_features)), rel=0.05)
    assert torch.all(first.bias == 0) and torch.all(model.head.bias == 0) and torch.all(model.cross.bias == 0)
    dim = model.cross.weight.shape[1]
    assert model.cross.weight.std().item() == pytest.approx(math.sqrt(2 / (dim + 1)), rel=0.1)


def test_fuxictr_init_gives_first_order_weights_the_embedding_std():
    schema = small_schema()
    model = build("lr", schema, init={"embedding_std": 0.5})
    assert torch.all(model.linear.weights.table.weight == 0)  # LR's own: zeros
    model.reset_parameters()
    assert model.linear.weights.table.weight.abs().sum() > 0 and torch.all(model.linear.bias == 0)


def test_unknown_init_settings_fail_at_construction():
    with pytest.raises(ValueError, match="unknown keys"):
        build("fm", small_schema(), init={"embeding_std": 1e-4})
    with pytest.raises(ValueError, match="init.linear"):
        build("fm", small_schema(), init={"linear": "kaiming"})


def test_initialize_without_settings_touches_nothing():
    layer = nn.Linear(3, 2)
    before = layer.weight.clone()
    initialize(layer, [])
    assert torch.equal(layer.weight, before)
