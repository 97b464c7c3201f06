"""The peers benchmark (``python -m experiments.benchmark.peers``): its files, its ratios, and each
library's pipeline end to end on a tiny file (the peers' only where they are installed)."""

import importlib.util
import os

import pytest

from experiments.benchmark import peers


def run(library, model, threads, train_s, end_to_end_s, auc=0.7):
    return {
        "library": library,
        "model": model,
        "threads": threads,
        "preprocess_s": 1.0,
        "train_s": train_s,
        "samples_per_s": 1000 / train_s,
        "cpu_s": train_s,
        "end_to_end_s": end_to_end_s,
        "test_auc": auc,
    }


def test_ratios_are_the_peers_seconds_over_ours_in_the_same_cell_medians_over_repeats():
    report = peers.PeersReport("cmd", 1000)
    report.runs = [
        run("ctr-bench", "fm", 1, 10.0, 20.0),
        run("ctr-bench", "fm", 1, 12.0, 22.0),
        run("ctr-bench", "fm", 1, 11.0, 21.0),
        run("FuxiCTR", "fm", 1, 33.0, 42.0),
        run("ctr-bench", "fm", 2, 5.0, 10.0),
        run("FuxiCTR", "fm", 2, 10.0, 15.0),
    ]
    cells = {(r["threads"], r["library"]): r for r in report.medians()}
    assert cells[(1, "ctr-bench")]["train_s"] == 11.0 and cells[(1, "ctr-bench")]["repeats"] == 3
    assert cells[(1, "FuxiCTR")]["train_ratio"] == pytest.approx(3.0)
    assert cells[(1, "FuxiCTR")]["end_to_end_ratio"] == pytest.approx(2.0)
    assert cells[(2, "FuxiCTR")]["train_ratio"] == pytest.approx(2.0)
    assert cells[(2, "ctr-bench")]["train_ratio"] == 1.0
    text = report.markdown()
    assert "| 1 | fm | FuxiCTR | 1.0 | 33.0 |" in text and "| 3.00x | 2.00x |" in text


def test_the_file_is_cut_80_10_10_and_copied_to_csv(tmp_path):
    files = peers.write_files(1000, tmp_path)
    lines = {split: path.read_text().splitlines() for split, path in files["tsv"].items()}
    assert {split: len(v) for split, v in lines.items()} == {"train": 800, "val": 100, "test": 100}
    assert all(len(line.split("\t")) == 40 for v in lines.values() for line in v)
    header, *rows = files["csv"]["test"].read_text().splitlines()
    assert header.split(",")[:3] == ["Label", "I1", "I2"] and len(rows) == 100


LIBRARIES = ["ctr-bench"] + [
    lib
    for lib, module in (("DeepCTR-Torch", "deepctr_torch"), ("FuxiCTR", "fuxictr"))
    if importlib.util.find_spec(module)
]


@pytest.mark.slow
def test_each_installed_library_runs_end_to_end(tmp_path):
    report = peers.main(
        [
            "--rows",
            "3000",
            "--threads",
            "1",
            "--models",
            "fm",
            "--libraries",
            ",".join(LIBRARIES),
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert [r["library"] for r in report.runs] == LIBRARIES
    ours = os.environ.get("MKL_CBWR", "AUTO,STRICT")  # what importing models sets, unless already set
    for r in report.runs:
        assert r["train_rows"] == 2400 and 0 < r["test_auc"] < 1 and r["train_s"] > 0
        assert r["end_to_end_s"] >= r["preprocess_s"] + r["train_s"]
        # ctr-bench in its MKL mode (strict, unless the environment chose), the peers in MKL's default
        assert r["mkl_cbwr"] == (ours if r["library"] == "ctr-bench" else "AUTO")
    text = (tmp_path / "out" / "benchmark_peers.md").read_text()
    assert "| 1 | fm | ctr-bench |" in text and f"- MKL (its `MKL_CBWR`): ctr-bench {ours}" in text


def test_benchmark_md_embeds_the_peers_report_once_and_keeps_its_own_part(tmp_path):
    from experiments.benchmark import embed

    (tmp_path / "benchmark.md").write_text("# Training-throughput benchmark\n\nown part\n")
    report = peers.PeersReport("cmd", 1000)
    report.runs = [run("ctr-bench", "fm", 1, 10.0, 20.0), run("FuxiCTR", "fm", 1, 30.0, 40.0)]
    report.write(tmp_path)
    report.write(tmp_path)
    text = (tmp_path / "benchmark.md").read_text()
    assert text.startswith("# Training-throughput benchmark\n\nown part\n")
    assert text.count(embed.header("benchmark_peers.md")) == 1 and "\n## ctr-bench against its peers" in text
