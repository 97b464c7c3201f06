"""``precision: bf16``: which layers compute in bfloat16, that everything around them stays float32,
and that every model still trains and predicts what its float32 twin does, to bf16's rounding."""

import pytest
import torch

import models
from datamodules.schema import Batch
from models.layers import CIN, MLP, FinalBlock
from models.layers.precision import set_precision
from tests.helpers import build, random_batch, small_schema

pytestmark = pytest.mark.usefixtures("single_thread")

DEEP = sorted(
    name
    for name, cls in models.MODELS.items()
    if any(isinstance(m, (MLP, CIN, FinalBlock)) for m in build(name, small_schema()).modules())
)


def test_the_deep_models_are_the_ones_with_an_mlp_cin_or_final_block():
    assert {"deepfm", "dnn", "xdeepfm", "ipnn", "fm_dnn", "finalmlp", "finalnet"} <= set(DEEP)
    assert not {"lr", "fm", "ffm"} & set(DEEP)


def test_set_precision_reaches_every_mlp_and_cin_and_checks_its_argument():
    model = build("xdeepfm", small_schema())
    set_precision(model, "bf16")
    heavy = [m for m in model.modules() if isinstance(m, (MLP, CIN))]
    assert len(heavy) == 2 and all(m.compute_dtype is torch.bfloat16 for m in heavy)
    set_precision(model, 32)
    assert all(m.compute_dtype is None for m in heavy)
    with pytest.raises(ValueError, match="precision must be one of"):
        set_precision(model, "fp8")


def test_mlp_hidden_layers_run_in_bf16_and_its_output_layer_in_float32():
    mlp = MLP(6, [5, 4], dropout=0.0)
    seen = {}

    def record(index):
        def hook(module, inputs, output):
            seen[index] = output.dtype

        return hook

    for index, layer in enumerate(mlp.layers):
        layer.register_forward_hook(record(index))
    set_precision(mlp, "bf16")
    out = mlp(torch.randn(3, 6))
    assert [seen[i] for i in range(len(mlp.layers))] == [torch.bfloat16] * 4 + [torch.float32]
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", DEEP)
def test_bf16_predictions_match_float32_to_bf16_rounding_and_training_learns(name):
    schema = small_schema()
    batch = random_batch(schema, size=256)
    full, half = build(name, schema), build(name, schema)
    set_precision(half, "bf16")
    with torch.no_grad():
        full.eval(), half.eval()
        expected, got = torch.sigmoid(full(batch)), torch.sigmoid(half(batch))
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() < 0.02  # bf16 keeps 8 significant bits
    # planted signal: the label is field c0's id; the bf16 model learns it as the float32 one does
    half.train()
    batch = Batch(batch.x, (batch.x[:, 0] >= 1).float(), batch.x_dense)
    optimizer = torch.optim.Adam(half.parameters(), lr=0.02)
    first = half.losses(batch)[0].item()
    for _ in range(60):
        optimizer.zero_grad()
        half.losses(batch)[0].backward()
        optimizer.step()
    assert half.losses(batch)[0].item() < 0.5 * first
    assert all(
        p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in half.parameters() if p.grad is not None
    )


def test_a_run_with_precision_bf16_trains(tmp_path):
    from experiments.run import config as run_config
    from experiments.run.train import train

    cfg = run_config.compose_config(
        [
            "model=deepfm",
            "precision=bf16",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.source.rows=20000",
            "data.batch_size=512",
            "trainer.max_epochs=2",
            "optim.lr=0.01",
            "model.mlp.hidden_units=[16,16]",
            "threads=1",
            "trainer.enable_progress_bar=false",
        ]
    )
    metrics = train(cfg, tmp_path / "run")
    assert 0.55 < metrics["test/auc"] <= metrics["oracle/test/auc"] + 0.02
