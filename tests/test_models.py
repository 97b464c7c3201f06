"""Every model of the zoo: shapes, parameter counts, training steps, sharing, configs."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import models
from models.layers import FeatureEmbedding, IdTable
from tests.helpers import CONF, HIDDEN, K, build, composed, random_batch, small_schema

pytestmark = pytest.mark.usefixtures("single_thread")


def mlp_params(inputs: int, hidden=HIDDEN, output=1, batch_norm=False) -> int:
    sizes = [inputs, *hidden] + ([output] if output else [])
    linear = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    return linear + (2 * sum(hidden) if batch_norm else 0)


def mask_block(inputs: int, outputs: int, embedded: int = 4 * K, ratio: int = 2) -> int:
    """A MaskBlock's parameters: its mask (``embedded -> ratio * inputs -> inputs``, biased), its
    unbiased map and its layer norm."""
    return mlp_params(embedded, [ratio * inputs], output=inputs) + inputs * outputs + 2 * outputs


# small_schema: 12 ids and 1 dense field (each has a row in every table), F = 4 fields, P = 6 pairs
ROWS, FIELDS, PAIRS = 12 + 1, 4, 6
LINEAR, EMBEDDING, DEEP_IN = ROWS + 1, ROWS * K, FIELDS * K


def expected_params(name: str) -> int:
    """Parameter counts from each model's definition for ``small_schema``."""
    return {**nine_and_five_params(), **leader_params(), **holo_params()}[name]


def nine_and_five_params() -> dict[str, int]:
    """The DeepFM paper's nine models and FFM, DNN, Wide&Deep, DCN, xDeepFM."""
    linear, embedding, deep_in, pairs = LINEAR, EMBEDDING, DEEP_IN, PAIRS
    return {
        "lr": linear,
        "fm": linear + embedding,
        "ffm": linear + ROWS * FIELDS * K,
        "fnn": ROWS * (K + 1) + mlp_params(FIELDS * (K + 1)),
        "ipnn": embedding + mlp_params(deep_in + pairs),
        "opnn": embedding + mlp_params(deep_in + K * K),
        "pnn_star": embedding + mlp_params(deep_in + pairs + K * K),
        "lr_dnn": linear + embedding + mlp_params(deep_in),
        "fm_dnn": linear + 2 * embedding + mlp_params(deep_in),  # two embeddings
        # cross pairs (c0,c1), (c0,n0), (c1,n0): min(15, 10) + min(12, 10) + min(20, 10) rows
        "wide_deep": linear + 30 + embedding + mlp_params(deep_in),
        "dnn": embedding + mlp_params(deep_in, batch_norm=True),
        "deepfm": linear + embedding + mlp_params(deep_in),  # one embedding, shared
        "dcn": embedding + 2 * 2 * deep_in + mlp_params(deep_in, output=None) + deep_in + HIDDEN[-1] + 1,
        # CIN [4, 2] with split_half: 4 x (4*4) filters, then 2 x (2*4); output 2 + 2 maps
        "xdeepfm": linear + embedding + 4 * 16 + 2 * 8 + 4 + mlp_params(deep_in),
    }


