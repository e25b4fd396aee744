"""The CoT SFT stage (cold start): TRL SFTTrainer on validated chains of thought.

Each record becomes a conversational prompt/completion example (images first, then the question
and instruction; completion `<think>chain</think><answer>...</answer>`), so TRL's vision collator
masks the prompt and image tokens out of the labels and the loss falls on the completion only.

Samples longer than the profile's `max_length` are DROPPED before training (listed with their
lengths in `out_dir/dropped.jsonl` and counted in MLflow), never truncated: truncation cuts
image tokens or the answer, and the former fails with "image features and image tokens do not
match". The collator is therefore given no max_length at all.

Checkpoint layout and the saved final model: see univg.train.common.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from univg.config import Params
from univg.data.images import stage_policy
from univg.models.family import family_of, limits_of
from univg.schema import RecordError
from univg.train.common import (
    build_training_kwargs,
    checkpoint_step,
    input_fingerprint,
    is_main_process,
    load_for_training,
    lora_config,
    parameter_counts,
    resume_checkpoint,
    save_final,
)
from univg.train.examples import (
    TrainingRecords,
    build_examples,
    lazy_dataset,
    open_example,
    read_training_records,
)

SAMPLE_EXAMPLES = 4  # drawn every `sample_every_steps`: a handful is enough to see the trend
DROPPED_FILE = "dropped.jsonl"
SUMMARY_FILE = "summary.json"
LENGTH_KEY = "length"  # an example's token length, images included (the length-grouped sampler reads it)
SUMMARY_METRICS = ("samples_per_second", "train_seconds", "steps_this_run", "train_loss_first", "train_loss_last")


# ----------------------------------------------------------------------------- arguments
def sft_arguments(profile: Any, out_dir: str | Path, max_steps: int | None = None) -> dict[str, Any]:
    """trl.SFTConfig keywords for a profile (pure: inspectable without building the config)."""
    kwargs = build_training_kwargs(profile, out_dir, max_steps)
    kwargs.update(
        max_length=None,  # overlong samples are dropped beforehand: the collator must never truncate
        completion_only_loss=True,
        assistant_only_loss=False,
        packing=False,  # TRL supports neither packing nor padding-free for vision data
        padding_free=False,
        loss_type="nll",
        dataset_kwargs={"skip_prepare_dataset": True},
        # reads each example's "length", set by drop_overlong
        train_sampling_strategy="group_by_length" if profile.group_by_length else "random",
        length_column_name=LENGTH_KEY,
    )
    return kwargs


def build_sft_args(profile: Any, out_dir: str | Path, max_steps: int | None = None, dry_run: bool = False):
    """The trl.SFTConfig of a profile.

    `dry_run` builds it on a machine without the profile's hardware (a GPU profile on a laptop):
    the hardware-bound settings (DeepSpeed, which needs the deepspeed package, and the CUDA check
    behind bf16) are lifted so everything else is validated; read them from `sft_arguments`.
    """
    from trl import SFTConfig

    kwargs = sft_arguments(profile, out_dir, max_steps)
    if dry_run:
        kwargs.update(deepspeed=None, use_cpu=True)
    return SFTConfig(**kwargs)


def global_batch_size(profile: Any, num_processes: int) -> int:
    """Samples per optimizer step: per-device batch x accumulation x processes (paper: 3 x 1 x 8 = 24)."""
    return profile.per_device_train_batch_size * profile.gradient_accumulation_steps * num_processes


# ----------------------------------------------------------------------------- data
def sequence_lengths(examples: Sequence[dict[str, Any]], processor: Any) -> list[int]:
    """Token length of each example exactly as TRL's vision collator will build it.

    Fast path: chat-templated prompt and completion tokenized as text, each image placeholder
    counted as the number of tokens its size gives (no pixel processing). It is checked against
    the real collator on the first example; any processor where the two disagree gets the slow,
    exact path (the collator on every example).
    """
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)

    def exact(example: dict[str, Any]) -> int:
        return int(collator([open_example(example)])["input_ids"].shape[1])

    if not examples:
        return []
    try:
        fast = _fast_lengths(examples, processor)
    except (AttributeError, KeyError, TypeError, ValueError):
        fast = None
    if fast is not None and fast[0] == exact(examples[0]):
        return fast
    return [exact(example) for example in examples]


def _fast_lengths(examples: Sequence[dict[str, Any]], processor: Any) -> list[int]:
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    tokenizer = processor.tokenizer
    texts = []
    for example in examples:
        conversation = {
            "prompt": prepare_multimodal_messages(example["prompt"], images=example["images"]),
            "completion": prepare_multimodal_messages(example["completion"]),
        }
        texts.append(apply_chat_template(conversation, processor))
    prompt_ids = tokenizer([t["prompt"] for t in texts], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer([t["completion"] for t in texts], add_special_tokens=False)["input_ids"]
    lengths = []
    for example, prompt, completion in zip(examples, prompt_ids, completion_ids, strict=True):
        sizes = [(height, width) for width, height in example["image_sizes"]]
        image_tokens = processor._get_num_multimodal_tokens(image_sizes=sizes)["num_image_tokens"]
        # the template writes one placeholder token per image; the processor expands it
        lengths.append(len(prompt) + len(completion) + sum(n - 1 for n in image_tokens))
    return lengths


def drop_overlong(
    examples: list[dict[str, Any]], processor: Any, max_length: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept examples, each with its token length under LENGTH_KEY; dropped rows {id, task, length, max_length,
    reason}) for a token cutoff."""
    lengths = sequence_lengths(examples, processor)
    kept, dropped = [], []
    for example, length in zip(examples, lengths, strict=True):
        if length <= max_length:
            kept.append({**example, LENGTH_KEY: length})
        else:
            reason = f"sequence of {length} tokens (images included) exceeds max_length {max_length}"
            dropped.append({"id": example["id"], "task": example["task"], "length": length,
                            "max_length": max_length, "reason": reason})
    return kept, dropped


