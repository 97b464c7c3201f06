"""The three libraries' pipelines of the peers benchmark (``experiments.benchmark.peers``), each from the
split files to the test AUC, the same model settings for all: ctr-bench's datamodule and ``train``,
DeepCTR-Torch's ``DeepFM`` after pandas and scikit-learn's encoding, FuxiCTR's processor and
``BaseModel.fit``. Each runs in the child process ``peers`` starts for it; the libraries are imported
there, inside the runner, so that importing this module loads none of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# The DeepFM paper's settings, for every library: embedding 10, DNN 400-400-400, dropout 0.5; batch 4096,
# Adam at 1e-3; categorical values seen fewer than 10 times in training share one id.
EMBEDDING_DIM, HIDDEN, DROPOUT, BATCH_SIZE, LR, MIN_COUNT = 10, [400, 400, 400], 0.5, 4096, 1e-3, 10
NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]


def ours(model: str, files: dict, workdir: Path) -> dict:
    from experiments.reference.data import datamodule, preset_config
    from experiments.run.train import train

    overrides = [
        "optim=adam",
        "optim.embedding_table_l2=0",
        "optim.net_l2=0",
        f"data.batch_size={BATCH_SIZE}",
        "trainer.max_epochs=1",
        "precision=32",
        "save_predictions=false",
        "threads=null",
    ]
    overrides += {
        "lr": [],
        "fm": [f"model.embedding_dim={EMBEDDING_DIM}"],
        "deepfm": [
            f"model.embedding_dim={EMBEDDING_DIM}",
            f"model.mlp.hidden_units={HIDDEN}",
            f"model.mlp.dropout={DROPOUT}",
            "model.mlp.batch_norm=false",
        ],
    }[model]
    cfg = preset_config("bars_criteo_x4", model, files["csv"], workdir / "cache", overrides)
    started = time.perf_counter()
    datamodule(cfg)
    preprocess = time.perf_counter() - started
    metrics = train(cfg, workdir / "run")
    return {
        "preprocess_s": preprocess,
        "train_s": metrics["train_time_s"],
        "train_rows": metrics["train_rows"],
        "test_auc": metrics["test/auc"],
    }


def deepctr(model: str, files: dict, workdir: Path) -> dict:
    import pandas as pd
    import torch
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import DeepFM
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import LabelEncoder

    from datamodules.encode import log_square

    started = time.perf_counter()
    frames = {split: pd.read_csv(path, dtype={c: str for c in CATEGORICAL}) for split, path in files["csv"].items()}
    for column in NUMERIC:  # the same buckets as the others; missing is a bucket of its own
        for frame in frames.values():
            values = frame[column].to_numpy(dtype=float)
            frame[column] = np.where(np.isnan(values), -1, log_square(np.nan_to_num(values))).astype(np.int64)
    for column in [*NUMERIC, *CATEGORICAL]:
        counts = frames["train"][column].value_counts()
        kept = set(counts.index[counts >= MIN_COUNT])
        for frame in frames.values():
            frame[column] = frame[column].where(frame[column].isin(kept), "__rare__").astype(str)
        encoder = LabelEncoder().fit(pd.concat([frames["train"][column], pd.Series(["__rare__"])]))
        for frame in frames.values():
            frame[column] = encoder.transform(frame[column])
    features = [
        SparseFeat(c, vocabulary_size=int(frames["train"][c].max()) + 2, embedding_dim=EMBEDDING_DIM)
        for c in [*NUMERIC, *CATEGORICAL]
    ]
    inputs = {split: {c: frame[c].to_numpy() for c in [*NUMERIC, *CATEGORICAL]} for split, frame in frames.items()}
    labels = {split: frame["Label"].to_numpy(dtype=np.float32) for split, frame in frames.items()}
    preprocess = time.perf_counter() - started

    torch.manual_seed(0)
    network = DeepFM(
        features,
        features,
        use_fm=model != "lr",
        dnn_hidden_units=HIDDEN if model == "deepfm" else (),
        dnn_dropout=DROPOUT,
        l2_reg_linear=0,
        l2_reg_embedding=0,
        l2_reg_dnn=0,
        task="binary",
        device="cpu",
        seed=0,
    )
    network.compile(torch.optim.Adam(network.parameters(), lr=LR), "binary_crossentropy")
    started = time.perf_counter()
    network.fit(inputs["train"], labels["train"], batch_size=BATCH_SIZE, epochs=1, verbose=0)
    network.predict(inputs["val"], batch_size=BATCH_SIZE)
    train_s = time.perf_counter() - started
    auc = roc_auc_score(labels["test"], network.predict(inputs["test"], batch_size=BATCH_SIZE))
    return {"preprocess_s": preprocess, "train_s": train_s, "train_rows": len(labels["train"]), "test_auc": float(auc)}


def fuxictr(model: str, files: dict, workdir: Path) -> dict:
    import torch
    from sklearn.metrics import roc_auc_score
    from torch.utils.data import DataLoader

    from experiments.reference.check import fuxictr_encoding, processor_class
    from experiments.reference.data import CRITEO_X4_COLUMNS, CRITEO_X4_LABEL
    from experiments.reference.fuxictr_models import REFERENCE_MODELS, feature_map

    started = time.perf_counter()
    sizes, encoded = fuxictr_encoding(
        processor_class("CustomizedFeatureProcessor"), CRITEO_X4_COLUMNS, CRITEO_X4_LABEL, files["csv"], MIN_COUNT
    )
    preprocess = time.perf_counter() - started
    names = [*NUMERIC, *CATEGORICAL]
    arrays = {
        split: {
            **{n: torch.from_numpy(columns[n].astype(np.int64)) for n in names},
            "label": torch.from_numpy(columns["Label"].astype(np.float32)),
        }
        for split, columns in encoded.items()
    }

    def loader(split: str, shuffle: bool) -> DataLoader:
        data = arrays[split]
        return DataLoader(
            np.arange(len(data["label"])),
            batch_size=BATCH_SIZE,
            shuffle=shuffle,
            collate_fn=lambda rows: {k: v[torch.as_tensor(np.array(rows))] for k, v in data.items()},
        )

    torch.manual_seed(0)
    settings = {
        "embedding_regularizer": 0,
        "net_regularizer": 0,
        "monitor": "AUC",
        "early_stop_patience": 2,
        "learning_rate": LR,
    }
    if model != "lr":
        settings["embedding_dim"] = EMBEDDING_DIM
    if model == "deepfm":
        settings.update(hidden_units=HIDDEN, activation="relu", dropout=DROPOUT, batch_norm=False)
    fmap = feature_map([sizes[n] for n in names], EMBEDDING_DIM, names)
    reference = REFERENCE_MODELS[model](fmap, **settings, model_root=workdir / "fuxictr")
    started = time.perf_counter()
    reference.fit(loader("train", True), epochs=1, validation_data=loader("val", False), max_gradient_norm=10)
    train_s = time.perf_counter() - started
    test = loader("test", False)
    p = torch.cat([reference.forward(b)["y_pred"].detach().flatten() for b in test]).numpy()
    auc = roc_auc_score(arrays["test"]["label"].numpy(), p)
    return {
        "preprocess_s": preprocess,
        "train_s": train_s,
        "train_rows": len(arrays["train"]["label"]),
        "test_auc": float(auc),
    }


RUNNERS = {"ctr-bench": ours, "DeepCTR-Torch": deepctr, "FuxiCTR": fuxictr}