def leader_params() -> dict[str, int]:
    """The models that lead BARS's boards."""
    embedding, deep_in, fields, pairs = EMBEDDING, DEEP_IN, FIELDS, PAIRS
    mlp_head = mlp_params(deep_in, output=None) + HIDDEN[-1]  # an MLP whose last hidden layer feeds a shared head
    return {
        # two full-rank cross layers (a D x D matrix and a bias each), the head over [x_L; MLP]
        "crossnet_v2": embedding + 2 * (deep_in + 1) * deep_in + deep_in + 1,
        "dcn_v2": embedding + 2 * (deep_in + 1) * deep_in + mlp_head + deep_in + 1,
        # two attention layers 6 wide: W_q, W_k, W_v (K x 6, then 6 x 6) and W_res only where K != 6
        "autoint": embedding + 4 * K * 6 + 3 * 6 * 6 + fields * 6 + 1,
        "autoint_plus": embedding + 4 * K * 6 + 3 * 6 * 6 + fields * 6 + 1 + mlp_params(deep_in),
        # first order without w0; SENET 4 -> 4 -> 4 unbiased; one K x K map per pair for each of the
        # two interactions; the MLP over both interactions' P vectors of K
        "fibinet": ROWS + embedding + 2 * 16 + 2 * pairs * K * K + mlp_params(2 * pairs * K),
        # sparse fields' rows only (the dense value goes through the bottom MLP, 1 -> HIDDEN -> K);
        # dot products of the 3 embeddings and the bottom output: 6 pairs, beside the bottom output
        "dlrm": 12 * K + mlp_params(1, output=K) + mlp_params(K + 6),
        # per-field layer norm; serial blocks 16 -> 6 -> 5; the MLP over the last block's 5
        "masknet": embedding + 2 * fields * K + mask_block(16, 6) + mask_block(6, 5) + mlp_params(5),
        # two streams; gates over their own tables of c0 (3 rows) and c1 (5); w1, w2 and 2 heads of 3 x 3
        "finalmlp": embedding + 2 * mlp_head + (3 + 5) * K + 2 * mlp_params(K, output=deep_in) + 2 + 2 * 3 * 3,
        # field gate F x F + F; a concat block has an MLP's parameters; block 1 reads [e; e * g]
        "finalnet": embedding + fields * fields + fields
        + mlp_params(2 * deep_in, batch_norm=True) + mlp_params(deep_in, batch_norm=True),
        # three GIN layers of 4 subspaces: W (4 x K x K), h (4 x K), alpha (F or 4 inputs x F x 4 outputs);
        # the head over the MLP's last hidden layer and the 4 x K subspaces
        "aoanet": embedding + mlp_head + 3 * (4 * K * K + 4 * K + 4 * fields * 4) + 4 * K + 1,
        # orders 1 and 2 of K each into one biased unit; no first-order weights
        "deepim": embedding + 2 * K + 1 + mlp_params(deep_in),
        # two cross layers (w, b), two deep layers 16 -> 16, two gates of F per regulation, the
        # head over [x_L; h_L; f_L]
        "edcn": embedding + 2 * 2 * deep_in + 2 * mlp_params(deep_in, [deep_in], output=None) + 2 * 2 * fields
        + 3 * deep_in + 1,
        # two disentangled layers 6 wide: W_q, W_k, then biased W_v and W_res (K x 6, then 6 x 6), the
        # unbiased unary map to 2 heads; the head over F x 6; the MLP with batch norm (DESTINE's config)
        "destine": embedding + (4 * K * 6 + 2 * 6) + K * 2 + (4 * 6 * 6 + 2 * 6) + 6 * 2 + fields * 6 + 1
        + mlp_params(deep_in, batch_norm=True),
        # the FM family: NFM's MLP reads the K pooled values, its first order without w0; AFM's attention
        # K -> 6 -> 1 (biased, then not) and projection K -> 1; FwFM's P pair weights and w0, FiLV's F x K;
        # FmFM's K x K map per pair; HOFM's table per order 2 and 3
        "nfm": ROWS + embedding + mlp_params(K),
        "afm": LINEAR + embedding + (K * 6 + 6) + 6 + K,
        "fwfm": embedding + pairs + 1 + fields * K,
        "fmfm": LINEAR + embedding + pairs * K * K,
        "hofm": LINEAR + 2 * embedding,
        # the edge scorer's 2K; three steps of two F x K x K maps and a bias; the GRU cell (3 gates of
        # K x K twice, biased twice); the readout's K and F K x F
        "fignn": embedding + 2 * K + 3 * (2 * fields * K * K + K) + 3 * (2 * K * K + 2 * K) + K + fields * K * fields,
        # 6 logarithmic neurons: per-field and per-neuron batch norms around the F x 6 powers; the MLP
        # over 6 x K; AFN+ adds a second embedding, its DNN and the 2 -> 1 head
        "afn": embedding + 2 * fields + fields * 6 + 2 * 6 + mlp_params(6 * K),
        "afn_plus": 2 * embedding + 2 * fields + fields * 6 + 2 * 6 + mlp_params(6 * K) + mlp_params(deep_in) + 3,
        # SAM2E (the config's): one layer of F x F pairs of K, no parameters, into the biased unit
        "sam": embedding + fields * fields * K + 1,
    }  # fmt: skip


