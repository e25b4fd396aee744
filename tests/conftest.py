"""Shared test setup: offline, no telemetry, every tracking store in a temporary folder."""

from __future__ import annotations

import os

# Set before any test module imports mlflow / prefect / transformers.
for key, value in {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "WANDB_DISABLED": "true",
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store for one test (absolute URI: MLflow 3 refuses a file store)."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri

from hypothesis import settings  # noqa: E402

# A loaded 2-core CI machine must not fail a property test for being slow.
settings.register_profile("univg", deadline=None, max_examples=60)
settings.load_profile("univg")
