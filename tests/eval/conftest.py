"""Fixtures for the evaluation tests: fixture files, record/prediction writers, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2-VL built offline (a few seconds on CPU), shared by the inference tests."""
    from univg.answers import format_completion, instruction_text
    from univg.config import ModelConfig
    from univg.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_model")
    cfg = ModelConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                      intermediate_size=64, vision_depth=1, vision_embed_dim=32, vision_heads=2,
                      min_pixels=56 * 56, max_pixels=56 * 56)
    corpus = [instruction_text("Locate the red square in the second image.", fmt) for fmt in ("indexed", "univg-r1")]
    corpus += [format_completion("The square is at the top left.", [12, 345, 678, 901], 2, fmt)
               for fmt in ("indexed", "univg-r1")]
    build_tiny_model(cfg, corpus * 20, out)
    return out