def holo_params() -> dict[str, int]:
    """BARS's CrossNet, CIN, HFM, HFM+ and DSSM."""
    linear, embedding, deep_in = LINEAR, EMBEDDING, DEEP_IN
    return {
        "crossnet": embedding + 2 * 2 * deep_in + deep_in + 1,  # two cross layers (w, b), the head over x_L
        "cin": linear + embedding + 4 * 16 + 2 * 8 + 4,  # xdeepfm's CIN without its MLP
        "hfm": linear + embedding + K,  # the projection h of the pairs' summed vectors
        "hfm_plus": linear + embedding + mlp_params(PAIRS * K),  # the MLP over the pairs' vectors
        # item tower c1, user tower c0, n0, d0; both towers end in 6 units
        "dssm": embedding + mlp_params(3 * K, output=6) + mlp_params(K, output=6),
    }


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_forward_gives_finite_logits(name):
    schema = small_schema()
    model = build(name, schema)
    logits = model(random_batch(schema))
    assert logits.shape == (32,) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_parameter_count_matches_definition(name):
    model = build(name, small_schema())
    assert sum(p.numel() for p in model.parameters()) == expected_params(name)


def id_table_parameters(model) -> dict[int, IdTable]:
    return {id(table.table.weight): table for table in model.id_tables()}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_one_step_moves_every_parameter_in_use(name):
    """An Adam step changes every network parameter and exactly the table rows the batch read."""
    schema = small_schema()
    model = build(name, schema)
    # all-positive labels: with mixed ones a zero-initialised weight's gradient can cancel exactly
    batch = random_batch(schema, size=16)._replace(y=torch.ones(16))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tables = id_table_parameters(model)
    optimizer = model.build_optimizer()
    model.losses(batch)[0].backward()
    optimizer.step()
    for param_name, param in model.named_parameters():
        changed = param.detach() != before[param_name]
        if id(param) in tables:
            read = torch.zeros(param.shape[0], dtype=torch.bool)
            read[tables[id(param)].ids(batch).flatten()] = True
            row_changed = changed.any(dim=1)
            assert row_changed[read].all(), f"{param_name}: a row the batch read did not move"
            assert not row_changed[~read].any(), f"{param_name}: a row the batch never read moved"
        else:
            assert changed.any(), f"{param_name} did not move"


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_a_checkpoint_rebuilds_the_same_model(name, tmp_path):
    """What Lightning saves (weights, hyperparameters, the schema) is a whole model: a run's best
    epoch is restored from it, FNN reads its FM from one."""
    import pytorch_lightning as pl

    schema = small_schema()
    model = build(name, schema)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = models.CTRModule.from_checkpoint(tmp_path / "model.ckpt")
    assert type(loaded) is type(model) and loaded.hparams == model.hparams
    model.eval(), loaded.eval()
    batch = random_batch(schema)
    assert torch.equal(loaded(batch), model(batch))


def embedding_tables(model, dim=K) -> list[FeatureEmbedding]:
    return [m for m in model.modules() if isinstance(m, FeatureEmbedding) and m.dim == dim]


def table_grad(part, embedding, batch) -> torch.Tensor:
    """Gradient that ``part(embedding(batch))`` alone sends into the embedding's rows."""
    embedding.zero_grad()
    part(embedding(batch)).sum().backward()
    return embedding.table.weight.grad


