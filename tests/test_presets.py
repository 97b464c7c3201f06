"""The BARS presets: every experiment=bars_* x model composes with its published settings and
trains on tiny data; Frappe reads from both releases to the same ids; FuxiCTR's id convention."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from datamodules.encode import Vocabulary
from datamodules.schema import Schema
from experiments.reference.data import criteo_x4_csv, write_frappe_like
from experiments.run import config as run_config
from experiments.run.train import train
from tests.helpers import REPO
from tests.test_data_formats import write_criteo

FRAPPE_MODELS = sorted(p.stem for p in (REPO / "conf" / "preset" / "bars_frappe_x1").glob("*.yaml"))
CRITEO_MODELS = sorted(p.stem for p in (REPO / "conf" / "preset" / "bars_criteo_x4").glob("*.yaml"))


@pytest.fixture(scope="module")
def frappe_files(tmp_path_factory) -> dict:
    return write_frappe_like(tmp_path_factory.mktemp("frappe"), rows=900)


@pytest.fixture(scope="module")
def criteo_x4_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("criteo_x4")
    tsv = {
        split: write_criteo(folder / f"{split}.tsv", rows, seed=i)
        for i, (split, rows) in enumerate((("train", 400), ("val", 100), ("test", 100)))
    }
    return criteo_x4_csv(tsv, folder / "csv")


def compose(experiment: str, model: str, files: dict, cache: Path, *more: str):
    listed = ", ".join(f"{split}: {path}" for split, path in files.items())
    return run_config.compose_config(
        [
            f"experiment={experiment}",
            f"model={model}",
            f"data.source.files={{{listed}}}",
            f"data.cache_dir={cache}",
            "logger=none",
            "trainer.enable_progress_bar=false",
            *more,
        ]
    )


def test_the_presets_cover_the_published_models():
    assert set(FRAPPE_MODELS) == {
        *("lr", "fm", "ffm", "dnn", "ipnn", "lr_dnn", "wide_deep", "deepfm", "dcn", "xdeepfm"),
        *("crossnet_v2", "dcn_v2", "autoint", "autoint_plus"),
        *("fibinet", "dlrm", "masknet"),
        *("finalmlp", "finalnet"),
        *("aoanet", "deepim"),
        *("edcn", "destine"),
        *("nfm", "afm", "fwfm", "fmfm", "hofm"),
        *("fignn", "afn", "afn_plus", "sam"),
        *("crossnet", "cin", "hfm", "hfm_plus", "dssm"),
    }
    paper = {"lr", "fm", "fnn", "ipnn", "opnn", "pnn_star", "lr_dnn", "fm_dnn", "deepfm"}
    assert paper <= set(CRITEO_MODELS)
    for experiment, expected in (("bars_frappe_x1", set(FRAPPE_MODELS) - {"wide_deep"}), ("bars_criteo_x4", paper)):
        swept = OmegaConf.load(REPO / "conf" / "experiment" / f"{experiment}.yaml").hydra.sweeper.params.model
        assert set(str(swept).split(",")) == expected


@pytest.mark.parametrize("model", FRAPPE_MODELS)
def test_every_frappe_preset_trains_with_the_protocol(model, frappe_files, tmp_path):
    cfg = compose("bars_frappe_x1", model, frappe_files["libfm"], tmp_path / "cache", "trainer.max_epochs=2")
    assert (cfg.optim.name, cfg.optim.lr, cfg.data.batch_size) == ("adam", 1e-3, 4096)
    assert cfg.data.encoding.convention == "fuxictr" and cfg.init.embedding_std == 1e-4
    assert cfg.trainer.gradient_clip_val == 10 and cfg.objective == "val/auc"
    metrics = train(cfg, tmp_path / "run")
    assert metrics["model"] == ("lr_dnn" if model == "wide_deep" else model)  # BARS's WideDeep is our LR&DNN
    assert math.isfinite(metrics["test/auc"]) and metrics["epochs"] <= 2


PUBLISHED_CRITEO_X4_PROTOCOL = {
    "dcn_v2": ("val/auc", 10000),
    "masknet": ("val/auc", 10000),
    "finalmlp": ("val/auc", 10000),
    "finalnet": ("val/auc", 8192),
    "hofm": ("val/auc_minus_logloss", 3000),  # HOFM_criteo_x4_001_af6d1a42 took batches of 3000
}


# FiBiNET's published MLP reads 2 x 741 bilinear vectors through three 2000-wide layers: seconds even on tiny data
SLOW_CRITEO_PRESETS = {"fibinet"}


@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_CRITEO_PRESETS else m for m in CRITEO_MODELS]
)
def test_every_criteo_x4_preset_trains_with_the_protocol(model, criteo_x4_files, tmp_path):
    cfg = compose(
        "bars_criteo_x4",
        model,
        criteo_x4_files,
        tmp_path / "cache",
        "trainer.max_epochs=1",
        "data.encoding.min_count=2",
        "model.pretrain_epochs=1" if model == "fnn" else "seed=0",
    )
    # BARS's FuxiCTR 2.2.0 runs (DCN-V2, MaskNet, FinalMLP, FinalNet) monitored AUC alone; FinalNet's took
    # batches of 8192
    objective, batch_size = PUBLISHED_CRITEO_X4_PROTOCOL.get(model, ("val/auc_minus_logloss", 10000))
    assert cfg.objective == objective and cfg.data.batch_size == batch_size
    metrics = train(cfg, tmp_path / "run")
    assert math.isfinite(metrics["test/auc"]) and "val/auc_minus_logloss" in metrics


def test_published_settings_reach_the_models(frappe_files, tmp_path):
    cfg = compose("bars_frappe_x1", "ipnn", frappe_files["libfm"], tmp_path)
    assert (cfg.model.mlp.activation, cfg.model.mlp.dropout, cfg.model.mlp.batch_norm) == ("relu", 0.3, False)
    assert cfg.plateau.patience == 3
    assert cfg.optim.embedding_table_l2 == 0.05 and cfg.optim.net_l2 == 0
    cfg = compose("bars_frappe_x1", "xdeepfm", frappe_files["libfm"], tmp_path)
    assert list(cfg.model.cin_layer_sizes) == [64] and not cfg.model.cin_split_half and cfg.model.cin_bias
    cfg = compose("bars_frappe_x1", "wide_deep", frappe_files["libfm"], tmp_path)
    assert cfg.model._target_ == "models.LRDNN" and list(cfg.model.cross_fields) == [] and not cfg.model.linear_bias
    cfg = compose("bars_frappe_x1", "lr", frappe_files["libfm"], tmp_path)
    assert cfg.optim.embedding_table_l2 == cfg.optim.net_l2 == 1e-5  # FuxiCTR's LR: one regularizer for both


def test_frappe_reads_both_releases_to_the_same_ids(frappe_files, tmp_path):
    from hydra.utils import instantiate

    def arrays(kind):
        cfg = compose("bars_frappe_x1", "deepfm", frappe_files[kind], tmp_path / kind)
        dm = instantiate(cfg.data, seed=0, progress=False, _execution_whitelist_=run_config.TRUSTED_TARGETS)
        dm.setup("fit")
        return dm, {s: (np.asarray(dm.split_arrays(s).x), np.asarray(dm.split_arrays(s).y)) for s in ("train", "test")}

    libfm_dm, libfm = arrays("libfm")
    csv_dm, csv = arrays("csv")
    assert type(libfm_dm.source).__name__ == "LibFMSource" and type(csv_dm.source).__name__ == "TableSource"
    assert libfm_dm.schema == csv_dm.schema
    for split in libfm:
        np.testing.assert_array_equal(libfm[split][0], csv[split][0])
        np.testing.assert_array_equal(libfm[split][1], csv[split][1])


# -- FuxiCTR's id convention --------------------------------------------------------------------


def test_fuxictr_convention_numbers_integers_by_value_and_text_by_count_then_text():
    keys, counts = np.array([30, 10, 20, 40]), np.array([5, 1, 9, 1])
    integers = Vocabulary.fit(keys, counts, min_count=1, convention="fuxictr")
    assert integers.lookup(np.array([10, 20, 30, 40, 99])).tolist() == [1, 2, 3, 4, 5]  # 5: OOV, last
    assert integers.size == 6 and integers.oov_id == integers.missing_id == 5
    text = [b"b", b"ab", b"c", b"aa"]  # packed as values.string_keys packs them: bytes, little-endian
    packed = np.array([int.from_bytes(t.ljust(8, b"\0"), "little") for t in text], dtype=np.uint64).view(np.int64)
    vocab = Vocabulary.fit(packed, np.array([2, 2, 7, 2]), min_count=2, convention="fuxictr", text=True)
    # c first (most frequent), then the ties in text order: aa, ab, b
    assert vocab.lookup(packed).tolist() == [4, 3, 1, 2]
    rare = Vocabulary.fit(packed, np.array([2, 2, 7, 1]), min_count=2, convention="fuxictr", text=True)
    assert rare.lookup(packed).tolist() == [3, 2, 1, 4]  # aa is rare: OOV, the id after the three kept


def test_fuxictr_convention_fills_missing_numbers_with_zero_and_sends_missing_categories_to_oov(tmp_path):
    from datamodules import CTRDataModule, TableSource

    path = tmp_path / "t.csv"
    path.write_text("label,n,c\n1,5,x\n0,,x\n1,0,\n0,5,y\n1,0,y\n0,,x\n")
    files = {split: str(path) for split in ("train", "val", "test")}
    dm = CTRDataModule(
        TableSource(label="label", categorical=["c"], numeric=["n"], files=files),
        encoding={"convention": "fuxictr"},
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )
    dm.setup("fit")
    n, c = dm.schema.sparse_fields
    x = np.asarray(dm.split_arrays("train").x)
    local_n, local_c = x[:, 0] - n.offset, x[:, 1] - c.offset
    # n: buckets 0 (a zero, or missing) and log_square(5) = 2, numbered by value; no id for missing
    assert local_n.tolist() == [2, 1, 1, 2, 1, 1] and n.vocab_size == 4
    # c: x (3 rows) then y (2); the missing value is OOV, the last id
    assert local_c.tolist() == [1, 1, 3, 2, 2, 1] and c.vocab_size == 4


# -- BARS's networks, parameter for parameter ---------------------------------------------------
# Frappe_x1's fields with the vocabulary sizes FuxiCTR 2.x prints (padding and an OOV id per field);
# the 1.x versions most of BARS's Frappe runs used have one id fewer per field (5,389 in all).
FRAPPE_X1 = [
    *(("user", 956), ("item", 4084), ("daytime", 9), ("weekday", 9), ("isweekend", 4)),
    *(("homework", 5), ("cost", 4), ("weather", 11), ("country", 82), ("city", 235)),
]
# Criteo_x4_001's as FuxiCTR 2.2.0 prints them (criteo_x4_001_a5e05ce7)
CRITEO_X4 = [
    *zip([f"I{i}" for i in range(1, 14)], [44, 99, 122, 41, 220, 112, 80, 69, 92, 6, 27, 37, 72]),
    *zip(
        [f"C{i}" for i in range(1, 27)],
        [1446, 554, 157339, 117822, 306, 18, 11882, 630, 5, 39530, 5131, 156656, 3176, 28, 11043, 148913]
        + [12, 4560, 2003, 5, 154564, 18, 17, 53031, 82, 40955],
    ),
]


def one_fewer(fields: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(name, size - 1) for name, size in fields]


# (experiment, model, the run's fields, overrides, "Total number of parameters" in its BARS log)
PUBLISHED_NETWORKS = [
    ("bars_frappe_x1", "dcn_v2", one_fewer(FRAPPE_X1), [], 458_391),
    ("bars_frappe_x1", "crossnet_v2", one_fewer(FRAPPE_X1), [], 94_391),
    ("bars_frappe_x1", "autoint", one_fewer(FRAPPE_X1), [], 306_051),
    ("bars_frappe_x1", "autoint_plus", one_fewer(FRAPPE_X1), [], 622_180),
    ("bars_frappe_x1", "fibinet", one_fewer(FRAPPE_X1), [], 743_480),
    ("bars_frappe_x1", "dlrm", one_fewer(FRAPPE_X1), [], 417_891),
    ("bars_frappe_x1", "masknet", one_fewer(FRAPPE_X1), [], 571_691),
    ("bars_frappe_x1", "aoanet", one_fewer(FRAPPE_X1), [], 418_331),
    ("bars_frappe_x1", "deepim", one_fewer(FRAPPE_X1), [], 417_922),
    ("bars_frappe_x1", "edcn", one_fewer(FRAPPE_X1), [], 86_351),
    # less, per layer, the biases of W_q and W_k that whitening cancels and the unary score's that its
    # softmax cancels (see DisentangledSelfAttention)
    ("bars_frappe_x1", "destine", one_fewer(FRAPPE_X1), [], 623_346 - 4 * (2 * 128 + 1)),
    ("bars_frappe_x1", "fignn", one_fewer(FRAPPE_X1), [], 89_090),
    ("bars_frappe_x1", "afn", one_fewer(FRAPPE_X1), [], 4_066_711),
    ("bars_frappe_x1", "afn_plus", one_fewer(FRAPPE_X1), [], 4_482_205),
    ("bars_frappe_x1", "sam", one_fewer(FRAPPE_X1), [], 58_791),
    ("bars_frappe_x1", "crossnet", one_fewer(FRAPPE_X1), [], 55_191),
    ("bars_frappe_x1", "cin", one_fewer(FRAPPE_X1), [], 147_984),
    ("bars_frappe_x1", "hfm_plus", one_fewer(FRAPPE_X1), [], 563_281),
    ("bars_frappe_x1", "dssm", one_fewer(FRAPPE_X1), [], 739_490),
    ("bars_frappe_x1", "finalmlp", FRAPPE_X1, [], 253_392),  # FinalMLP_frappe_x1_004_e1ab402f
    ("bars_frappe_x1", "finalnet", FRAPPE_X1, [], 338_502),  # FINAL_frappe_x1_003_c3722b71 (2B)
    # FINAL_frappe_x1_006_75be0578: the 1B run, blocks [400, 400], no field gate
    ("bars_frappe_x1", "finalnet", FRAPPE_X1, ["model.block_type=1B", "model.field_gate=false"], 256_791),
    ("bars_criteo_x4", "masknet", CRITEO_X4, [], 20_358_077),
    ("bars_criteo_x4", "afn", one_fewer(CRITEO_X4), [], 36_833_607),
    ("bars_criteo_x4", "afn_plus", one_fewer(CRITEO_X4), [], 56_044_939),
    ("bars_criteo_x4", "crossnet", one_fewer(CRITEO_X4), [], 14_581_937),  # DCN_criteo_x4_001_964751c8
    ("bars_criteo_x4", "finalmlp", CRITEO_X4, [], 19_524_954),  # FinalMLP_criteo_x4_001_002_53a37ddd
    ("bars_criteo_x4", "finalnet", CRITEO_X4, [], 18_153_050),  # FinalNet_criteo_x4_001_041_449ccb21
    # FuxiCTR 1.0.2's log prints no feature map; its total implies one id less per field than 2.2.0's
    ("bars_criteo_x4", "fibinet", one_fewer(CRITEO_X4), [], 71_104_747),
    ("bars_frappe_x1", "nfm", one_fewer(FRAPPE_X1), [], 384_880),
    ("bars_frappe_x1", "afm", one_fewer(FRAPPE_X1), [], 60_826),
    ("bars_frappe_x1", "fwfm", one_fewer(FRAPPE_X1), [], 107_826),
    ("bars_frappe_x1", "fmfm", one_fewer(FRAPPE_X1), [], 59_730),
    ("bars_frappe_x1", "hofm", one_fewer(FRAPPE_X1), [], 113_170),
    ("bars_criteo_x4", "fwfm", one_fewer(CRITEO_X4), [], 15_482_778),
]


@pytest.mark.parametrize(
    "experiment, model, fields, overrides, logged",
    PUBLISHED_NETWORKS,
    ids=[" ".join([experiment, model, *overrides]) for experiment, model, _, overrides, _ in PUBLISHED_NETWORKS],
)
def test_presets_build_the_networks_bars_logged(experiment, model, fields, overrides, logged):
    """Each preset over a schema of BARS's vocabulary sizes has exactly the parameters BARS's log
    counts: the same layers, widths, biases and sharing."""
    cfg = run_config.compose_config([f"experiment={experiment}", f"model={model}", *overrides])
    schema = Schema.build([(name, "categorical", size) for name, size in fields])
    with torch.device("meta"):  # sizes only: Criteo's FiBiNET holds 71M parameters
        built = instantiate(
            cfg.model, schema=schema, optim=cfg.optim, init=cfg.init, _convert_="all",
            _execution_whitelist_=run_config.TRUSTED_TARGETS,
        )  # fmt: skip
    assert sum(p.numel() for p in built.parameters()) == logged
