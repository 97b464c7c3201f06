"""Data parallelism: the samplers shard by rank, the model scores whole splits, and a 2-process
DDP run (gloo, CPU) matches a one-process run at the same global batch size."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from datamodules import CTRDataModule, Schema, SyntheticSource
from datamodules.sampling import ContiguousBatches, ShuffledBatches, eval_block_rows
from experiments.run import config as run_config
from experiments.run.ddp import wait_for_started_ranks
from experiments.run.history import EpochHistory
from experiments.run.train import train
from tests.helpers import REPO, build


def epoch_batches(sampler, epoch: int) -> list[np.ndarray]:
    sampler.set_epoch(epoch)
    return [np.asarray(rows) for rows in sampler]


def rank_batches(num_rows: int, batch_size: int, world_size: int, epoch: int, **kwargs) -> list[list[np.ndarray]]:
    """Per rank, one epoch of its training batches."""
    return [
        epoch_batches(ShuffledBatches(num_rows, batch_size, seed=7, rank=rank, world_size=world_size, **kwargs), epoch)
        for rank in range(world_size)
    ]


# --------------------------------------------------------------------------- training shards


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("epoch", [0, 1])
def test_rank_batches_union_to_the_single_process_batches(world_size, epoch):
    # 1000 = 7 x 128 + 104 (2 ranks: 52 + 52 in the last batch) = 5 x 192 + 40 (3 ranks: 3 x 13, one left out)
    batch_size, num_rows = 64, 1000
    single = epoch_batches(ShuffledBatches(num_rows, batch_size * world_size, seed=7), epoch)
    ranks = rank_batches(num_rows, batch_size, world_size, epoch)
    assert len({len(batches) for batches in ranks}) == 1 and len(ranks[0]) == len(single) == {2: 8, 3: 6}[world_size]
    for step, expected in enumerate(single):
        parts = [batches[step] for batches in ranks]
        assert len({len(p) for p in parts}) == 1  # equal parts: DDP's mean of means is the batch mean
        union = np.concatenate(parts)
        assert len(np.unique(union)) == len(union)  # disjoint
        if step < len(single) - 1 or len(expected) % world_size == 0:
            np.testing.assert_array_equal(np.sort(union), expected)
        else:  # the last batch's leftover rows (fewer than the ranks) are left out
            assert np.isin(union, expected).all() and len(expected) - len(union) == len(expected) % world_size
    seen = np.concatenate([np.concatenate(batches) for batches in ranks])
    assert len(np.unique(seen)) == len(seen) == num_rows - (num_rows % (batch_size * world_size)) % world_size


def test_rank_batches_are_sorted_and_reshuffled_each_epoch():
    first, second = (rank_batches(1000, 64, 2, epoch) for epoch in (0, 1))
    assert all((np.diff(rows) > 0).all() for batches in first for rows in batches)
    assert not np.array_equal(np.concatenate(first[0]), np.concatenate(second[0]))


def test_partial_global_batch_with_fewer_rows_than_ranks_or_drop_last_is_dropped():
    # 129 rows, global batch 128: one row left over, which two ranks cannot share equally
    assert [len(b) for b in rank_batches(129, 64, 2, 0)[1]] == [64]
    assert [len(b) for b in rank_batches(1000, 64, 2, 0, drop_last=True)[0]] == [64] * 7
    with pytest.raises(ValueError, match="rank 2"):
        ShuffledBatches(100, 8, seed=0, rank=2, world_size=2)


# --------------------------------------------------------------------------- evaluation shards


def rank_rows(num_rows: int, batch_size: int, world_size: int) -> list[np.ndarray]:
    """Per rank, the split rows its evaluation batches read, in order (padding included)."""
    index = np.arange(num_rows)
    return [
        np.concatenate(
            [index[rows] for rows in ContiguousBatches(num_rows, batch_size, rank, world_size)]
            or [np.empty(0, dtype=np.int64)]
        )
        for rank in range(world_size)
    ]


def gathered_by_model(per_rank: list[np.ndarray], num_rows: int) -> np.ndarray:
    """What ``CTRModule`` scores after ``all_gather`` of these per-rank values: a model whose
    trainer reports ``len(per_rank)`` ranks and a datamodule with a ``num_rows``-row split."""
    model = build("lr", Schema.build([("a", "categorical", 3)], []))
    model._trainer = SimpleNamespace(
        world_size=len(per_rank), datamodule=SimpleNamespace(num_rows=lambda split: num_rows)
    )
    stacked = torch.from_numpy(np.stack(per_rank))
    model.all_gather = lambda values: stacked  # rank-major, as Lightning's all_gather returns it
    return model._gather_split("val", torch.from_numpy(per_rank[0])).numpy()


@pytest.mark.parametrize("num_rows", [1, 5, 400, 401, 403])
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_eval_shards_cover_the_split_once_after_padding_is_dropped(num_rows, world_size):
    per_rank = rank_rows(num_rows, 64, world_size)
    lengths = {len(rows) for rows in per_rank}
    assert len(lengths) == 1  # equal shards, as all_gather needs
    for rows, real in zip(per_rank, eval_block_rows(num_rows, world_size)):
        assert (rows[real:] == num_rows - 1).all()  # padding repeats the last row
    np.testing.assert_array_equal(gathered_by_model(per_rank, num_rows), np.arange(num_rows))


def test_truncated_eval_shards_keep_only_real_rows():
    # limit_val_batches / the sanity check: each rank scores only its first batches
    per_rank = [rows[:100] for rows in rank_rows(403, 50, 4)]  # blocks of 101 rows; the last has 100 real
    expected = np.concatenate([np.arange(r * 101, r * 101 + 100) for r in range(4)])
    np.testing.assert_array_equal(gathered_by_model(per_rank, 403), expected)
    per_rank = rank_rows(403, 50, 4)
    assert len(per_rank[3]) == 101 and per_rank[3][-1] == per_rank[3][-2] == 402


def test_one_process_eval_batches_are_unchanged():
    assert [(s.start, s.stop) for s in ContiguousBatches(130, 64)] == [(0, 64), (64, 128), (128, 130)]


def test_datamodule_takes_rank_and_world_size_from_its_trainer(tmp_path):
    dm = CTRDataModule(SyntheticSource(rows=2000, seed=1), cache_dir=str(tmp_path), batch_size=100)
    assert dm.replica() == (0, 1)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)
    train, val = dm.train_dataloader().sampler, dm.val_dataloader().sampler
    assert (train.rank, train.world_size, val.rank, val.world_size) == (1, 2, 1, 2)
    assert [b.size for b in dm.val_dataloader()] == [100]  # 200 of the 1600/200/200 split's val rows
    np.testing.assert_array_equal(torch.cat([b.y for b in dm.val_dataloader()]).numpy(), dm.labels("val")[100:])


def test_training_throughput_counts_the_samples_of_every_rank(tmp_path):
    history = EpochHistory(tmp_path / "history.csv")
    batch = SimpleNamespace(y=torch.zeros(256))
    for world_size in (1, 2):  # a rank's part of a global batch, once alone and once of two ranks
        history.on_train_batch_end(SimpleNamespace(world_size=world_size), None, None, batch, 0)
    assert history.train_samples == 256 + 512


def launched(*programs: str) -> SimpleNamespace:
    """A trainer whose DDP launcher started ``programs`` (Python code) as its other ranks."""
    procs = [subprocess.Popen([sys.executable, "-c", program]) for program in programs]
    return SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=procs)))


@pytest.mark.integration
def test_a_run_ends_after_the_ranks_it_started_and_fails_with_a_failed_one():
    wait_for_started_ranks(launched("pass", "pass"))
    wait_for_started_ranks(SimpleNamespace(strategy=SimpleNamespace(launcher=None)))  # no DDP
    with pytest.raises(RuntimeError, match="exited with code -6"):  # as a rank aborting in C++ destructors
        wait_for_started_ranks(launched("pass", "import os; os.abort()"))


@pytest.mark.integration
def test_a_rank_still_running_after_its_run_is_killed(caplog):
    trainer = launched("import time; time.sleep(60)")
    wait_for_started_ranks(trainer, timeout_s=0.5)
    assert trainer.strategy.launcher.procs[0].returncode == -signal.SIGKILL and "killed" in caplog.text


# --------------------------------------------------------------------------- DDP against one process

# 4010 rows: 3208 train rows (6 global batches of 512 and 136 = 68 + 68 rows), 401 val and 401 test
# rows (rank 1's block is padded by one row). FM has no dropout; data.batch_size is per process;
# lazy_adam's sparse embedding gradients go through gloo's all-reduce too.
COMMON = [
    "model=fm",
    "optim=lazy_adam",
    "optim.lr=0.01",
    "data.source.rows=4010",
    "trainer.max_epochs=2",
    "threads=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def run_py(cwd: Path, cache: Path, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """``python run.py <COMMON> <args>`` in ``cwd``, one torch thread per process; it must succeed.
    A run still going after ``timeout_s`` (a hung DDP world takes 30 minutes to time out) fails the
    test with the Python stacks of all its processes, the DDP ranks included."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    command = [sys.executable, str(REPO / "run.py"), *COMMON, f"data.cache_dir={cache}", *args]
    # a session of its own: the ranks Lightning starts hold our pipes too and must go with the run
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stdout, stderr = stop_with_stacks(process)
            pytest.fail(
                f"run.py {' '.join(args)} still running after {timeout_s:.0f} s; its output and every "
                f"process's stacks (faulthandler):\n{stdout[-2000:]}\n{stderr[-12000:]}"
            )
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def stop_with_stacks(process: subprocess.Popen) -> tuple[str, str]:
    """Stops a run's whole process group: SIGABRT first, on which faulthandler prints each Python
    process's thread stacks to the shared stderr, then SIGKILL for whatever is left."""
    with contextlib.suppress(ProcessLookupError):  # the group may be gone by now
        os.killpg(process.pid, signal.SIGABRT)
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()