def test_deepfm_fm_and_dnn_share_one_embedding_and_both_train_it():
    schema = small_schema()
    model = build("deepfm", schema)
    batch = random_batch(schema)
    assert embedding_tables(model) == [model.embedding]
    read = batch.x.unique()
    fm_grad = table_grad(model.fm, model.embedding, batch)[read].clone()
    dnn_grad = table_grad(lambda e: model.dnn(e.flatten(1)), model.embedding, batch)[read].clone()
    assert (fm_grad.abs().sum(1) > 0).all() and (dnn_grad.abs().sum(1) > 0).all()
    # the full model's gradient into the shared table is the sum of both parts'
    model.zero_grad()
    model(batch).sum().backward()
    torch.testing.assert_close(model.embedding.table.weight.grad[read], fm_grad + dnn_grad)


def test_fm_dnn_gives_fm_and_dnn_separate_embeddings():
    schema = small_schema()
    model = build("fm_dnn", schema)
    batch = random_batch(schema)
    fm_table, dnn_table = model.fm_embedding, model.dnn_embedding
    assert {id(t) for t in embedding_tables(model)} == {id(fm_table), id(dnn_table)}
    assert fm_table.table.weight.data_ptr() != dnn_table.table.weight.data_ptr()
    assert not torch.equal(fm_table.table.weight, dnn_table.table.weight)
    model.zero_grad()
    model.fm(fm_table(batch)).sum().backward()
    assert fm_table.table.weight.grad.abs().sum() > 0 and dnn_table.table.weight.grad is None
    # changing the DNN's embedding leaves the FM part's output alone
    fm_out = model.fm(fm_table(batch))
    with torch.no_grad():
        dnn_table.table.weight.add_(1.0)
    torch.testing.assert_close(model.fm(fm_table(batch)), fm_out)


def test_lr_dnn_wide_part_does_not_touch_the_dnn_embedding():
    schema = small_schema()
    model = build("lr_dnn", schema)
    batch = random_batch(schema)
    assert embedding_tables(model) == [model.dnn_embedding]
    model.linear(batch).sum().backward()
    assert model.dnn_embedding.table.weight.grad is None
    assert model.linear.weights.table.weight.grad.abs().sum() > 0


def trained_fm(schema, steps=5):
    fm = build("fm", schema, lr=0.05)
    optimizer = fm.build_optimizer()
    for step in range(steps):
        optimizer.zero_grad()
        fm.losses(random_batch(schema, seed=step))[0].backward()
        optimizer.step()
    return fm


def test_fnn_holds_exactly_the_fm_embeddings_after_pretraining():
    schema = small_schema()
    fm = trained_fm(schema)
    fnn = build("fnn", schema)
    assert not torch.equal(fnn.embedding.table.weight, fm.embedding.table.weight)
    fnn.load_fm(fm)
    assert torch.equal(fnn.embedding.table.weight, fm.embedding.table.weight)
    assert torch.equal(fnn.embedding.dense, fm.embedding.dense)
    assert torch.equal(fnn.first_order.table.weight, fm.linear.weights.table.weight)
    assert torch.equal(fnn.first_order.dense, fm.linear.weights.dense)
    assert bool(fnn.fm_initialised)
    # copies, not aliases: training the FNN leaves the FM alone
    assert fnn.embedding.table.weight.data_ptr() != fm.embedding.table.weight.data_ptr()


def test_fnn_refuses_an_fm_of_another_size():
    schema = small_schema()
    with pytest.raises(ValueError, match="embedding size"):
        build("fnn", schema, embedding_dim=3).load_fm(trained_fm(schema, steps=0))


