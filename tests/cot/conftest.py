"""Fixtures for the CoT tests: a loopback chat-completions server, tiny images, small mig-synth data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_openai import FakeOpenAI  # noqa: E402

from univg.config import CotConfig, DataConfig, ValidateConfig  # noqa: E402


@pytest.fixture(scope="session")
def fake_server():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_server):
    """The loopback server with its request log and attempt counters cleared."""
    fake_server.reset()
    return fake_server


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small mig-synth dataset (2 train + 1 test sample per task), written by the real generator."""
    from univg.data.synth import generate_split
    from univg.schema import write_jsonl

    out = tmp_path_factory.mktemp("mig-synth")
    cfg = DataConfig(train_per_task=2, val_per_task=0, test_per_task=1, image_size=56)
    for split in ("train", "test"):
        write_jsonl(out / f"{split}.jsonl", generate_split(cfg, split, out, progress=False))
    return out


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder with three tiny PNGs (a, b, c) and one corrupt file (broken.png)."""
    from PIL import Image

    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    for name, colour in (("a", "red"), ("b", "blue"), ("c", "green")):
        Image.new("RGB", (16, 16), colour).save(folder / "img" / f"{name}.png")
    (folder / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


@pytest.fixture
def validate_cfg() -> ValidateConfig:
    return ValidateConfig(min_accept_fraction=0.0)


@pytest.fixture
def openai_cfg(fake_openai, tmp_path):
    """A CotConfig for the openai teacher pointed at the loopback server, fast backoff, cache in tmp."""

    def make(model: str = "chain", **openai: Any) -> CotConfig:
        settings = {"base_url": fake_openai.base_url, "model": model, "api_key_env": "UNIVG_TEST_KEY",
                    "max_retries": 3, "backoff_s": 0.01, "timeout_s": 5.0, "max_concurrency": 2,
                    "price_per_1k_prompt_tokens": 0.5, "price_per_1k_completion_tokens": 1.5}
        settings.update(openai)
        return CotConfig(teacher="openai", num_candidates=3, cache_dir=str(tmp_path / "cache"), openai=settings)

    return make
