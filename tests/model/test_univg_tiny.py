"""univg-tiny: the recipe runs real steps, its data never touches mig-synth val/test, and the
base_model stage copies a shipped checkpoint only when its weights match the recorded sha256."""

from __future__ import annotations

import hashlib
import json
import random
from typing import get_args

import numpy as np
import pytest

from tests.model.conftest import TEST_SIZES
from univg.config import DataConfig, Params, RecallTask, parse_params
from univg.models import univg_tiny
from univg.models.recall import RECALL_TASKS

SMALL = {f"model.{key}": value for key, value in TEST_SIZES.items()} | {
    "pretrain.image_batch_size": 2, "pretrain.text_batch_size": 2, "pretrain.log_every": 1,
    "pretrain.eval_every": 1, "pretrain.gate_examples": 10,
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("univg-tiny") / "univg-tiny"
    return out, univg_tiny.pretrain(parse_params({}, SMALL), out, steps=2, progress=False)


def test_recipe_runs_real_steps_and_writes_a_card_with_its_hash(release):
    out, record = release
    assert record["steps"] == 2 and len(json.loads((out / "pretrain_history.json").read_text())) == 2
    assert record["sha256"] == hashlib.sha256((out / univg_tiny.WEIGHTS_FILE).read_bytes()).hexdigest()
    assert set(univg_tiny.GATES) <= set(record["gates"]) and record["gates_passed"]["recall_ar"] is False
    card = (out / univg_tiny.CARD_FILE).read_text()
    assert record["sha256"] in card and "dvc repro pretrain/dvc.yaml" in card
    assert json.loads((out / univg_tiny.RELEASE_FILE).read_text())["sha256"] == record["sha256"]


def test_tokenizer_corpus_is_fixed_and_holds_no_chain_of_thought():
    """The tokenizer (so the init) must not move when a teacher's wording does: its corpus takes no
    cot params at all, is the same on every call, and holds no SFT target."""
    corpus = list(univg_tiny.tokenizer_corpus(0, 112, 1.0, examples=40))
    assert corpus == list(univg_tiny.tokenizer_corpus(0, 112, 1.0, examples=40))
    assert not [text for text in corpus if "</think><answer>" in text]


def _image_hashes(images) -> set[str]:
    return {hashlib.sha256(np.asarray(image).tobytes()).hexdigest() for image in images}


def test_pretraining_scenes_are_never_mig_synth_val_or_test_scenes(tmp_path):
    """Checked, not assumed: no image drawn for pre-training (or its gates) equals an image of the
    default mig-synth val/test splits, pixel for pixel."""
    from PIL import Image

    from univg.data.synth import generate_split

    cfg = DataConfig()
    held = set()
    for split in ("val", "test"):
        records = generate_split(cfg, split, tmp_path, progress=False)
        held |= _image_hashes(Image.open(tmp_path / path).convert("RGB") for r in records for path in r["images"])
    drawn = []
    for task in univg_tiny.IMAGE_TASKS:
        for index in range(60):
            for split in (univg_tiny.TRAIN_SPLIT, univg_tiny.HELD_OUT_SPLIT):
                drawn += univg_tiny.image_example(0, index, task, cfg.image_size, cfg.position_cue, split)["images"]
    assert len(held) > 500 and len(drawn) > 500
    assert not _image_hashes(drawn) & held


def test_no_image_task_is_a_multi_image_reasoning_question():
    """Several images appear only when the question names the image it is about."""
    for task in univg_tiny.IMAGE_TASKS:
        for index in range(30):
            example = univg_tiny.image_example(0, index, task, 112, 1.0)
            question = example["prompt"][0]["content"][-1]["text"]
            if len(example["images"]) > 1 and task != "describe_all":
                assert f"image {example['image_index']}" in question


def test_recall_tasks_match_the_config_names():
    assert tuple(RECALL_TASKS) == get_args(RecallTask)
    prompt, answer = RECALL_TASKS["ar"](random.Random(0))
    assert prompt.startswith("Pairs:") and answer.strip() in prompt


def test_base_model_stage_copies_a_shipped_checkpoint_after_checking_its_hash(release, tmp_path, monkeypatch):
    from univg.models import loading, stage

    shipped, record = release
    monkeypatch.setitem(loading.SHIPPED_MODELS, "univg-tiny", shipped)
    info = stage.copy_shipped("univg-tiny", tmp_path / "base")
    assert info["sha256"] == record["sha256"] and (tmp_path / "base" / "config.json").is_file()
    assert loading.resolve_model_path("univg-tiny") == shipped

    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(shipped, damaged)
    with open(damaged / univg_tiny.WEIGHTS_FILE, "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    monkeypatch.setitem(loading.SHIPPED_MODELS, "univg-tiny", damaged)
    with pytest.raises(ValueError, match="does not match its release record"):
        stage.copy_shipped("univg-tiny", tmp_path / "base2")


def test_pretrain_params_refuse_unknown_tasks():
    from univg.config import ConfigError

    with pytest.raises(ConfigError, match="image_mix"):
        parse_params({}, {"pretrain.image_mix.caption": 1.0})
    assert Params().pretrain.out_dir == "checkpoints/univg-tiny"


def test_the_shipped_checkpoint_loads_by_name_and_matches_its_recorded_hash():
    """checkpoints/univg-tiny is in git: its weights match the sha256 its release record and card give,
    and it loads through the one model loader under its name."""
    from univg.models.loading import SHIPPED_MODELS, load_model_and_processor

    folder = SHIPPED_MODELS["univg-tiny"]
    record = json.loads((folder / univg_tiny.RELEASE_FILE).read_text())
    assert univg_tiny.file_sha256(folder / univg_tiny.WEIGHTS_FILE) == record["sha256"]
    assert record["sha256"] in (folder / univg_tiny.CARD_FILE).read_text()
    model, processor = load_model_and_processor("univg-tiny")
    assert sum(p.numel() for p in model.parameters()) == record["parameters"]
    assert processor.tokenizer.chat_template and not model.training
