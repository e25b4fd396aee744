"""CoT SFT on the tiny model: completion-only labels, dropping (not truncating), learning, resume, MLflow model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import TrainerCallback

from univg.config import ModelConfig, parse_params
from univg.train.common import FINAL_DIR

SIZES = ModelConfig(
    vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=112 * 112, seed=0,
)
IMAGE_SIZES = ((56, 56), (84, 56), (112, 84))  # different sizes give different image token counts
COLOURS = ("red", "blue", "green", "yellow")


def write_records(folder: Path, count: int = 6, long_every: int = 0) -> Path:
    """`count` two-image records; every `long_every`-th has a much longer chain (for the cutoff)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        target, colour = 1 + index % 2, COLOURS[index % len(COLOURS)]
        box = [100 + 50 * (index % 4), 200, 500 + 50 * (index % 4), 700]
        paths = []
        for number in (1, 2):
            width, height = IMAGE_SIZES[(index + number) % len(IMAGE_SIZES)]
            image = Image.new("RGB", (width, height), "white")
            if number == target:
                x1, y1, x2, y2 = box[0] * width // 1000, box[1] * height // 1000, box[2] * width // 1000, box[3] * height // 1000
                ImageDraw.Draw(image).rectangle([x1, y1, x2, y2], fill=colour)
            rel = f"images/r{index}_{number}.png"
            image.save(folder / rel)
            paths.append(rel)
        cot = f"The {colour} square is in image {target}."
        if long_every and index % long_every == long_every - 1:
            cot = " ".join([cot] * 12)
        rows.append({"id": f"r{index}", "task": "common_object", "images": paths, "question": f"Find the {colour} square.",
                     "target_image": target, "box": box, "source": "test", "cot": cot})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    return write_records(tmp_path_factory.mktemp("sft-data"), count=6, long_every=3)


@pytest.fixture(scope="module")
def sft_base(tmp_path_factory, sft_data) -> Path:
    from univg.models.tiny import build_tiny_model, corpus_from_records

    out = tmp_path_factory.mktemp("sft-base")
    build_tiny_model(SIZES, corpus_from_records([sft_data]), out)
    return out


@pytest.fixture(scope="module")
def examples(sft_data):
    from univg.train.examples import load_examples

    return load_examples(sft_data)


@pytest.fixture(scope="module")
def processor(sft_base):
    from univg.models.loading import load_model_and_processor

    return load_model_and_processor(sft_base)[1]


def sft_params(**profile):
    """Params with the tiny-cpu profile shrunk to a few fast steps (overrides win)."""
    settings = {"per_device_train_batch_size": 6, "learning_rate": 5e-3, "warmup_ratio": 0.0,
                "lr_scheduler_type": "constant", "logging_steps": 1, "save_steps": 100, "max_length": 1024,
                "sample_every_steps": 0, **profile}
    return parse_params({}, {f"sft.tiny-cpu.{key}": value for key, value in settings.items()})


def collate(processor, examples):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    return collator([dict(example) for example in examples])


def batch_loss(model_dir: Path, batch) -> float:
    from univg.models.loading import load_model_and_processor

    model, _ = load_model_and_processor(model_dir)  # eval mode
    with torch.no_grad():
        return float(model(**batch).loss)


# ----------------------------------------------------------------------------- data path
def test_labels_cover_only_the_completion(processor, examples):
    batch = collate(processor, examples[:3])
    tokenizer = processor.tokenizer
    image_token = processor.image_token_id
    for row, example in enumerate(examples[:3]):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        assert (labels[ids == image_token] == -100).all()
        learned = tokenizer.decode(labels[labels != -100])
        completion = example["completion"][0]["content"][0]["text"]
        assert learned.startswith(completion) and learned.removeprefix(completion).strip() == "<|im_end|>"
        prompt_part = ids[: int((labels != -100).nonzero()[0])]
        assert "Find the" in tokenizer.decode(prompt_part)  # the question is before the first label
    assert batch["pixel_values"].shape[0] > 0


