"""Fixtures for the flow tests: the repo root on sys.path (flows/ is not a package install),
a stand-in DVC repo per test, and one Prefect test harness per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT, Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from standin import make_standin_repo  # noqa: E402


@pytest.fixture
def standin_repo(tmp_path, monkeypatch):
    """A fresh stand-in checkout whose MLflow store is a sqlite file inside it."""
    uri = f"sqlite:///{tmp_path / 'repo' / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return make_standin_repo(tmp_path / "repo", tracking_uri=uri)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A temporary Prefect API (own PREFECT_HOME) shared by the flow-logic tests."""
    from prefect.testing.utilities import prefect_test_harness

    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        patch.undo()