def refuse_generic_chains(records: TrainingRecords, allowed: bool) -> None:
    """Stop before training on chains that say nothing: the rule teacher's fallback for rows without a
    scene (imported real data) only names the answer, and SFT on it teaches the format, not reasoning."""
    generic = [r["id"] for r in records.records if ((r.get("meta") or {}).get("cot") or {}).get("scene") is False]
    if generic and not allowed:
        raise RecordError(
            f"{records.path}: {len(generic)} of {len(records.records)} records carry the rule teacher's content-free "
            f"chain (meta.cot.scene = false; first: {generic[0]!r}). Generate chains with a real teacher "
            "(-S cot.teacher=openai), import the release's CoT file, or train on them anyway with "
            "-S sft.allow_generic_cot=true"
        )


# ----------------------------------------------------------------------------- the stage
def train_sft(
    params: Params,
    train_file: Path,
    base_model: str,
    out_dir: Path,
    image_root: Path | None = None,
    max_steps: int | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Run CoT SFT with the active profile of `params.sft`; returns the run summary.

    `max_steps` overrides the profile's (smoke runs, tests). `callbacks` are extra
    transformers TrainerCallbacks. Resume follows `params.sft.resume`. The summary holds steps,
    first/last train loss, samples/s, kept/dropped counts, the final folder and the MLflow model URI.
    """
    from trl import SFTTrainer

    from univg.tracking import log_jsonl_input, log_model_checkpoint, stage_run
    from univg.train.callbacks import MlflowMetricsCallback, SampleGenerationCallback

    profile = params.sft.active
    answer_format = params.cot.answer_format
    train_file, out_dir = Path(train_file), Path(out_dir)
    if not train_file.is_file():
        raise FileNotFoundError(f"SFT training file not found: {train_file}")
    run_params = {"profile": params.sft.profile, "resume": params.sft.resume, "base_model": str(base_model),
                  "train_file": str(train_file), "answer_format": answer_format,
                  "max_steps_override": max_steps, **profile.model_dump(mode="json")}

    # Under a multi-process launch only rank 0 tracks: one MLflow run per stage, not one per GPU.
    tracking = is_main_process()
    with stage_run("sft", params, log_params=run_params) if tracking else contextlib.nullcontext():
        import mlflow

        # --- read data (strictly first: a bad line stops here with file:line, before anything is logged)
        records = read_training_records(train_file, image_root, policy=stage_policy(train_file, image_root, params.data))
        refuse_generic_chains(records, params.sft.allow_generic_cot)
        if tracking:
            log_jsonl_input(train_file, name="sft-train", context="training")

        # --- load model (after the arguments: under ZeRO-3 they must exist before from_pretrained)
        args = build_sft_args(profile, out_dir, max_steps)
        model, processor = load_for_training(base_model, profile)

        # --- examples: targets in the model family's box convention, images opened per batch
        family = family_of(model, params.model.family)
        examples = build_examples(records, answer_format, family=family, limits=limits_of(processor, family))

        # --- drop samples over the token cutoff (never truncate)
        kept, dropped = drop_overlong(examples, processor, profile.max_length)
        if tracking:
            _write_dropped(out_dir, dropped)
            mlflow.log_metrics({"data/examples": len(examples), "data/kept": len(kept), "data/dropped_too_long": len(dropped)})
        if not kept:
            raise ValueError(
                f"{train_file}: all {len(examples)} samples exceed max_length {profile.max_length}; "
                f"see {out_dir / DROPPED_FILE}"
            )

        # --- decide where to start
        fingerprint = input_fingerprint(train_file, str(base_model), profile, answer_format, family.name)
        resume_from = resume_checkpoint(out_dir, params.sft.resume, fingerprint)

        # --- build trainer
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=lazy_dataset(kept),
            processing_class=processor,
            peft_config=lora_config(profile) if profile.use_lora else None,
            callbacks=[
                MlflowMetricsCallback(),
                SampleGenerationCallback([open_example(e) for e in kept[:SAMPLE_EXAMPLES]], processor, profile.sample_every_steps),
                *(callbacks or []),
            ],
        )
        if tracking:
            mlflow.log_params({f"parameters.{k}": v for k, v in parameter_counts(trainer.model).items()})

        # --- train
        start_step = checkpoint_step(resume_from) if resume_from else 0
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_seconds = time.perf_counter() - started

        # --- save
        final = save_final(trainer, processor, out_dir, info={
            "stage": "sft", "base_model": str(base_model), "global_step": trainer.state.global_step,
            "answer_format": answer_format, "profile": params.sft.profile, "family": family.name,
        })

        # --- log
        summary = _summary(trainer, start_step, train_seconds, len(examples), len(kept), len(dropped), final)
        summary["resumed_from"] = str(resume_from) if resume_from else None
        summary["model_uri"] = None
        if tracking:
            summary["model_uri"] = log_model_checkpoint(final, name="model")
            mlflow.log_metrics({f"sft/{k}": summary[k] for k in SUMMARY_METRICS if summary[k] is not None})
            mlflow.log_dict(summary, "sft_summary.json")
            (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _summary(trainer, start_step: int, seconds: float, total: int, kept: int, dropped: int, final: Path) -> dict:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    steps_run = trainer.state.global_step - start_step
    return {
        "global_step": trainer.state.global_step,
        "steps_this_run": steps_run,
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        # a final partial batch is counted as full: close enough for a throughput figure
        "samples_per_second": round(steps_run * per_step / seconds, 3) if seconds > 0 else None,
        "train_seconds": round(seconds, 3),
        "examples": total,
        "kept": kept,
        "dropped_too_long": dropped,
        "final_dir": str(final),
    }


def _write_dropped(out_dir: Path, dropped: list[dict[str, Any]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / DROPPED_FILE, "w") as handle:
        for row in dropped:
            handle.write(json.dumps(row) + "\n")