def run_metrics(out_dir: Path, cache: Path, *overrides: str) -> dict:
    run_py(out_dir.parent, cache, f"hydra.run.dir={out_dir}", *overrides)
    return json.loads((out_dir / "metrics.json").read_text())


def train_here(out_dir: Path, cache: Path, *overrides: str) -> dict:
    """``train`` of COMMON and ``overrides`` in this process, which starts no Python of its own
    (a run of run.py spends most of its seconds on imports). Keeps this process's torch threads."""
    cfg = run_config.compose_config([*COMMON, f"data.cache_dir={cache}", *overrides])
    threads = torch.get_num_threads()
    try:
        return train(cfg, out_dir)
    finally:
        torch.set_num_threads(threads)


def assert_same_training(ddp: dict, reference: dict) -> None:
    """A DDP run's metrics equal those of ``reference``, a run of the same steps, up to the order
    of float32 sums."""
    assert ddp["epochs"] == reference["epochs"] == 2 and ddp["best_epoch"] == reference["best_epoch"]
    # Same rows, same steps, same gradients: only the order of float32 sums differs (gloo's
    # all-reduce of two half-batch means against one mean over 512 rows), about 1e-7 relative per
    # step. LogLoss moves smoothly with that; AUC only if two scores swap order, and 1e-4 allows
    # about two swapped pairs of 80 x 320 (a missed or repeated row would move both far more).
    for split in ("val", "test"):
        assert ddp[f"{split}/logloss"] == pytest.approx(reference[f"{split}/logloss"], rel=1e-5, abs=0)
        assert ddp[f"{split}/auc"] == pytest.approx(reference[f"{split}/auc"], rel=0, abs=1e-4)
    assert reference["val/auc"] > 0.55  # the model learned something, so equal metrics mean equal models


