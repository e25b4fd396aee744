"""Fixtures for the registry tests: a sqlite MLflow store, fake checkpoints and per-sample files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from univg.config import Params

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT, ROOT / "tests" / "flows"):  # flows/ helpers and the stand-in repo
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def params(mlflow_uri) -> Params:
    cfg = Params()
    cfg.tracking.uri = mlflow_uri
    cfg.eval.n_bootstrap = 300
    cfg.eval.models = ["base", "grpo"]
    return cfg


@pytest.fixture
def client(mlflow_uri):
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    return mlflow.MlflowClient()
