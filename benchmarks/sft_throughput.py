"""SFT throughput (samples/s) of the default tiny-cpu profile on the default tiny model.

Builds everything in a temporary folder: a small mig-synth train split, rule-teacher chains, the
tiny Qwen2-VL at params.yaml's default sizes, then runs a few real SFT steps (no sample drawing,
no intermediate checkpoints) and reports:
  steady_samples_per_second   optimizer steps 2..N only (the first step pays one-off costs)
  samples_per_cpu_second      the same steps per CPU-second of this process (robust on a shared box)
  run_samples_per_second      the stage's own figure: all steps, wall clock of trainer.train()

    python benchmarks/sft_throughput.py                 # 12 steps at the profile's batch (16)
    python benchmarks/sft_throughput.py --steps 20 --per-task 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench_common import StepTimer, build_inputs
from hardware import matmul_peak, non_embedding_parameters, training_flops


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps to time")
    parser.add_argument("--per-task", type=int, default=8, help="training records per mig-synth task (10 tasks)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (profile, sizes)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from univg.config import load_params
    from univg.train.sft import train_sft

    # throughput only: no sample drawing, no checkpoint before the end
    params = load_params(args.params, {
        "sft.profile": "tiny-cpu", "sft.resume": "never", "sft.tiny-cpu.logging_steps": 1,
        "sft.tiny-cpu.sample_every_steps": 0, "sft.tiny-cpu.save_steps": args.steps + 1,
    })
    profile = params.sft.active
    with tempfile.TemporaryDirectory(prefix="univg-sft-bench-") as tmp:
        scratch = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlruns.db'}"
        train_file, base = build_inputs(params, args.per_task, scratch, with_cot=True)
        timer = StepTimer()
        summary = train_sft(params, train_file, str(base), scratch / "sft", max_steps=args.steps, callbacks=[timer])
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(base)
        weights = non_embedding_parameters(model)
        text = model.config.text_config

    import torch

    wall, cpu = timer.wall[1:] or timer.wall, timer.cpu[1:] or timer.cpu
    batch = profile.per_device_train_batch_size * profile.gradient_accumulation_steps
    # tokens of the timed steps (TRL counts the attention mask), and the machine's ceiling
    tokens = timer.tokens[-1] - timer.tokens[0] if len(timer.tokens) > 1 else 0
    flops = training_flops(weights, tokens, text.num_hidden_layers, text.hidden_size, tokens / max(1, batch * len(wall)))
    peak = matmul_peak()
    result = {
        "profile": "tiny-cpu",
        "model": {k: getattr(params.model, k) for k in ("hidden_size", "num_layers", "vision_depth", "vocab_size")},
        "batch_size": batch,
        "steps": summary["global_step"],
        "examples": summary["examples"],
        "dropped_too_long": summary["dropped_too_long"],
        "torch_threads": torch.get_num_threads(),
        "steady_samples_per_second": round(batch * len(wall) / sum(wall), 2),
        "samples_per_cpu_second": round(batch * len(cpu) / sum(cpu), 2),
        "run_samples_per_second": summary["samples_per_second"],
        "seconds_per_step": round(sum(wall) / len(wall), 3),
        "tokens_per_second": round(tokens / sum(wall), 1),
        "non_embedding_parameters": weights,
        "achieved_gflops": round(flops / sum(wall) / 1e9, 3),
        **peak,
        "fraction_of_matmul_peak": round(flops / sum(wall) / 1e9 / peak["matmul_gflops"], 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "train_loss_first": summary["train_loss_first"],
        "train_loss_last": summary["train_loss_last"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
