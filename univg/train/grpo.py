"""GRPO with difficulty-aware weighting (UniVG-R1 stage 3), on TRL's GRPOTrainer.

Reward = IoU reward + format reward (equal weights). Each prompt's G completions are normalised
into advantages by TRL as usual, then the whole group's advantages are multiplied by a weight
phi that falls as the prompt gets easier (phi = exp(1 - mean IoU of the group) by default). The
weight is computed from the group's own IoU rewards on the tensor TRL gathers from every process,
so it is exact whatever the per-device batch, accumulation or process layout; the KL term is
left unweighted (see univg/train/weighting.py for the trainer subclass).

Entry points: `train_grpo` (the `grpo` stage), `build_grpo_args` (profile -> trl.GRPOConfig),
`difficulty_weights` (contract).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from univg.config import GRPOProfile, Params
from univg.train.common import (
    build_training_kwargs,
    checkpoint_step,
    file_md5,
    load_for_training,
    lora_config,
    parameter_counts,
    resume_checkpoint,
    save_final,
)

log = logging.getLogger(__name__)

WEIGHTING_MODES = ("exp", "power", "log", "none")
EASY_IOU = 0.8  # a group whose mean IoU exceeds this counts as an easy prompt
SUMMARY_FILE = "grpo_summary.json"


# ----------------------------------------------------------------------------- difficulty weights
def group_mean_iou(iou_rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Mean IoU of each prompt group, in TRL's layout (a group's G completions consecutive)."""
    rewards = torch.as_tensor(iou_rewards, dtype=torch.float32)
    if rewards.dim() != 1:
        raise ValueError(f"iou_rewards must be 1-D (one per completion), got shape {tuple(rewards.shape)}")
    if num_generations < 1 or rewards.numel() % num_generations:
        raise ValueError(
            f"{rewards.numel()} rewards cannot be split into groups of num_generations={num_generations}"
        )
    return torch.nanmean(rewards.view(-1, num_generations), dim=1)


def difficulty_weights(
    iou_rewards: torch.Tensor, num_generations: int, mode: str = "exp", k: float = 1.0
) -> torch.Tensor:
    """One weight per completion, equal within a group, from that group's mean IoU m (contract).

    exp = exp(1 - m) in [1, e] (the paper's choice); power = (1.05 - m)**k; log = -log(0.02 + m)
    (as released: it turns slightly negative for m > 0.98); none = 1 (plain GRPO).
    A group whose rewards are all NaN (unscorable) gets weight 1: its advantages are 0 anyway.
    """
    if mode not in WEIGHTING_MODES:
        raise ValueError(f"unknown weighting mode {mode!r}; choose from {list(WEIGHTING_MODES)}")
    rewards = torch.as_tensor(iou_rewards)
    means = group_mean_iou(rewards, num_generations)
    if mode == "exp":
        weights = torch.exp(1.0 - means)
    elif mode == "power":
        weights = (1.05 - means) ** k
    elif mode == "log":
        weights = -torch.log(0.02 + means)
    else:
        weights = torch.ones_like(means)
    weights = torch.nan_to_num(weights, nan=1.0)
    device = rewards.device if isinstance(rewards, torch.Tensor) else None
    return weights.repeat_interleave(num_generations).to(device)


def process_slice(values: torch.Tensor, process_index: int, local_count: int) -> torch.Tensor:
    """This process's rows of a tensor gathered from all processes, sliced exactly like TRL slices
    its advantages: process i holds rows [i * local_count, (i + 1) * local_count)."""
    if (process_index + 1) * local_count > values.numel():
        raise ValueError(
            f"process {process_index} with {local_count} local rows exceeds the {values.numel()} gathered rewards"
        )
    return values[process_index * local_count : (process_index + 1) * local_count]


def process_weights(
    gathered_iou: torch.Tensor, num_generations: int, process_index: int, local_count: int,
    mode: str = "exp", k: float = 1.0,
) -> torch.Tensor:
    """This process's weights, computed on the IoU rewards gathered from every process (so a group
    split across processes or micro-batches still gets its own mean)."""
    return process_slice(difficulty_weights(gathered_iou, num_generations, mode, k), process_index, local_count)


# ----------------------------------------------------------------------------- arguments
def prompts_per_step(profile: GRPOProfile, num_processes: int = 1) -> float:
    """Prompts per optimizer step: TRL's batch sizes count completions, G per prompt
    (paper: 16 completions x 8 GPUs / G=8 = 16 prompts)."""
    completions = profile.per_device_train_batch_size * profile.gradient_accumulation_steps * num_processes
    return completions / profile.num_generations


