"""SFT throughput (samples/s) of the default tiny-cpu profile on the default tiny model.

Builds everything in a temporary folder: a small mig-synth train split, rule-teacher chains, the
tiny Qwen2-VL at params.yaml's default sizes, then runs a few real SFT steps (no sample drawing,
no intermediate checkpoints) and reports:
  steady_samples_per_second   the steps between the first and the last log (the profile logs every
                              10 steps and at step 1): all a step costs, data loading and logging too
  samples_per_cpu_second      the same steps per CPU-second of this process (robust on a shared box)
  run_samples_per_second      the stage's own figure: all steps, wall clock of trainer.train()
  fraction_of_matmul_peak     achieved model FLOP/s (counted per component: benchmarks/hardware.py)
                              over this machine's fp32 matmul rate, measured before training

    python benchmarks/sft_throughput.py                 # 21 steps at the profile's batch (16), 19 timed
    python benchmarks/sft_throughput.py --group-by-length off   # the random batch order, for comparison

The length-grouped order needs a few hundred examples to group anything (transformers groups
within "megabatches" of up to 50 batches, at least 4 batches' worth of examples each), hence the
default of 40 records per task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench_common import StepTimer, build_inputs, image_patches
from hardware import matmul_peak, parameter_groups, sample_flops


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=21, help="optimizer steps to run (timed: 2..the last log)")
    parser.add_argument("--per-task", type=int, default=40, help="training records per mig-synth task (10 tasks)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (profile, sizes)")
    parser.add_argument("--group-by-length", choices=["profile", "on", "off"], default="profile",
                        help="batch similar lengths together (the profile's setting unless on/off)")
    return parser.parse_args(argv)


def dataset_flops_per_token(params, train_file: Path, base: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Training FLOPs per text token by component (hardware.sample_flops), averaged over the training
    examples as the SFT stage builds them (its processor, its pixel limit), and the parameter groups."""
    from univg.models.family import family_of, limits_of
    from univg.train.common import load_for_training
    from univg.train.examples import load_examples
    from univg.train.sft import sequence_lengths

    model, processor = load_for_training(str(base), params.sft.active)
    family = family_of(model, params.model.family)
    examples = load_examples(train_file, answer_format=params.cot.answer_format, family=family,
                             limits=limits_of(processor, family))
    groups, totals = parameter_groups(model), {}
    lengths = sequence_lengths(examples, processor)
    for example, length in zip(examples, lengths, strict=True):
        patches = image_patches(model, processor, example["image_sizes"])
        for part, value in sample_flops(model, length, patches, groups).items():
            totals[part] = totals.get(part, 0.0) + value
    return {part: value / sum(lengths) for part, value in totals.items()}, groups


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from univg.config import load_params
    from univg.train.sft import train_sft

    # throughput only: no sample drawing, no checkpoint before the end; logging as often as the stage does
    params = load_params(args.params, {
        "sft.profile": "tiny-cpu", "sft.resume": "never",
        "sft.tiny-cpu.sample_every_steps": 0, "sft.tiny-cpu.save_steps": args.steps + 1,
        **({} if args.group_by_length == "profile" else {"sft.tiny-cpu.group_by_length": args.group_by_length == "on"}),
    })
    profile = params.sft.active
    peak = matmul_peak()  # before training: the ceiling of an idle process
    with tempfile.TemporaryDirectory(prefix="univg-sft-bench-") as tmp:
        scratch = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlruns.db'}"
        train_file, base = build_inputs(params, args.per_task, scratch, with_cot=True)
        timer = StepTimer()
        summary = train_sft(params, train_file, str(base), scratch / "sft", max_steps=args.steps, callbacks=[timer])
        flops_per_token, groups = dataset_flops_per_token(params, train_file, base)

    import torch

    batch = profile.per_device_train_batch_size * profile.gradient_accumulation_steps
    # the steps between the first and the last log; TRL's token count excludes padding
    steps, wall, cpu, tokens = timer.window()
    flops = {part: per_token * tokens for part, per_token in flops_per_token.items()}
    achieved = sum(flops.values()) / wall / 1e9
    result = {
        "profile": "tiny-cpu",
        "model": {k: getattr(params.model, k) for k in ("hidden_size", "num_layers", "vision_depth", "vocab_size")},
        "batch_size": batch,
        "group_by_length": profile.group_by_length,
        "steps": summary["global_step"],
        "examples": summary["examples"],
        "dropped_too_long": summary["dropped_too_long"],
        "torch_threads": torch.get_num_threads(),
        "timed_steps": steps,
        "steady_samples_per_second": round(batch * steps / wall, 2),
        "samples_per_cpu_second": round(batch * steps / cpu, 2),
        "run_samples_per_second": summary["samples_per_second"],
        "seconds_per_step": round(wall / steps, 3),
        "tokens_per_second": round(tokens / wall, 1),
        "matmul_parameters": groups,
        "flops_share": {part: round(value / sum(flops.values()), 3) for part, value in flops.items()},
        "achieved_gflops": round(achieved, 3),
        **peak,
        "fraction_of_matmul_peak": round(achieved / peak["matmul_gflops"], 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "train_loss_first": summary["train_loss_first"],
        "train_loss_last": summary["train_loss_last"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
