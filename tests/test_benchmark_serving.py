"""The serving benchmark's code path, at a size of seconds (the committed table comes from a full run): every runtime
scores the same probabilities, and the table holds each model x runtime with its latencies and sizes."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch

from experiments.benchmark import serving
from experiments.benchmark.workload import build_model, criteo_schema, id_rows
from experiments.export.graph import ScoringGraph

pytest.importorskip("onnxruntime", reason="needs the [export] extra: pip install -e '.[export]'")


def test_the_three_runtimes_score_the_same_probabilities(tmp_path):
    schema = criteo_schema(5000)
    model, _ = build_model("deepfm", schema, 0)
    graph = ScoringGraph(model)
    ids = id_rows(schema, 64, 1)[0].astype(np.int64)
    scores = {name: score(ids) for name, (score, _) in serving.runners(graph, tmp_path).items()}
    reference = scores["eager"].numpy()
    assert np.array_equal(scores["torchscript"].numpy(), reference)
    assert np.abs(scores["onnxruntime"][0] - reference).max() <= 1e-5


def test_the_table_has_every_model_and_runtime_with_latencies_and_sizes(tmp_path):
    threads = torch.get_num_threads()
    arguments = ["--models", "lr,hfm", "--num-ids", "5000", "--calls", "5", "--warmup", "1", "--out", str(tmp_path)]
    rows = serving.main(arguments)
    assert torch.get_num_threads() == threads  # the benchmark's one thread is given back
    assert [(r["model"], r["runtime"]) for r in rows] == [(m, r) for m in ("lr", "hfm") for r in serving.RUNTIMES]
    with (tmp_path / "serving.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and list(table[0]) == serving.COLUMNS
    for row in table:
        latencies = [float(row[f"p{q}_ms_b{b}"]) for b in serving.LATENCY_BATCHES for q in (50, 99)]
        assert all(0 < v < 1e4 for v in latencies) and float(row["rows_per_s_b4096"]) > 0
        assert float(row["weights_mb"]) > 0 and (row["graph_mb"] == "") == (row["runtime"] == "eager")
    markdown = (tmp_path / "serving.md").read_text()
    assert "| hfm | onnxruntime |" in markdown and "--models lr,hfm" in markdown
    assert re.search(r"Load average \(1, 5, 15 min\): start [0-9.]+ [0-9.]+ [0-9.]+; end [0-9.]+", markdown)
