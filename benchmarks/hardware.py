"""What this machine can do: its fp32 matmul rate with torch, the ceiling training FLOP/s are compared with.

    python benchmarks/hardware.py            # prints {"matmul_gflops": ..., "threads": ...}

Model FLOPs of a training step are counted as in the MFU literature (Kaplan et al.; PaLM): 6 FLOPs
per matmul parameter per position it runs on (forward 2, backward 4), plus attention scores. For a
Qwen-VL model the parameters run on different positions, so each group is counted on its own:

  text decoder, output head   every text position (image placeholders included), padding excluded
  vision tower                every image patch (before the 2x2 merge)
  patch merger                every merged image token
  attention                   12 x layers x width x the sequence it attends over, per position
                              (the text sequence; each image's own patches in the vision tower)

The input embedding is a lookup, not a matmul, and is not counted. Padding positions cost compute
but are not useful work, so they are not counted either: less padding shows up as a higher fraction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any


def matmul_peak(size: int = 1024, repeats: int = 100) -> dict[str, float]:
    """Best-of-`repeats` fp32 GFLOP/s of a square matmul with torch's threads (2 n^3 per product)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm up the thread pool and the kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return {"matmul_gflops": round(2 * size**3 / best / 1e9, 2), "matmul_size": size, "threads": torch.get_num_threads()}


def _count(module: Any, skip: set[int] = frozenset()) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters() if id(p) not in skip)


def parameter_groups(model: Any) -> dict[str, int]:
    """Matmul parameters by the positions they run on: text, head, vision (patches), merger (merged tokens)."""
    embedding = {id(p) for p in model.get_input_embeddings().parameters()}
    head = model.get_output_embeddings()
    head_count = 0 if head is None or any(id(p) in embedding for p in head.parameters()) else _count(head)
    visual = getattr(getattr(model, "model", model), "visual", None)
    merger = getattr(visual, "merger", None)
    vision = _count(visual) - _count(merger)
    text = _count(model, embedding) - head_count - _count(visual)
    return {"text": text, "head": head_count, "vision": vision, "merger": _count(merger)}


def sample_flops(model: Any, tokens: int, image_patches: Sequence[int],
                 groups: dict[str, int] | None = None) -> dict[str, float]:
    """Training FLOPs of one sample of `tokens` text positions and images of `image_patches` patches each
    (`groups`: the model's parameter_groups, when the caller counts many samples)."""
    groups = groups or parameter_groups(model)
    text, vision = model.config.text_config, getattr(model.config, "vision_config", None)
    merge = getattr(vision, "spatial_merge_size", 2) ** 2
    patches = sum(image_patches)
    flops = {
        "text": 6.0 * groups["text"] * tokens,
        "head": 6.0 * groups["head"] * tokens,
        "vision": 6.0 * groups["vision"] * patches,
        "merger": 6.0 * groups["merger"] * patches / merge,
        "attention": 12.0 * text.num_hidden_layers * text.hidden_size * tokens * tokens,
    }
    if vision is not None:
        width = getattr(vision, "embed_dim", None) or vision.hidden_size
        flops["attention"] += 12.0 * vision.depth * width * sum(n * n for n in image_patches)
    return flops


if __name__ == "__main__":
    print(json.dumps(matmul_peak(), indent=2))