def test_fast_lengths_match_the_collator(processor, examples):
    from univg.train.sft import _fast_lengths, sequence_lengths

    exact = [int(collate(processor, [example])["input_ids"].shape[1]) for example in examples]
    assert _fast_lengths(examples, processor) == exact
    assert sequence_lengths(examples, processor) == exact
    assert len(set(exact)) > 1


def test_drop_overlong_drops_whole_samples(processor, examples):
    from univg.train.sft import drop_overlong, sequence_lengths

    lengths = sequence_lengths(examples, processor)
    cutoff = sorted(lengths)[-3]  # the two longest (the long chains) go
    kept, dropped = drop_overlong(examples, processor, cutoff)
    assert [d["id"] for d in dropped] == [e["id"] for e, n in zip(examples, lengths, strict=True) if n > cutoff]
    assert len(dropped) == 2 and len(kept) == 4
    assert all(d["length"] > cutoff and "exceeds max_length" in d["reason"] for d in dropped)
    # untouched, not cut; each carries its length for the length-grouped sampler
    assert kept == [{**e, "length": n} for e, n in zip(examples, lengths, strict=True) if n <= cutoff]


def test_group_by_length_reaches_the_trainer_with_the_lengths_it_sorts_by():
    from univg.config import SFTProfile
    from univg.train.sft import LENGTH_KEY, sft_arguments

    grouped = sft_arguments(SFTProfile(learning_rate=1e-3, group_by_length=True), "out")
    assert grouped["train_sampling_strategy"] == "group_by_length" and grouped["length_column_name"] == LENGTH_KEY
    assert sft_arguments(SFTProfile(learning_rate=1e-3), "out")["train_sampling_strategy"] == "random"


# ----------------------------------------------------------------------------- training
def test_sft_lowers_the_loss_and_logs_a_loadable_model(sft_data, sft_base, processor, examples, tmp_path, mlflow_uri):
    import mlflow

    from univg.models.generation import generate_texts
    from univg.models.loading import load_model_and_processor
    from univg.train.sft import train_sft

    batch = collate(processor, examples)
    before = batch_loss(sft_base, batch)
    summary = train_sft(sft_params(sample_every_steps=3), sft_data, str(sft_base), tmp_path / "sft", max_steps=6)

    assert summary["global_step"] == 6 and summary["steps_this_run"] == 6 and summary["resumed_from"] is None
    after = batch_loss(Path(summary["final_dir"]), batch)
    assert after < before - 0.3, (before, after)
    assert summary["train_loss_last"] < summary["train_loss_first"]
    assert summary["samples_per_second"] > 0 and summary["dropped_too_long"] == 0

    run = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string="tags.`univg.stage` = 'sft'")[0]
    client = mlflow.MlflowClient()
    for metric in ("loss", "learning_rate", "grad_norm"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2, 3, 4, 5, 6]
    assert run.data.params["learning_rate"] == "0.005" and run.data.params["profile"] == "tiny-cpu"
    drawn = [f.path for f in client.list_artifacts(run.info.run_id, "samples/step_000006")]
    assert "samples/step_000006/r0.png" in drawn and "samples/step_000006/completions.json" in drawn

    model, loaded_processor = load_model_and_processor(summary["model_uri"])
    texts = generate_texts(model, loaded_processor, [examples[0]["prompt"]], [examples[0]["images"]], max_new_tokens=8)
    assert len(texts) == 1 and isinstance(texts[0], str) and texts[0]


