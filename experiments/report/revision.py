"""Which code made a result: ``git_commit(path)``, recorded in every provenance record and report
header, so that a table from older code can be told from one made by today's.

(Kept in the report package until the shared environment probe takes it over; stdlib only.)
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

# The code's own checkout: a report names the commit of the code that made it, wherever it is called from.
CODE = Path(__file__).resolve().parent
# Results are written while the commit is read (a report refreshing results/ dirties it), so a
# change there does not make the code that wrote it "uncommitted".
_NOT_CODE = ":(top,exclude)results"


def _git(path: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # no git, or a hung filesystem: nothing known
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(path: Path | str = CODE) -> dict:
    """``{"commit": short hash of HEAD, "dirty": tracked files outside results/ differ from it}`` for
    the checkout holding ``path``; ``{"commit": None, "dirty": False}`` outside one (an installed
    package, no git). Untracked files are not counted: scratch files would mark every run dirty."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    commit = _git(folder, "rev-parse", "--short", "HEAD")
    if not commit:
        return {"commit": None, "dirty": False}
    status = _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ":/", _NOT_CODE)
    return {"commit": commit, "dirty": bool(status)}


def describe(git: Optional[dict]) -> str:
    """A record's commit as the reports print it."""
    if not git or not git.get("commit"):
        return "not recorded (no git checkout)" if git else "not recorded"
    return git["commit"] + (" with uncommitted changes" if git.get("dirty") else "")