def grpo_arguments(profile: GRPOProfile, out_dir: str | Path, max_steps: int | None = None) -> dict[str, Any]:
    """trl.GRPOConfig keywords for a profile (pure: inspectable without building the config).

    The paper's choices are set explicitly, since TRL's defaults differ (loss_type 'dapo', beta 0).
    """
    kwargs = build_training_kwargs(profile, out_dir, max_steps)
    kwargs.update(
        # --- the paper's GRPO: G completions, clipped ratio, k3 KL against a frozen reference
        num_generations=profile.num_generations,
        beta=profile.beta,
        epsilon=profile.epsilon,
        loss_type=profile.loss_type,  # 'grpo': token loss averaged per sequence, then over the batch
        scale_rewards=profile.scale_rewards,  # 'group': (r - mean) / (std + 1e-4) within each prompt
        multi_objective_aggregation="sum_then_normalize",  # reward = IoU + format, then normalise
        reward_weights=None,  # equal weights
        num_iterations=1,  # one policy update per generation batch
        importance_sampling_level="token",
        mask_truncated_completions=False,  # a truncated chain earns 0 and is trained on, as in the paper
        temperature=profile.temperature,
        top_p=1.0,
        top_k=0,
        max_completion_length=profile.max_completion_length,
        # --- generation backend: vLLM for GPU users, passed straight through to TRL
        use_vllm=profile.use_vllm,
        vllm_mode=profile.vllm_mode,
        vllm_gpu_memory_utilization=profile.vllm_gpu_memory_utilization,
        # --- our own reporting goes to MLflow (univg.train.weighting)
        log_completions=False,
        shuffle_dataset=True,
    )
    return kwargs


def build_grpo_args(profile: GRPOProfile, out_dir: str | Path, max_steps: int | None = None, dry_run: bool = False):
    """The trl.GRPOConfig of a profile.

    `dry_run` builds it on a machine without the profile's hardware (the paper's GPU profile on a
    laptop): DeepSpeed (needs the package) and the CUDA check behind bf16 are lifted so that
    everything else, vLLM options included, is validated by TRL; read them from `grpo_arguments`.
    """
    from trl import GRPOConfig

    kwargs = grpo_arguments(profile, out_dir, max_steps)
    if dry_run:
        kwargs.update(deepspeed=None, use_cpu=True)
    return GRPOConfig(**kwargs)


# ----------------------------------------------------------------------------- helpers
# Profile fields that do not change what a checkpoint means: a run may resume across them.
_RESUMABLE_ACROSS = {"max_steps", "num_train_epochs", "save_steps", "logging_steps", "sample_every_steps",
                     "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization", "deepspeed", "gradient_checkpointing"}


def input_fingerprint(train_file: Path, init_model: str, profile: GRPOProfile, answer_format: str) -> dict[str, Any]:
    """What GRPO checkpoints depend on: resuming is only valid while all of this is unchanged."""
    init = Path(init_model)
    if init.is_dir() and (init / "config.json").is_file():
        from univg.registry import checkpoint_fingerprint

        init_id = f"{init.resolve()}#{checkpoint_fingerprint(init)}"
    else:
        init_id = str(init_model)
    shape = {k: v for k, v in profile.model_dump(mode="json").items() if k not in _RESUMABLE_ACROSS}
    return {"train_file_md5": file_md5(train_file), "init_model": init_id, "answer_format": answer_format, **shape}


def load_prompts(train_file: Path, image_root: Path | None, answer_format: str):
    """Records -> a datasets.Dataset of GRPO prompts (images + question; box/target_image for rewards)."""
    from datasets import Dataset

    from univg.train.examples import load_examples

    examples = load_examples(train_file, image_root, answer_format=answer_format, with_completion=False)
    if not examples:
        raise ValueError(f"{train_file}: no records to train on")
    return Dataset.from_list(examples)


def _log_input(train_file: Path) -> None:
    from univg.registry import log_jsonl_input

    log_jsonl_input(train_file, name="grpo-train", context="training")


def _log_final_model(final: Path) -> str | None:
    try:
        from univg.registry import log_model_checkpoint
    except ImportError as error:
        log.warning("final model not logged to MLflow: univg.registry.log_model_checkpoint unavailable (%s)", error)
        return None
    return log_model_checkpoint(final, name="model")


_HEADLINE = ("reward", "rewards/iou_reward/mean", "rewards/format_reward/mean", "kl", "loss",
             "completions/mean_length", "completions/clipped_ratio", "difficulty/weight_mean",
             "difficulty/group_iou_mean", "difficulty/easy_share")


