"""Tiny GRPO fixtures: a handful of two-image records and a tiny Qwen2-VL built from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from univg.config import ModelConfig

COLOURS = ("red", "blue", "green", "yellow")


def write_tiny_records(folder: Path, count: int = 6, size: int = 56) -> Path:
    """`count` records with two tiny images each; the box marks a filled square in the target image."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    lines = []
    for index in range(count):
        target = 1 + index % 2
        colour = COLOURS[index % len(COLOURS)]
        box = [100 + 50 * (index % 4), 200, 500 + 50 * (index % 4), 700]
        paths = []
        for image_number in (1, 2):
            image = Image.new("RGB", (size, size), "white")
            if image_number == target:
                x1, y1, x2, y2 = (v * size // 1000 for v in box)
                ImageDraw.Draw(image).rectangle([x1, y1, x2, y2], fill=colour)
            rel = f"images/r{index}_{image_number}.png"
            image.save(folder / rel)
            paths.append(rel)
        lines.append(
            {
                "id": f"r{index}", "task": "common_object", "images": paths,
                "question": f"Find the {colour} square.", "target_image": target, "box": box,
                "source": "test",
                "cot": f"The {colour} square is in image {target}.",
            }
        )
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


TINY_MODEL = ModelConfig(
    vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=56 * 56, seed=0,
)


@pytest.fixture(scope="session")
def tiny_grpo_data(tmp_path_factory) -> Path:
    return write_tiny_records(tmp_path_factory.mktemp("grpo-data"))


@pytest.fixture(scope="session")
def tiny_grpo_model(tmp_path_factory, tiny_grpo_data) -> Path:
    """A tiny Qwen2-VL checkpoint folder (tokenizer trained on the fixture records)."""
    from univg.models.tiny import build_tiny_model, corpus_from_records

    out = tmp_path_factory.mktemp("grpo-model")
    build_tiny_model(TINY_MODEL, corpus_from_records([tiny_grpo_data]), out)
    return out
