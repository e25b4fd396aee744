"""Helpers shared by the SFT and GRPO stages: precision, freezing, LoRA, arguments, checkpoints, saving.

Checkpoint layout of a training stage's `out_dir` (both stages):
  out_dir/checkpoint-N/      Trainer checkpoints every `save_steps` (weights, optimizer, scheduler,
                             RNG, trainer_state.json); `resume: auto` continues from the newest
                             complete one. DVC must keep them between runs (`persist: true`).
  out_dir/fingerprint.json   what the checkpoints were trained on (data, base model, adapter
                             shape); a mismatch means they belong to another run and are discarded.
  out_dir/final/             the finished model, a plain transformers checkpoint folder that loads
                             with the same loader as any base model. LoRA runs are MERGED into the
                             base weights here (one loader, vLLM-ready, no adapter bookkeeping in
                             eval/GRPO/serving); the unmerged adapter stays in the last checkpoint.
                             `final/univg_train.json` records the base model, stage, step and the
                             answer format it was trained to write (eval and serve ask in it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from univg.models.loading import TRAIN_INFO_FILE, parameter_counts
from univg.tracking import checkpoint_fingerprint

log = logging.getLogger(__name__)

FINAL_DIR = "final"
FINGERPRINT_FILE = "fingerprint.json"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")

# LoRA goes on the language model's linear layers only. Matching on the module path (not just the
# leaf name) matters: Qwen2.5-VL's vision blocks also have gate_proj/up_proj/down_proj.
LANGUAGE_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
VISION_MODULE_NAMES = ("visual", "vision_tower", "vision_model")

# Resume needs only the newest checkpoint; one older survives a crash in the middle of a save.
SAVE_TOTAL_LIMIT = 2


# ----------------------------------------------------------------------------- hardware
def resolve_bf16(profile: Any) -> bool:
    """`bf16: auto` means bf16 only on a CUDA device that supports it; true/false are taken as given."""
    if profile.bf16 != "auto":
        return bool(profile.bf16)
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate / deepspeed launch, or a plain single process."""
    return os.environ.get("RANK", "0") == "0"


def on_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# ----------------------------------------------------------------------------- model surgery
def vision_modules(model: Any) -> list[tuple[str, Any]]:
    """The top-most vision tower module(s) of a VLM (Qwen2-VL: `model.visual`, merger included)."""
    found: list[tuple[str, Any]] = []
    for name, module in model.named_modules():
        if name.split(".")[-1] in VISION_MODULE_NAMES and not any(name.startswith(f + ".") for f, _ in found):
            found.append((name, module))
    return found


def freeze_vision_tower(model: Any) -> dict[str, int]:
    """Freeze the vision tower (patch embedding, blocks and merger); returns parameter counts.

    Raises ValueError when the model has no recognisable vision tower, since then the profile's
    `freeze_vision: true` would silently do nothing.
    """
    towers = vision_modules(model)
    if not towers:
        raise ValueError(
            f"{type(model).__name__} has no vision tower named one of {VISION_MODULE_NAMES}: cannot freeze it"
        )
    frozen = 0
    for _, tower in towers:
        for param in tower.parameters():
            param.requires_grad_(False)
            frozen += param.numel()
    return {"vision_frozen": frozen, **parameter_counts(model)}


def lora_config(profile: Any):
    """PEFT LoRA on the language model's attention and MLP projections (the vision tower is never adapted)."""
    from peft import LoraConfig

    return LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        target_modules=LANGUAGE_LORA_TARGETS,
        bias="none",
        task_type="CAUSAL_LM",
    )


def training_dtype(profile: Any) -> str:
    """Weights dtype to load for training: fp32 master weights for plain mixed precision (CPU, one
    GPU); bf16 under DeepSpeed with bf16, which keeps its own fp32 master copy."""
    return "bfloat16" if profile.deepspeed and resolve_bf16(profile) else "float32"


# ----------------------------------------------------------------------------- arguments
def build_training_kwargs(profile: Any, out_dir: str | Path, max_steps: int | None = None) -> dict[str, Any]:
    """TrainingArguments keywords common to the SFT and GRPO configs (TRL subclasses TrainingArguments).

    Pure: reads no hardware except for `bf16: auto`, so a GPU profile can be checked on a laptop.
    Metrics go to the active MLflow run through our own callback (report_to none), never through
    HF's MLflowCallback, which would open and end runs of its own.
    """
    steps = profile.max_steps if max_steps is None else max_steps
    gpu = on_gpu()
    kwargs: dict[str, Any] = {
        "output_dir": str(out_dir),
        "learning_rate": profile.learning_rate,
        "lr_scheduler_type": profile.lr_scheduler_type,
        # transformers 5 reads a float in [0, 1) as a share of the total steps
        "warmup_steps": min(float(profile.warmup_ratio), 0.999999) if profile.warmup_ratio else 0,
        "num_train_epochs": profile.num_train_epochs,
        "max_steps": steps if steps and steps > 0 else -1,
        "per_device_train_batch_size": profile.per_device_train_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "weight_decay": profile.weight_decay,
        "max_grad_norm": profile.max_grad_norm,
        "save_strategy": "steps",
        "save_steps": profile.save_steps,
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "logging_strategy": "steps",
        "logging_steps": profile.logging_steps,
        "logging_first_step": True,
        "seed": profile.seed,
        "data_seed": profile.seed,
        "bf16": resolve_bf16(profile),
        "fp16": False,
        # transformers 5 renamed gradient_checkpointing (the old name still mirrors the new one)
        "activation_checkpointing": profile.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if profile.gradient_checkpointing else None,
        "deepspeed": profile.deepspeed or None,
        "report_to": "none",
        "remove_unused_columns": False,  # images and the record fields must reach the collator / rewards
        "dataloader_num_workers": 0 if not gpu else 2,
        "dataloader_pin_memory": gpu,
        "save_only_model": False,  # optimizer and scheduler state are needed to resume
    }
    return kwargs


