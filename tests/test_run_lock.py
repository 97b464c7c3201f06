"""One process trains a run folder at a time: a second one stops with an error naming the holder,
a killed holder leaves the folder free, DDP's other ranks do not lock, and a multirun run again
while an old worker still trains one of its jobs leaves that job to the worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.run.lock import LOCK_FILE, RANK_VARIABLES, FolderBusy, run_folder_lock
from tests.helpers import REPO, run_app, tiny_run


@pytest.fixture(autouse=True)
def not_a_ddp_rank(monkeypatch):
    """This process and the holders it starts are no DDP rank, whatever the machine's environment."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


HOLD = """
import sys, time
from pathlib import Path
from experiments.run.lock import run_folder_lock
with run_folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(folder: Path) -> subprocess.Popen:
    """A process holding ``folder``'s lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def release(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)  # as a kill -9 would: the kernel drops the lock
    process.wait(timeout=30)


def test_a_held_folder_is_refused_naming_the_holder_and_free_once_it_is_killed(tmp_path):
    holder = hold(tmp_path)
    try:
        with pytest.raises(FolderBusy, match=rf"is being trained by another process \(pid {holder.pid}\)"):
            with run_folder_lock(tmp_path):
                pass
        assert (tmp_path / LOCK_FILE).read_text() == f"{holder.pid}\n"  # the refused attempt left it as it was
    finally:
        release(holder)
    with run_folder_lock(tmp_path):
        with pytest.raises(FolderBusy, match=r"pid \d+"):  # held again, now by this process
            with run_folder_lock(tmp_path):
                pass


@pytest.mark.parametrize("variable", RANK_VARIABLES)
def test_other_ranks_of_a_ddp_world_work_in_rank_0s_folder_under_its_lock(variable, tmp_path, monkeypatch):
    holder = hold(tmp_path)
    try:
        monkeypatch.setenv(variable, "1")
        with run_folder_lock(tmp_path):
            pass
        monkeypatch.setenv(variable, "0")
        with pytest.raises(FolderBusy):
            with run_folder_lock(tmp_path):
                pass
    finally:
        release(holder)


@pytest.mark.integration
def test_a_run_into_a_held_folder_stops_and_a_multirun_leaves_a_held_job_to_its_holder(cache, tmp_path):
    run_dir = tmp_path / "run"
    holder = hold(run_dir)
    try:
        single = run_app(*tiny_run(), f"data.cache_dir={cache}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert single.returncode == 2, single.stderr[-2000:]
        assert f"is being trained by another process (pid {holder.pid})" in single.stderr
        assert not (run_dir / "metrics.json").exists() and not (run_dir / "failure.txt").exists()
    finally:
        release(holder)

    sweep = tmp_path / "sweep"
    args = ["-m", "model=lr,fm,ffm", f"hydra.sweep.dir={sweep}", f"data.cache_dir={cache}", *tiny_run()]
    holder = hold(sweep / "1")
    try:
        first = run_app(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-2000:]
        assert f"{sweep / '1'} is being trained by another process (pid {holder.pid})" in first.stderr
        assert [(sweep / str(job) / "metrics.json").exists() for job in range(3)] == [True, False, True]
    finally:
        release(holder)
    again = run_app(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("holds a finished run, not run again") == 2
    assert json.loads((sweep / "1" / "metrics.json").read_text())["model"] == "fm"
