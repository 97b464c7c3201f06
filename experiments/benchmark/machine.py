"""What the benchmarks record beyond ``measures.environment``'s facts: the data benchmarks' environment
record (under the keys of their committed results), a measurement's date, and its commit as printed."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

from measures.environment import cpu_name, describe, git_commit, library_versions, memory_gib


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="minutes")


def code_of(env: dict) -> str:
    """The commit an ``environment()`` was taken at, as the reports print it; changes to `datamodules`
    are named apart because the data path's numbers depend on them."""
    if env.get("commit") and env.get("uncommitted_datamodules"):
        return f"commit {env['commit']} with uncommitted changes to `datamodules`"
    return f"commit {describe(env)}"


def environment() -> dict:
    import pyarrow

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        **library_versions(("numpy", "pandas", "pyarrow")),
        "pyarrow_threads": pyarrow.cpu_count(),
        **git_commit(),
        "uncommitted_datamodules": git_commit(only=(":(top)datamodules",))["dirty"],
        "date_utc": utc_now(),
    }