# ----------------------------------------------------------------------------- checkpoints
def checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints (a trainer_state.json was written), oldest first."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def last_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `out_dir`, or None (a half-written one is skipped)."""
    found = checkpoints(out_dir)
    return found[-1] if found else None


def checkpoint_step(checkpoint: str | Path) -> int:
    match = CHECKPOINT_PATTERN.match(Path(checkpoint).name)
    if not match:
        raise ValueError(f"not a checkpoint folder: {checkpoint}")
    return int(match.group(1))


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# Profile fields that do not change what a checkpoint means: a run may resume across them (how
# long to train, bookkeeping intervals, and how generation or sharding is done).
RESUMABLE_ACROSS = frozenset({
    "max_steps", "num_train_epochs", "save_steps", "logging_steps", "sample_every_steps", "gradient_checkpointing",
    "deepspeed", "use_vllm", "vllm_mode", "vllm_gpu_memory_utilization",
})


def input_fingerprint(train_file: Path, init_model: str, profile: Any, answer_format: str,
                      family: str = "") -> dict[str, Any]:
    """What a stage's checkpoints depend on: resuming is only valid while all of this is unchanged.

    Everything in the profile counts except RESUMABLE_ACROSS (extending a run is a resume); a
    changed learning rate or batch size starts afresh. A local init model counts by content.
    """
    init = Path(init_model)
    if init.is_dir() and (init / "config.json").is_file():
        init_id = f"{init.resolve()}#{checkpoint_fingerprint(init)}"
    else:
        init_id = str(init_model)
    settings = {k: v for k, v in profile.model_dump(mode="json").items() if k not in RESUMABLE_ACROSS}
    return {"train_file_md5": file_md5(train_file), "init_model": init_id, "answer_format": answer_format,
            **({"family": family} if family else {}), **settings}  # the family decides how targets write boxes


def resume_checkpoint(out_dir: str | Path, resume: str, fingerprint: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from under `resume` ('auto' | 'never'), after checking it belongs here.

    Checkpoints persist across DVC runs, so the newest one may come from different data or a
    different base model; those are deleted (with the reason logged) and training starts fresh.
    'never' also clears old checkpoints, so that save_total_limit never rotates a fresh run's
    checkpoints out in favour of stale ones. The current fingerprint is written either way.
    """
    if resume not in ("auto", "never"):
        raise ValueError(f"resume must be 'auto' or 'never', got {resume!r}")
    from accelerate import PartialState

    state = PartialState()
    folder = Path(out_dir)
    # The main process decides and cleans up first; the others then read the settled folder.
    with state.main_process_first():
        stored_file = folder / FINGERPRINT_FILE
        stored = json.loads(stored_file.read_text()) if stored_file.is_file() else None
        found = last_checkpoint(folder)
        if found is not None and resume == "auto" and stored == fingerprint:
            return found
        if found is not None and resume == "auto":
            changed = sorted(k for k in {*fingerprint, *(stored or {})} if (stored or {}).get(k) != fingerprint.get(k))
            log.warning("discarding checkpoints in %s: trained on different inputs (%s)", folder, ", ".join(changed))
        if state.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            for child in folder.iterdir():
                if CHECKPOINT_PATTERN.match(child.name) and child.is_dir():
                    shutil.rmtree(child)
            stored_file.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    return None


# ----------------------------------------------------------------------------- final model
def save_final(
    trainer_or_model: Any, processor: Any, out_dir: str | Path, info: dict[str, Any] | None = None
) -> Path:
    """Write the finished model to `out_dir/final` as a plain, loadable checkpoint folder; returns it.

    A PEFT model is merged into its base weights first (see the module docstring). With a Trainer,
    only the main process writes, and Trainer.save_model gathers sharded (ZeRO-3) weights.
    """
    final = Path(out_dir) / FINAL_DIR
    trainer = trainer_or_model if hasattr(trainer_or_model, "save_model") else None
    model = trainer.model if trainer is not None else trainer_or_model
    is_main = trainer is None or trainer.args.should_save
    is_peft = hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")

    if is_main and final.exists():
        shutil.rmtree(final)  # never mix files of an older final model into this one
    if is_peft:
        merged = model.merge_and_unload()
        if is_main:
            merged.save_pretrained(final)
    elif trainer is not None:
        trainer.save_model(str(final))
    else:
        model.save_pretrained(final)
    if is_main:
        processor.save_pretrained(final)
        details = {"merged_lora": is_peft, **(info or {})}
        (final / TRAIN_INFO_FILE).write_text(json.dumps(details, indent=2, default=str) + "\n")
    return final


def load_for_training(model_ref: str, profile: Any) -> tuple[Any, Any]:
    """Load a model to train with the profile's dtype and pixel budget; freeze the vision tower if asked."""
    from univg.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(
        str(model_ref), dtype=training_dtype(profile), padding_side="left", trainable=True,
        max_pixels=profile.max_pixels,
    )
    if profile.freeze_vision and not profile.use_lora:  # PEFT freezes every base weight anyway
        freeze_vision_tower(model)
    return model, processor