def _headline(logged: dict[str, Any]) -> dict[str, float]:
    return _finite({key: logged[key] for key in _HEADLINE if key in logged})


def _finite(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


# ----------------------------------------------------------------------------- the stage
def train_grpo(
    params: Params,
    train_file: Path,
    init_model: str,
    out_dir: Path,
    image_root: Path | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Run GRPO with difficulty-aware weighting from `init_model` (the SFT model); returns the summary.

    Uses the active profile of `params.grpo` and `params.cot.answer_format` (the format the SFT
    targets were written in). `max_steps` overrides the profile's. Resume follows
    `params.grpo.resume` ('auto': continue from the newest checkpoint in out_dir trained on the
    same inputs). The final model and processor go to out_dir/final, logged to MLflow as `model`.
    """
    from univg.rewards import DEFAULT_REWARDS, reward_functions
    from univg.tracking import flatten, stage_run
    from univg.train.callbacks import MlflowMetricsCallback
    from univg.train.weighting import DifficultyReportCallback, DifficultyWeightedGRPOTrainer

    profile, answer_format = params.grpo.active, params.cot.answer_format
    train_file, out_dir = Path(train_file), Path(out_dir)
    if not train_file.is_file():
        raise FileNotFoundError(f"GRPO training file not found: {train_file}")
    run_params = {"profile": params.grpo.profile, "resume": params.grpo.resume, "init_model": str(init_model),
                  "train_file": str(train_file), "answer_format": answer_format, "rewards": list(DEFAULT_REWARDS),
                  "max_steps_override": max_steps, **profile.model_dump(mode="json")}

    with stage_run("grpo", params, log_params=run_params):
        import mlflow

        # --- load data: prompts with image placeholders; box / target_image feed the rewards
        _log_input(train_file)
        dataset = load_prompts(train_file, image_root, answer_format)

        # --- load model (after the arguments: under ZeRO-3 they must exist before from_pretrained)
        args = build_grpo_args(profile, out_dir, max_steps)
        model, processor = load_for_training(init_model, profile)

        # --- decide where to start
        fingerprint = input_fingerprint(train_file, str(init_model), profile, answer_format)
        resume_from = resume_checkpoint(out_dir, params.grpo.resume, fingerprint)

        # --- build trainer
        report = DifficultyReportCallback(sample_every_steps=profile.sample_every_steps)
        trainer = DifficultyWeightedGRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=reward_functions(DEFAULT_REWARDS, answer_format),
            args=args,
            train_dataset=dataset,
            peft_config=lora_config(profile) if profile.use_lora else None,
            callbacks=[MlflowMetricsCallback(), report],
            weighting=profile.weighting,
            weighting_k=profile.weighting_k,
        )
        report.trainer = trainer
        per_step = prompts_per_step(profile, trainer.accelerator.num_processes)
        mlflow.log_params({"prompts_per_step": per_step, "num_records": len(dataset),
                           **{f"parameters.{k}": v for k, v in parameter_counts(trainer.model).items()}})

        # --- train
        start_step = 0
        if resume_from is not None:
            start_step = checkpoint_step(resume_from)
            trainer.load_difficulty_history(resume_from)
        started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_seconds = time.perf_counter() - started

        # --- save
        final = save_final(trainer, processor, out_dir, info={
            "stage": "grpo", "init_model": str(init_model), "global_step": trainer.state.global_step,
            "answer_format": answer_format, "profile": params.grpo.profile, "weighting": profile.weighting,
        })

        # --- log
        logged = [entry for entry in trainer.state.log_history if "reward" in entry]
        summary = {
            "global_step": trainer.state.global_step,
            "steps_this_run": trainer.state.global_step - start_step,
            "resumed_from": str(resume_from) if resume_from else None,
            "train_seconds": round(train_seconds, 3),
            "weighting": profile.weighting,
            "answer_format": answer_format,
            "prompts_per_step": per_step,
            "train_metrics": _finite(result.metrics),
            "first_logged": _headline(logged[0]) if logged else {},
            "last_logged": _headline(logged[-1]) if logged else {},
            "difficulty": trainer.difficulty_summary(),
            "final_dir": str(final),
        }
        summary["model_uri"] = _log_final_model(final) if trainer.args.should_save else None
        if trainer.args.should_save:
            mlflow.log_dict(summary, "grpo_summary.json")
            (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            numbers = {f"summary/{k}": v for k, v in flatten(summary).items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            mlflow.log_metrics(_finite(numbers))
        return summary
