"""The committed results: the commit every new record names (``git_commit``), and the index of
``results/`` (``python -m experiments.report.index``). Fast and torch-free."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from experiments.report.revision import describe, git_commit

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@needs_git
def test_git_commit_names_head_and_whether_the_code_differs_from_it(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("| a |\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert git_commit(tmp_path) == {"commit": head, "dirty": False}
    assert git_commit(tmp_path / "code.py") == {"commit": head, "dirty": False}  # a file: its checkout
    # a report rewriting results/ or a scratch file does not make the code uncommitted; a code change does
    (tmp_path / "results" / "table.md").write_text("| b |\n")
    (tmp_path / "scratch.txt").write_text("notes\n")
    assert git_commit(tmp_path / "results")["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "results") == {"commit": head, "dirty": True}
    assert describe(git_commit(tmp_path)) == f"{head} with uncommitted changes"


def test_no_checkout_no_commit(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": False}
    assert describe(git_commit(tmp_path)) == "not recorded (no git checkout)"
    assert describe(None) == "not recorded" and describe({"commit": "abc1234", "dirty": False}) == "abc1234"
