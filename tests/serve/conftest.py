"""Fixtures for the serving tests: one very small tiny Qwen2-VL per session, and test images."""

from __future__ import annotations

import pytest
from PIL import Image

from univg.answers import format_completion, instruction_text
from univg.config import ModelConfig

TINY = dict(
    vocab_size=400, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
    vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=112 * 112,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from univg.models.tiny import build_tiny_model

    corpus = []
    for k in range(1, 5):
        corpus.append(instruction_text(f"Find the red circle in image {k}."))
        corpus.append(format_completion(f"Image {k} shows a red circle.", [100 * k, 120, 300 + k, 400], k))
    out = tmp_path_factory.mktemp("serve") / "tiny"
    build_tiny_model(ModelConfig(**TINY, seed=0), corpus * 10, out)
    return out


@pytest.fixture
def images():
    return [Image.new("RGB", (112, 112), (220, 30, 30)), Image.new("RGB", (112, 112), (30, 30, 220))]
