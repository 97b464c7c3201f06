"""Fixtures shared by the test modules (plain helpers are in ``tests/helpers.py``).

The default ``pytest`` runs the quick tests; ``slow`` (more than a few seconds each) and
``integration`` (tests that start processes or servers) are deselected by ``addopts`` and run with
``pytest -m ""`` (README, ``.ci/run``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors: one thread beats two fighting other processes on a shared CPU. A module opts
    in with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """One data cache for the whole session: runs of the same tiny data share its encoded splits
    (each source and preprocessing config has its own key in it)."""
    return tmp_path_factory.mktemp("cache")