class CrashAt(TrainerCallback):
    """Simulates a crash (OOM, preemption) right after optimizer step `step`, before its checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def test_resume_continues_from_the_newest_checkpoint(sft_data, sft_base, tmp_path, mlflow_uri):
    from univg.train.sft import train_sft

    out = tmp_path / "sft"
    params = sft_params(save_steps=1, per_device_train_batch_size=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(params, sft_data, str(sft_base), out, max_steps=4, callbacks=[CrashAt(3)])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert not (out / FINAL_DIR).exists()

    summary = train_sft(params, sft_data, str(sft_base), out, max_steps=4)
    assert summary["resumed_from"] == str(out / "checkpoint-2")
    assert summary["global_step"] == 4 and summary["steps_this_run"] == 2
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    assert (out / FINAL_DIR / "config.json").is_file()

    longer = train_sft(params, sft_data, str(sft_base), out, max_steps=6)  # extending a run is a resume too
    assert longer["resumed_from"] == str(out / "checkpoint-4")
    assert (longer["global_step"], longer["steps_this_run"]) == (6, 2)


def test_lora_run_drops_overlong_samples_and_saves_a_merged_model(sft_data, sft_base, processor, examples, tmp_path, mlflow_uri):
    from univg.train.sft import sequence_lengths, train_sft

    cutoff = sorted(sequence_lengths(examples, processor))[-3]
    params = sft_params(use_lora=True, lora_r=4, lora_alpha=8, max_length=cutoff, per_device_train_batch_size=2)
    out = tmp_path / "sft"
    summary = train_sft(params, sft_data, str(sft_base), out, max_steps=2)
    assert (summary["kept"], summary["dropped_too_long"]) == (4, 2)
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert {row["id"] for row in dropped} == {"r2", "r5"}
    final = out / FINAL_DIR
    assert (final / "config.json").is_file() and not (final / "adapter_config.json").exists()
    assert json.loads((final / "univg_train.json").read_text())["merged_lora"] is True
    assert (out / "checkpoint-2" / "adapter_config.json").is_file()  # the unmerged adapter is kept


def test_missing_training_file_is_named(sft_base, tmp_path, mlflow_uri):
    from univg.train.sft import train_sft

    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        train_sft(sft_params(), tmp_path / "nothing.jsonl", str(sft_base), tmp_path / "sft")


# ----------------------------------------------------------------------------- profiles
def test_tiny_profile_trains_in_fp32_on_cpu(tmp_path):
    from univg.train.sft import build_sft_args

    args = build_sft_args(sft_params().sft.active, tmp_path)
    if not torch.cuda.is_available():
        assert args.bf16 is False
    assert args.gradient_checkpointing is False and args.deepspeed is None
    assert args.completion_only_loss is True and args.max_length is None  # dropped, never truncated


def test_paper_profile_arguments_without_a_gpu(tmp_path):
    from univg.train.common import lora_config
    from univg.train.sft import build_sft_args, global_batch_size, sft_arguments

    params = parse_params({}, {"sft.profile": "qwen2-vl-7b"})
    profile = params.sft.active
    kwargs = sft_arguments(profile, tmp_path)
    assert kwargs["deepspeed"] == "infra/accelerate/zero3.json"
    assert kwargs["bf16"] is True and kwargs["activation_checkpointing"] is True
    assert profile.max_pixels == 401408 == 512 * 28 * 28
    assert profile.max_length == 6000 and profile.freeze_vision and not profile.use_lora

    args = build_sft_args(profile, tmp_path, dry_run=True)
    assert args.learning_rate == 5e-6
    assert args.lr_scheduler_type.value == "cosine"
    assert args.warmup_steps == pytest.approx(0.015)
    assert args.num_train_epochs == 1 and args.max_steps == -1
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 1)
    assert global_batch_size(profile, num_processes=8) == 24
    assert args.bf16 is True and args.gradient_checkpointing is True
    assert args.completion_only_loss is True and args.max_length is None and args.packing is False
    assert args.report_to == [] and args.remove_unused_columns is False

    lora = lora_config(profile.model_copy(update={"use_lora": True}))
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.05)
    assert "language_model" in lora.target_modules


def test_content_free_chains_are_refused_unless_the_user_opts_in(tmp_path, sft_base, mlflow_uri):
    """Imported rows with no scene get the rule teacher's 'the answer is in image k': SFT must not
    quietly train on them (the cot stage flags them with meta.cot.scene = false)."""
    from univg.schema import RecordError
    from univg.train.examples import read_training_records
    from univg.train.sft import refuse_generic_chains, train_sft

    data = write_records(tmp_path / "data", count=3)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[1]["meta"] = {"cot": {"teacher": "rule", "scene": False}}
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(RecordError, match=r"1 of 3 records carry the rule teacher's content-free chain.*'r1'"):
        train_sft(sft_params(), data, str(sft_base), tmp_path / "sft", max_steps=1)
    refuse_generic_chains(read_training_records(data), allowed=True)  # -S sft.allow_generic_cot=true
