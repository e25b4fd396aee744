"""GRPO step time: difficulty weighting (our GRPOTrainer subclass, mode exp) vs plain TRL GRPOTrainer.

Same tiny Qwen2-VL (params.yaml's model sizes), same mig-synth prompts, same seed and arguments,
in one process. Runs alternate (plain, weighted, plain, weighted, ...) so that load from other
processes on a shared machine hits both alike. The first step of every run is dropped (one-off
costs; a step's time runs from the previous step's end to its own). Reported: the ratio of median step times, wall and CPU (CPU time of this process is
the steadier figure on a shared box), the ratio of the fastest steps (least disturbed by other
load), plus the cost of the weighting code alone.

    python benchmarks/grpo_weighting.py                       # 8 steps x 3 repetitions, 2 prompts x G=8
    python benchmarks/grpo_weighting.py --steps 12 --reps 3 --max-completion 64

Target: weighted / plain <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_common import StepTimer, build_inputs, image_patches
from hardware import matmul_peak
from transformers.trainer_callback import PrinterCallback


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--reps", type=int, default=3, help="runs of each variant (alternating)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="G, completions per prompt")
    parser.add_argument("--max-completion", type=int, default=32, help="max new tokens per completion")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient (0 skips the reference model)")
    parser.add_argument("--per-task", type=int, default=2, help="mig-synth training records per task (10 tasks)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (model sizes)")
    return parser.parse_args(argv)


def run_variant(weighted: bool, params, dataset, model_dir: Path, out_dir: Path, steps: int) -> dict:
    """One training run; returns its per-step timings and mean completion length."""
    from trl import GRPOConfig, GRPOTrainer

    from univg.models.loading import load_model_and_processor
    from univg.rewards import reward_functions
    from univg.train.grpo import grpo_arguments
    from univg.train.grpo_trainer import DifficultyWeightedGRPOTrainer

    profile = params.grpo.active
    kwargs = grpo_arguments(profile, out_dir, max_steps=steps)
    kwargs.update(save_strategy="no", logging_steps=1, logging_first_step=False, disable_tqdm=True)
    model, processor = load_model_and_processor(str(model_dir), padding_side="left", trainable=True)
    timer = StepTimer()
    common = {"model": model, "processing_class": processor, "args": GRPOConfig(**kwargs),
              "reward_funcs": reward_functions(list(profile.rewards), params.cot.answer_format),
              "train_dataset": dataset, "callbacks": [timer]}
    if weighted:
        trainer = DifficultyWeightedGRPOTrainer(**common, weighting="exp")
    else:
        trainer = GRPOTrainer(**common)
    trainer.remove_callback(PrinterCallback)  # keep the output to the report
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    steps, wall, _, tokens = timer.window()
    sequences = steps * kwargs["per_device_train_batch_size"] * kwargs["gradient_accumulation_steps"]
    return {"wall": timer.wall, "cpu": timer.cpu, "mean_length": statistics.fmean(lengths),
            "tokens_per_second": tokens / wall,
            "gflops": achieved_gflops(model, processor, dataset, tokens / sequences, sequences, wall, profile.beta)}


def achieved_gflops(model, processor, dataset, tokens_per_sequence: float, sequences: int, wall: float,
                    beta: float) -> float:
    """Model GFLOP/s of the timed steps. Per sequence (prompt + completion): the training pass
    (hardware.sample_flops), plus a forward pass to generate it (prefill and cached decoding do the
    forward's matmuls once per position) and one more for the reference model when beta > 0."""
    from hardware import parameter_groups, sample_flops

    groups = parameter_groups(model)
    per_sequence = statistics.fmean(
        sum(sample_flops(model, tokens_per_sequence, image_patches(model, processor, sizes), groups).values())
        for sizes in dataset["image_sizes"])
    return per_sequence * (1 + 1 / 3 + (1 / 3 if beta > 0 else 0)) * sequences / wall / 1e9


def weighting_cost_ms(completions: int, generations: int, repeats: int = 2000) -> float:
    """The weighting code alone on one generation batch: weights, the slice, the multiply."""
    import torch

    from univg.train.weighting import difficulty_weights, group_mean_iou

    rewards, advantages = torch.rand(completions), torch.randn(completions)
    started = time.perf_counter()
    for _ in range(repeats):
        weights = difficulty_weights(rewards, generations)
        _ = advantages * weights[:completions]
        _ = group_mean_iou(rewards, generations)
    return (time.perf_counter() - started) / repeats * 1000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from univg.config import load_params
    from univg.models.family import FAMILIES
    from univg.train.examples import read_training_records
    from univg.train.grpo import load_prompts

    batch = args.prompts * args.generations
    params = load_params(args.params, {
        "grpo.profile": "tiny-cpu", "grpo.tiny-cpu.per_device_train_batch_size": batch,
        "grpo.tiny-cpu.gradient_accumulation_steps": 1, "grpo.tiny-cpu.num_generations": args.generations,
        "grpo.tiny-cpu.max_completion_length": args.max_completion, "grpo.tiny-cpu.beta": args.beta,
    })
    timings: dict[str, dict[str, list[float]]] = {"plain": {"wall": [], "cpu": []}, "weighted": {"wall": [], "cpu": []}}
    lengths: dict[str, list[float]] = {"plain": [], "weighted": []}
    token_rates: dict[str, list[float]] = {"plain": [], "weighted": []}
    gflops: dict[str, list[float]] = {"plain": [], "weighted": []}
    peak = matmul_peak()
    with tempfile.TemporaryDirectory(prefix="univg-grpo-bench-") as tmp:
        scratch = Path(tmp)
        train_file, base = build_inputs(params, args.per_task, scratch, with_cot=False)
        # the tiny model is a Qwen2-VL: boxes in 0..1000, as the records hold them
        dataset = load_prompts(read_training_records(train_file), params.cot.answer_format, FAMILIES["qwen2_vl"], None)
        for rep in range(args.reps):
            order = ("plain", "weighted") if rep % 2 == 0 else ("weighted", "plain")
            for name in order:
                result = run_variant(name == "weighted", params, dataset, base, scratch / f"{name}{rep}", args.steps)
                timings[name]["wall"] += result["wall"]
                timings[name]["cpu"] += result["cpu"]
                lengths[name].append(result["mean_length"])
                token_rates[name].append(result["tokens_per_second"])
                gflops[name].append(result["gflops"])

    median = {name: {kind: statistics.median(values) for kind, values in kinds.items()}
              for name, kinds in timings.items()}
    report = {
        "model": {k: getattr(params.model, k) for k in ("hidden_size", "num_layers", "vision_depth")},
        "prompts_per_step": args.prompts, "num_generations": args.generations,
        "max_completion_length": args.max_completion, "beta": args.beta,
        "timed_steps_per_variant": len(timings["plain"]["wall"]), "torch_threads": torch.get_num_threads(),
        "plain_step_s": {k: round(v, 4) for k, v in median["plain"].items()},
        "weighted_step_s": {k: round(v, 4) for k, v in median["weighted"].items()},
        "ratio_wall": round(median["weighted"]["wall"] / median["plain"]["wall"], 4),
        "ratio_wall_fastest": round(min(timings["weighted"]["wall"]) / min(timings["plain"]["wall"]), 4),
        "ratio_cpu": round(median["weighted"]["cpu"] / median["plain"]["cpu"], 4),
        "mean_completion_length": {k: round(statistics.fmean(v), 2) for k, v in lengths.items()},
        # prompt + completion tokens (TRL's num_tokens) per second of training, generation included
        "tokens_per_second": {k: round(statistics.median(v), 1) for k, v in token_rates.items()},
        "achieved_gflops": {k: round(statistics.median(v), 2) for k, v in gflops.items()},
        **peak,
        "fraction_of_matmul_peak": round(statistics.median(gflops["weighted"]) / peak["matmul_gflops"], 4),
        "weighting_code_ms_per_generation_batch": round(weighting_cost_ms(batch, args.generations), 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "target_ratio": 1.05,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
