"""What this machine can do: its fp32 matmul rate with torch, the ceiling training FLOP/s are compared with.

    python benchmarks/hardware.py            # prints {"matmul_gflops": ..., "threads": ...}

Model FLOPs of a training step are counted the usual way (Kaplan et al.; PaLM's MFU): 6 x
non-embedding parameters x tokens for the weights (forward 2, backward 4), plus 12 x layers x width
x sequence length per token for attention scores. Vision-tower parameters count once per text token
here, which overstates the vision cost a little; the fraction is a guide, not an exact MFU.
"""

from __future__ import annotations

import json
import time


def matmul_peak(size: int = 1024, repeats: int = 20) -> dict[str, float]:
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


def non_embedding_parameters(model) -> int:
    """Parameters outside the token embedding and the output head (they cost a lookup, not a matmul per token)."""
    skip = {id(p) for module in (model.get_input_embeddings(), model.get_output_embeddings()) if module is not None
            for p in module.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def training_flops(non_embedding: int, tokens: int, layers: int, width: int, mean_length: float) -> float:
    """Model FLOPs of training on `tokens` tokens (see the module docstring)."""
    return 6.0 * non_embedding * tokens + 12.0 * layers * width * mean_length * tokens


if __name__ == "__main__":
    print(json.dumps(matmul_peak(), indent=2))
