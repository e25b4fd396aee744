"""Helpers for the registry tests: stand-in checkpoints and eval per-sample files."""

from __future__ import annotations

import json
import random
from pathlib import Path


def write_per_sample(path: Path, hit_share: float, n: int = 200, seed: int = 0, prefix: str = "r") -> Path:
    """An eval per_sample.jsonl where about `hit_share` of the records have IoU >= 0.5."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"index": i, "id": f"{prefix}{i}", "task": "region", "iou": 0.8 if rng.random() < hit_share else 0.2}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_checkpoint(folder: Path, tag: str) -> Path:
    """A stand-in checkpoint folder (the registry only needs config.json and some weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_vl", "tag": tag}))
    (folder / "model.safetensors").write_bytes(tag.encode() * 1000)
    return folder