@pytest.mark.integration
def test_two_process_ddp_matches_one_process_at_the_same_global_batch(tmp_path):
    cache = tmp_path / "cache"
    single = run_metrics(tmp_path / "single", cache, "data.batch_size=512")
    ddp = run_metrics(tmp_path / "ddp", cache, "trainer=ddp", "trainer.devices=2", "data.batch_size=256")
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").exists()  # the second rank ran in this folder
    assert_same_training(ddp, single)


# --------------------------------------------------------------------------- DDP in multiruns and sweeps

DDP = ["trainer=ddp", "trainer.devices=2", "data.batch_size=256"]


@pytest.mark.integration
def test_ddp_multirun_jobs_train_as_single_ddp_runs_in_their_own_folders(tmp_path):
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    # seeds whose runs learn on this little data (seed 1 ends at a validation AUC of 0.53)
    result = run_py(tmp_path, cache, "-m", "seed=0,3", *DDP, f"hydra.sweep.dir={sweep}")
    # The second ranks joined the jobs: started as the whole multirun, one would launch it again.
    assert (result.stdout + result.stderr).count("Launching 2 jobs") == 1
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert [job.name for job in jobs] == ["0", "1"]
    assert all((job / "train_ddp_process_1.log").exists() for job in jobs)
    assert not (tmp_path / "outputs").exists()  # where a second rank goes with a single run's run.dir
    # Each job trains as a single DDP run does (test above): like one process at the global batch
    # size; job 1 does so in the process job 0 trained in, in a DDP world of its own.
    for seed, job in zip((0, 3), jobs):
        one_process = train_here(tmp_path / f"one_process_{seed}", cache, "data.batch_size=512", f"seed={seed}")
        assert_same_training(json.loads((job / "metrics.json").read_text()), one_process)


@pytest.mark.integration
def test_ddp_optuna_sweep_records_one_trial_per_job(tmp_path):
    storage, sweep = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "sweep"
    # With a storage the sweeper's pruning is on: after each epoch rank 0 broadcasts its pruning
    # decision, so a second rank without the trial's environment (no pruning callback) hangs the run.
    run_py(
        tmp_path,
        tmp_path / "cache",
        "-m",
        "hparams_search=shallow",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=ddp",
        *DDP,
        f"hydra.sweep.dir={sweep}",
    )
    trials = optuna.load_study(study_name="ddp", storage=storage).trials
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE), (1, TrialState.COMPLETE)]
    # the sweeper asks one trial at a time: job k ran trial k and returned its objective
    objectives = [json.loads((sweep / str(t.number) / "metrics.json").read_text())["val/auc"] for t in trials]
    assert [t.value for t in trials] == pytest.approx(objectives, rel=1e-12)
