"""Fixtures for the model tests: one very small tiny Qwen2-VL, built once per session."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from univg.answers import format_completion, instruction_text
from univg.config import ModelConfig

# Smaller than the default so the whole folder of tests stays fast on 2 shared cores.
TEST_SIZES = dict(
    vocab_size=400, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
    vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=112 * 112,
)


def make_corpus(n: int = 120, seed: int = 0) -> list[str]:
    """Questions and CoT answers in the project's formats, with random boxes and image indices."""
    rng = random.Random(seed)
    colours = ["red", "blue", "green", "yellow", "purple"]
    shapes = ["circle", "square", "triangle", "star"]
    texts = []
    for _ in range(n):
        k = rng.randint(1, 4)
        obj = f"{rng.choice(colours)} {rng.choice(shapes)}"
        texts.append(instruction_text(f"These images share one object: the {obj}. Locate it in image {k}."))
        xs, ys = sorted(rng.sample(range(1001), 2)), sorted(rng.sample(range(1001), 2))
        cot = f"Image {k} shows the {obj} near the centre; the other images show distractors."
        texts.append(format_completion(cot, [xs[0], ys[0], xs[1], ys[1]], k))
        texts.append(format_completion(cot, [xs[0], ys[0], xs[1], ys[1]], k, "univg-r1"))
    return texts


def solid_image(colour: tuple[int, int, int], size: int = 112) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


@pytest.fixture(scope="session")
def test_model_config() -> ModelConfig:
    return ModelConfig(**TEST_SIZES, seed=0)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, test_model_config):
    from univg.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "base"
    build_tiny_model(test_model_config, make_corpus(), out)
    return out


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """(model, processor) loaded through the project's loader, left padding, eval mode."""
    from univg.models.loading import load_model_and_processor

    return load_model_and_processor(tiny_dir)


@pytest.fixture(scope="session")
def corpus_factory():
    return make_corpus


@pytest.fixture
def two_images():
    return [solid_image((220, 30, 30)), solid_image((30, 30, 220))]
