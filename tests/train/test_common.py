"""Shared training helpers: precision, vision freezing, LoRA targets, arguments, checkpoints, final save."""

from __future__ import annotations

import json
import random

import pytest
import torch

from univg.config import ModelConfig, SFTConfig
from univg.train.common import (
    FINAL_DIR,
    FINGERPRINT_FILE,
    TRAIN_INFO_FILE,
    build_training_kwargs,
    checkpoint_step,
    freeze_vision_tower,
    last_checkpoint,
    lora_config,
    resolve_bf16,
    resume_checkpoint,
    save_final,
    training_dtype,
    vision_modules,
)

SIZES = ModelConfig(
    vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=56 * 56, seed=0,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from univg.answers import format_completion, instruction_text
    from univg.models.tiny import build_tiny_model

    rng = random.Random(0)
    corpus = []
    for i in range(40):
        corpus.append(instruction_text(f"Find the red square in image {1 + i % 3}."))
        corpus.append(format_completion("The square is red.", [rng.randint(0, 400), 100, 700, 900], 1 + i % 3))
    out = tmp_path_factory.mktemp("common-tiny")
    build_tiny_model(SIZES, corpus, out)
    return out


def load(folder, trainable=True):
    from univg.models.loading import load_model_and_processor

    return load_model_and_processor(folder, trainable=trainable)


def fake_checkpoint(folder, step, complete=True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


# ----------------------------------------------------------------------------- precision
def test_bf16_auto_means_cuda_with_bf16_only():
    profile = SFTConfig().tiny_cpu
    expected = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert resolve_bf16(profile) is expected
    assert resolve_bf16(profile.model_copy(update={"bf16": True})) is True
    assert resolve_bf16(profile.model_copy(update={"bf16": False})) is False


def test_training_dtype_keeps_fp32_master_weights_unless_deepspeed_bf16():
    paper = SFTConfig().qwen2_vl_7b
    assert training_dtype(paper) == "bfloat16"
    assert training_dtype(paper.model_copy(update={"deepspeed": ""})) == "float32"
    assert training_dtype(SFTConfig().tiny_cpu) == "float32"


# ----------------------------------------------------------------------------- model surgery
def test_freeze_vision_tower_freezes_the_whole_tower_and_nothing_else(tiny_dir):
    model, _ = load(tiny_dir)
    counts = freeze_vision_tower(model)
    visual = model.model.visual
    assert [name for name, _ in vision_modules(model)] == ["model.visual"]
    assert all(not p.requires_grad for p in visual.parameters())
    assert all(not p.requires_grad for p in visual.merger.parameters())
    language = [p for n, p in model.named_parameters() if "visual" not in n]
    assert language and all(p.requires_grad for p in language)
    assert counts["vision_frozen"] == sum(p.numel() for p in visual.parameters())
    assert counts["frozen"] == counts["vision_frozen"]
    assert counts["trainable"] == sum(p.numel() for p in language)


def test_freeze_vision_tower_refuses_a_model_without_one():
    with pytest.raises(ValueError, match="no vision tower"):
        freeze_vision_tower(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_lora_adapts_language_projections_only(tiny_dir):
    from peft import get_peft_model

    model, _ = load(tiny_dir)
    profile = SFTConfig().tiny_cpu.model_copy(update={"use_lora": True, "lora_r": 4, "lora_alpha": 8})
    config = lora_config(profile)
    assert (config.r, config.lora_alpha, config.task_type) == (4, 8, "CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A" in n}
    leaves = {n.rsplit(".", 1)[-1] for n in adapted}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all("language_model" in n and "visual" not in n for n in adapted)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


# ----------------------------------------------------------------------------- arguments
def test_training_kwargs_carry_the_profile_and_route_metrics_to_our_callback(tmp_path):
    profile = SFTConfig().tiny_cpu
    kwargs = build_training_kwargs(profile, tmp_path)
    assert kwargs["output_dir"] == str(tmp_path)
    assert kwargs["learning_rate"] == profile.learning_rate
    assert kwargs["lr_scheduler_type"] == "cosine"
    assert kwargs["warmup_steps"] == pytest.approx(0.05)  # a ratio, as transformers 5 reads floats < 1
    assert kwargs["max_steps"] == -1 and kwargs["num_train_epochs"] == profile.num_train_epochs
    assert kwargs["report_to"] == "none"
    assert kwargs["remove_unused_columns"] is False
    assert kwargs["save_steps"] == profile.save_steps and kwargs["save_strategy"] == "steps"
    assert kwargs["bf16"] is resolve_bf16(profile)
    assert kwargs["activation_checkpointing"] is False
    assert kwargs["deepspeed"] is None
    assert build_training_kwargs(profile, tmp_path, max_steps=7)["max_steps"] == 7


def test_training_kwargs_build_real_training_arguments(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(**build_training_kwargs(SFTConfig().tiny_cpu, tmp_path, max_steps=3))
    assert args.report_to == [] and args.max_steps == 3 and args.gradient_checkpointing is False


# ----------------------------------------------------------------------------- checkpoints
def test_last_checkpoint_is_numeric_newest_and_complete(tmp_path):
    assert last_checkpoint(tmp_path / "missing") is None
    assert last_checkpoint(tmp_path) is None
    fake_checkpoint(tmp_path, 9)
    newest = fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 12, complete=False)  # a crash in the middle of a save
    (tmp_path / "checkpoint-notes").mkdir()
    assert last_checkpoint(tmp_path) == newest
    assert checkpoint_step(newest) == 10


def test_resume_auto_continues_only_with_the_same_inputs(tmp_path):
    fingerprint = {"train_file_md5": "abc", "base_model": "m"}
    assert resume_checkpoint(tmp_path, "auto", fingerprint) is None  # first run: nothing to resume
    assert json.loads((tmp_path / FINGERPRINT_FILE).read_text()) == fingerprint
    newest = fake_checkpoint(tmp_path, 4)
    assert resume_checkpoint(tmp_path, "auto", fingerprint) == newest

    changed = {**fingerprint, "train_file_md5": "def"}
    assert resume_checkpoint(tmp_path, "auto", changed) is None
    assert not newest.exists()  # stale checkpoints must not be rotated in later
    assert json.loads((tmp_path / FINGERPRINT_FILE).read_text()) == changed


def test_resume_never_starts_fresh(tmp_path):
    fingerprint = {"train_file_md5": "abc"}
    resume_checkpoint(tmp_path, "auto", fingerprint)
    old = fake_checkpoint(tmp_path, 2)
    assert resume_checkpoint(tmp_path, "never", fingerprint) is None
    assert not old.exists()
    with pytest.raises(ValueError, match="resume"):
        resume_checkpoint(tmp_path, "sometimes", fingerprint)


# ----------------------------------------------------------------------------- final model
def _logits(model, processor):
    inputs = processor.tokenizer(["<think>The square is red.</think>"], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def test_save_final_merges_lora_into_a_plain_loadable_checkpoint(tiny_dir, tmp_path):
    from peft import get_peft_model

    model, processor = load(tiny_dir)
    profile = SFTConfig().tiny_cpu.model_copy(update={"use_lora": True, "lora_r": 4})
    peft_model = get_peft_model(model, lora_config(profile))
    with torch.no_grad():  # LoRA B starts at zero: make the adapter change the outputs
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.eval()
    expected = _logits(peft_model, processor)

    final = save_final(peft_model, processor, tmp_path, info={"stage": "test"})
    assert final == tmp_path / FINAL_DIR
    assert (final / "config.json").is_file() and not (final / "adapter_config.json").exists()
    info = json.loads((final / TRAIN_INFO_FILE).read_text())
    assert info == {"merged_lora": True, "stage": "test"}

    reloaded, reprocessor = load(final, trainable=False)
    assert torch.allclose(_logits(reloaded, reprocessor), expected, atol=1e-4)
    base, _ = load(tiny_dir, trainable=False)
    assert not torch.allclose(_logits(base, processor), expected, atol=1e-3)


def test_save_final_replaces_an_older_final_model(tiny_dir, tmp_path):
    model, processor = load(tiny_dir)
    stale = tmp_path / FINAL_DIR / "stale.bin"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    final = save_final(model, processor, tmp_path)
    assert not stale.exists()
    assert json.loads((final / TRAIN_INFO_FILE).read_text()) == {"merged_lora": False}
    reloaded, _ = load(final, trainable=False)
    assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- callbacks
def test_sample_panel_draws_prediction_red_and_truth_green():
    from PIL import Image

    from univg.train.callbacks import PRED_COLOR, TRUTH_COLOR, sample_panel

    example = {"id": "s1", "task": "diff", "target_image": 2, "box": [100, 100, 500, 500],
               "images": [Image.new("RGB", (56, 56), "black"), Image.new("RGB", (100, 100), "white")]}
    panel, score = sample_panel(example, "<think>x</think><answer>Image-2: (500,500),(900,900)</answer>")
    assert score == 0.0 and panel.size[0] == 300  # 3x the target image, not image 1
    assert panel.getpixel((30, 90)) == TRUTH_COLOR  # left edge of the truth box (x=100 -> 30 px)
    assert panel.getpixel((150, 200)) == PRED_COLOR  # left edge of the prediction (x=500 -> 150 px)
    empty, none_score = sample_panel(example, "no answer at all")
    assert none_score == 0.0 and PRED_COLOR not in {c for _, c in empty.getcolors(1 << 16)}


def test_metrics_callback_logs_numbers_into_the_active_run_only(mlflow_uri):
    import mlflow
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from univg.train.callbacks import MlflowMetricsCallback, numeric_logs

    assert numeric_logs({"loss": 1.5, "epoch": 2, "flag": True, "name": "x", "nan": float("nan")}) == {
        "loss": 1.5, "epoch": 2.0}
    callback, state = MlflowMetricsCallback(), TrainerState()
    state.global_step = 3
    args = TrainingArguments(output_dir="unused", report_to="none")
    callback.on_train_begin(args, state, TrainerControl())
    callback.on_log(args, state, TrainerControl(), logs={"loss": 2.0})  # no active run: nothing happens
    callback.on_train_end(args, state, TrainerControl())
    assert mlflow.active_run() is None and callback.sink is None
    with mlflow.start_run() as run:
        callback.on_train_begin(args, state, TrainerControl())
        callback.on_log(args, state, TrainerControl(), logs={"loss": 2.0, "grad_norm": 0.5})
        callback.on_train_end(args, state, TrainerControl())  # flushes the background sink
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(3, 2.0)]