def test_weight_l2_covers_network_weights_only():
    model = build("dnn", small_schema(), weight_l2=0.5)
    names = {n for n, p in model.named_parameters() if any(p is w for w in model.network_weights())}
    assert names == {"dnn.layers.0.weight", "dnn.layers.3.weight", "dnn.layers.6.weight"}
    batch = random_batch(small_schema())
    expected = 0.5 * sum(dict(model.named_parameters())[n].pow(2).sum() for n in names)
    torch.testing.assert_close(model.penalty(batch), expected)


def test_embedding_l2_penalises_the_rows_the_batch_reads():
    schema = small_schema()
    model = build("deepfm", schema, embedding_l2=0.1)
    batch = random_batch(schema, size=8)
    tables = [model.linear.weights, model.embedding]
    expected = 0.1 * sum(t.table.weight[batch.x].pow(2).sum() / 8 + t.dense.pow(2).sum() for t in tables)
    torch.testing.assert_close(model.penalty(batch), expected)
    # rows no example read get no gradient from it
    model.penalty(batch).backward()
    unread = torch.ones(schema.num_ids, dtype=torch.bool)
    unread[batch.x.flatten()] = False
    assert unread.any() and (model.embedding.table.weight.grad[unread] == 0).all()


# -- configs -------------------------------------------------------------------------------
def model_yaml_names():
    return sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_every_model_has_a_config_and_every_config_a_model():
    from models.registry import ENTRIES

    assert model_yaml_names() == sorted(models.MODELS) == sorted(ENTRIES)
    for name, cls in models.MODELS.items():
        assert OmegaConf.load(CONF / "model" / f"{name}.yaml")._target_ == f"models.{cls.__name__}"


@pytest.mark.parametrize("name", model_yaml_names())
def test_config_instantiates_at_paper_widths_and_runs(name):
    """The config gives every argument the class needs (the classes have no defaults of their own
    for settings: conf/ is their one place) and no argument it does not take."""
    schema = small_schema()
    model_cfg, optim_cfg = composed(name)
    model = instantiate(model_cfg, schema=schema, optim=optim_cfg, _execution_whitelist_="models.*")
    assert isinstance(model, models.MODELS[name])
    model.eval()
    logits = model(random_batch(schema))
    assert logits.shape == (32,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", model_yaml_names())
def test_constructors_take_few_arguments_and_no_setting_defaults(name):
    """At most 8 arguments beside ``self`` and ``schema`` (``optim`` and ``init`` included); a
    default only where its absence means "off"."""
    import inspect

    switches = {"init", "fm_checkpoint", "outer_form", "cross_fields", "cross_buckets", "wide"}
    arguments = {}
    for cls in models.MODELS[name].__mro__:
        if cls is models.CTRModule.__mro__[1]:
            break
        for parameter in list(inspect.signature(cls.__init__).parameters.values())[2:]:
            if parameter.kind is parameter.KEYWORD_ONLY:
                arguments.setdefault(parameter.name, parameter)
    assert len(arguments) <= 8, sorted(arguments)
    assert {n for n, p in arguments.items() if p.default is not p.empty} <= switches


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "adagrad", "sgd", "ftrl"])
def test_each_optim_config_is_one_spec_that_builds_its_optimizer(optimizer):
    from models.optim import OPTIMIZERS, OptimSpec

    _, cfg = composed("lr", optimizer)
    spec = OptimSpec.of(cfg)
    assert spec.name == optimizer and {"embedding_l2", "weight_l2", "embedding_table_l2", "net_l2"} <= set(cfg)
    model = models.LR(small_schema(), optim=cfg)
    built = model.configure_optimizers()
    assert type(built) is OPTIMIZERS[optimizer]
    group = built.param_groups[0]
    assert group["lr"] == cfg["lr"]
    for key, value in cfg["options"].items():
        assert group[key] == (tuple(value) if isinstance(value, list) else value), key
    # the checkpoint keeps the spec as plain values, and they give the same spec back
    assert OptimSpec.of(model.hparams.optim) == spec
