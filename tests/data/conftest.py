"""Small mig-synth datasets shared by the data tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from univg.config import DataConfig


@pytest.fixture(scope="session")
def small_cfg() -> DataConfig:
    return DataConfig(seed=3, train_per_task=8, val_per_task=2, test_per_task=6)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, small_cfg) -> tuple[Path, dict]:
    """(folder, card) of a complete small mig-synth dataset."""
    from univg.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("mig-synth")
    card = generate_dataset(small_cfg, out, progress=False)
    return out, card
