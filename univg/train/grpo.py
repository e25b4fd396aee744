"""GRPO with difficulty-aware weighting (UniVG-R1 stage 3), on TRL's GRPOTrainer.

Reward = IoU reward + format reward (equal weights). Each prompt's G completions are normalised
into advantages by TRL as usual, then the whole group's advantages are multiplied by a weight
phi that falls as the prompt gets easier (phi = exp(1 - mean IoU of the group) by default). The
weight is computed from the group's own IoU rewards on the tensor TRL gathers from every process,
so it is exact whatever the per-device batch, accumulation or process layout; the KL term is
left unweighted (see univg/train/grpo_trainer.py for the trainer subclass).

Entry points: `train_grpo` (the `grpo` stage), `build_grpo_args` (profile -> trl.GRPOConfig),
`difficulty_weights` (contract; defined in univg/train/weighting.py with the rest of the maths).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

from univg.config import GRPOProfile, Params
from univg.data.images import stage_policy
from univg.models.family import ModelFamily, PixelLimits, family_of, limits_of
from univg.models.loading import parameter_counts
from univg.schema import RecordError
from univg.train.common import (
    build_training_kwargs,
    checkpoint_step,
    input_fingerprint,
    is_main_process,
    load_for_training,
    lora_config,
    resume_checkpoint,
    save_final,
)
from univg.train.examples import TrainingRecords, build_examples, lazy_dataset, read_training_records
from univg.train.weighting import difficulty_weights  # noqa: F401  (the contract's documented home)

SUMMARY_FILE = "grpo_summary.json"


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
        multi_objective_aggregation="sum_then_normalize",  # reward = weighted sum, then normalise
        reward_weights=list(profile.rewards.values()),  # in the order of reward_functions(profile.rewards)
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
        vllm_tensor_parallel_size=profile.vllm_tensor_parallel_size,
        vllm_server_host=profile.vllm_server_host,
        vllm_server_port=profile.vllm_server_port,
        vllm_server_timeout=profile.vllm_server_timeout,
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
def load_prompts(records: TrainingRecords, answer_format: str, family: ModelFamily, limits: PixelLimits):
    """Records -> a datasets.Dataset of GRPO prompts (images opened per batch; box/target_image for rewards)."""
    if not records.records:
        raise RecordError(f"{records.path}: no records to train on")
    return lazy_dataset(build_examples(records, answer_format, with_completion=False, family=family, limits=limits))


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
    from univg.rewards import reward_functions
    from univg.tracking import flatten, log_jsonl_input, log_model_checkpoint, stage_run
    from univg.train.callbacks import MlflowMetricsCallback
    from univg.train.grpo_trainer import DifficultyReportCallback, DifficultyWeightedGRPOTrainer

    profile, answer_format = params.grpo.active, params.cot.answer_format
    train_file, out_dir = Path(train_file), Path(out_dir)
    if not train_file.is_file():
        raise FileNotFoundError(f"GRPO training file not found: {train_file}")
    run_params = {"profile": params.grpo.profile, "resume": params.grpo.resume, "init_model": str(init_model),
                  "train_file": str(train_file), "answer_format": answer_format,
                  "max_steps_override": max_steps, **profile.model_dump(mode="json")}

    # Under a multi-process launch only rank 0 tracks: one MLflow run per stage, not one per GPU.
    tracking = is_main_process()
    with stage_run("grpo", params, log_params=run_params) if tracking else contextlib.nullcontext():
        import mlflow

        # --- read data (strictly first: a bad line stops here with file:line, before anything is logged)
        records = read_training_records(train_file, image_root, policy=stage_policy(train_file, image_root, params.data))
        if tracking:
            log_jsonl_input(train_file, name="grpo-train", context="training")

        # --- load model (after the arguments: under ZeRO-3 they must exist before from_pretrained)
        args = build_grpo_args(profile, out_dir, max_steps)
        model, processor = load_for_training(init_model, profile)

        # --- prompts; box / target_image feed the rewards, box in the model family's convention
        family = family_of(model, params.model.family)
        dataset = load_prompts(records, answer_format, family, limits_of(processor, family))

        # --- decide where to start
        fingerprint = input_fingerprint(train_file, str(init_model), profile, answer_format, family.name)
        resume_from = resume_checkpoint(out_dir, params.grpo.resume, fingerprint)

        # --- build trainer
        report = DifficultyReportCallback(sample_every_steps=profile.sample_every_steps)
        trainer = DifficultyWeightedGRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=reward_functions(list(profile.rewards), answer_format),
            args=args,
            train_dataset=dataset,
            peft_config=lora_config(profile) if profile.use_lora else None,
            callbacks=[MlflowMetricsCallback(), report],
            weighting=profile.weighting,
            weighting_k=profile.weighting_k,
        )
        report.trainer = trainer
        per_step = prompts_per_step(profile, trainer.accelerator.num_processes)
        if tracking:
            mlflow.log_params({"prompts_per_step": per_step, "num_records": len(dataset),
                               "processes": trainer.accelerator.num_processes,
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
            "family": family.name,
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
        summary["model_uri"] = log_model_checkpoint(final, name="model") if tracking else None
        if tracking:
            mlflow.log_dict(summary, "grpo_summary.json")
            (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
            numbers = {f"summary/{k}": v for k, v in flatten(summary).items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
            mlflow.log_metrics(_finite(numbers))
        return summary
