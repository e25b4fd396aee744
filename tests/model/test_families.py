"""Model families (univg.models.family): each Qwen VL generation's box convention, applied at the model's edge.

- The conversions round-trip, and Qwen2.5-VL's pixels are those of the image its processor resized.
- The family is read from the checkpoint (tiny random-init models of each family, built offline from
  their real transformers config classes), or set in params.
- A GRPO reward on a Qwen2.5-VL model is computed in its own convention: a planted answer in resized
  pixels earns IoU 1, the same box written in 0..1000 does not.
- Each family goes SFT -> GRPO -> eval end to end (short real runs).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.train.test_sft import write_records
from univg.config import ModelConfig, parse_params
from univg.errors import UserError
from univg.models.family import (
    FAMILIES,
    PixelLimits,
    UnknownFamily,
    family_named,
    family_of_config,
    limits_of,
)

FAMILY_NAMES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
SIZES = dict(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
             vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=112 * 112, seed=0)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("family-data"), count=6)


@pytest.fixture(scope="module")
def family_models(tmp_path_factory, records):
    """A tiny random-init checkpoint of each family, tokenizer trained on the records."""
    from univg.models.tiny import build_tiny_model, corpus_from_records

    folders = {}
    for name in FAMILY_NAMES:
        folders[name] = tmp_path_factory.mktemp(name)
        build_tiny_model(ModelConfig(**SIZES, family=name), corpus_from_records([records]), folders[name])
    return folders


# ----------------------------------------------------------------------------- conversions
def test_qwen25_writes_pixels_of_the_resized_image():
    family = FAMILIES["qwen2_5_vl"]
    limits = PixelLimits(min_pixels=56 * 56, max_pixels=28 * 28 * 16384, factor=28)
    assert limits.resized(640, 480) == (644, 476)  # smart_resize: multiples of 28, area kept
    assert family.to_model([0, 0, 1000, 1000], (640, 480), limits) == [0, 0, 644, 476]
    assert family.to_model([500, 250, 750, 1000], (640, 480), limits) == [322, 119, 483, 476]
    assert family.to_norm1000([322, 119, 483, 476], (640, 480), limits) == pytest.approx([500, 250, 750, 1000], abs=1)
    # a tighter budget shrinks the image, and the pixel box with it
    small = PixelLimits(min_pixels=56 * 56, max_pixels=112 * 112, factor=28)
    assert small.resized(640, 480) == (112, 84)
    assert family.to_model([0, 0, 1000, 1000], (640, 480), small) == [0, 0, 112, 84]
    with pytest.raises(ValueError, match="image size is needed"):
        family.to_norm1000([1, 2, 3, 4], None)


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen3_vl"])
def test_relative_families_write_the_record_box_unchanged(name):
    family = FAMILIES[name]
    assert family.to_model([12, 34, 560, 780], (640, 480)) == [12, 34, 560, 780]
    assert family.to_norm1000([12, 34, 560, 780], None) == [12.0, 34.0, 560.0, 780.0]
    assert family.prompt_note == "" and family.coords == "norm1000"


@given(name=st.sampled_from(FAMILY_NAMES), width=st.integers(16, 4000), height=st.integers(16, 4000),
       xs=st.lists(st.integers(0, 1000), min_size=2, max_size=2), ys=st.lists(st.integers(0, 1000), min_size=2, max_size=2))
def test_every_family_round_trips_within_one_model_unit(name, width, height, xs, ys):
    family = FAMILIES[name]
    box = [min(xs), min(ys), max(xs), max(ys)]
    extent_w, extent_h = family.extent((width, height), None)
    back = family.to_norm1000(family.to_model(box, (width, height)), (width, height))
    # rounding to the model's integer grid moves a coordinate by at most half a model unit
    tolerance = [500 / extent_w, 500 / extent_h] * 2
    assert all(abs(a - b) <= t + 1e-9 for a, b, t in zip(back, box, tolerance, strict=True))


def test_family_names_and_model_types():
    assert family_named("qwen3_vl") is FAMILIES["qwen3_vl"]
    with pytest.raises(UnknownFamily, match="unknown model family 'qwen4'"):
        family_named("qwen4")

    class Config:
        model_type = "llava"

    with pytest.raises(UserError, match="model_type 'llava' has no box convention"):
        family_of_config(Config())
    assert family_of_config(Config(), "qwen2_5_vl").name == "qwen2_5_vl"  # params know better
    Config.model_type = "qwen3_vl_moe"
    assert family_of_config(Config()).name == "qwen3_vl"


# ----------------------------------------------------------------------------- checkpoints
def test_each_tiny_checkpoint_is_its_family_with_its_processor_limits(family_models):
    from transformers import AutoConfig, AutoProcessor

    expected = {"qwen2_vl": ("Qwen2VLProcessor", 28), "qwen2_5_vl": ("Qwen2_5_VLProcessor", 28),
                "qwen3_vl": ("Qwen3VLProcessor", 32)}
    for name, folder in family_models.items():
        config = AutoConfig.from_pretrained(folder)
        assert config.model_type == name and family_of_config(config).name == name
        processor = AutoProcessor.from_pretrained(folder)
        assert type(processor).__name__ == expected[name][0]
        assert limits_of(processor) == PixelLimits(56 * 56, 112 * 112, expected[name][1])


def test_qwen25_sft_targets_and_grpo_reward_are_in_its_own_pixels(family_models, records):
    from transformers import AutoProcessor

    from univg.answers import format_completion
    from univg.rewards import iou_reward
    from univg.schema import read_records
    from univg.train.examples import load_examples

    family = FAMILIES["qwen2_5_vl"]
    limits = limits_of(AutoProcessor.from_pretrained(family_models["qwen2_5_vl"]), family)
    rows = read_records(records)
    sft = load_examples(records, family=family, limits=limits)
    grpo = load_examples(records, with_completion=False, family=family, limits=limits)
    for row, example, prompt in zip(rows, sft, grpo, strict=True):
        width, height = example["image_sizes"][row["target_image"] - 1]
        pixels = family.to_model(row["box"], (width, height), limits)
        assert example["box"] == prompt["box"] == pixels != row["box"]
        assert example["box_extent"] == list(limits.resized(width, height))
        assert f"({pixels[0]},{pixels[1]}),({pixels[2]},{pixels[3]})" in example["completion"][0]["content"][0]["text"]
        assert example["prompt"][0]["content"][-1]["text"].endswith("Coordinates are absolute pixels of the image.")

    # plant answers: the box in the model's pixels earns IoU 1; the 0..1000 box (the record's) does not
    in_pixels = [format_completion("look", p["box"], p["target_image"]) for p in grpo]
    in_norm = [format_completion("look", row["box"], row["target_image"]) for row in rows]
    columns = {"box": [p["box"] for p in grpo], "target_image": [p["target_image"] for p in grpo]}
    assert iou_reward(in_pixels, **columns) == [1.0] * len(rows)
    assert max(iou_reward(in_norm, **columns)) < 0.5


def test_a_relative_family_keeps_the_record_box(family_models, records):
    from univg.schema import read_records
    from univg.train.examples import load_examples

    examples = load_examples(records, family=FAMILIES["qwen3_vl"])
    assert [e["box"] for e in examples] == [r["box"] for r in read_records(records)]
    assert all(e["box_extent"] == [1000, 1000] for e in examples)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_each_family_runs_sft_grpo_and_eval(name, family_models, records, tmp_path, mlflow_uri):
    from univg.eval.run import evaluate_model
    from univg.train.grpo import train_grpo
    from univg.train.sft import train_sft

    params = parse_params({}, {
        "sft.tiny-cpu.per_device_train_batch_size": 3, "sft.tiny-cpu.logging_steps": 1, "sft.tiny-cpu.max_pixels": 3136,
        "grpo.tiny-cpu.per_device_train_batch_size": 4, "grpo.tiny-cpu.num_generations": 4,
        "grpo.tiny-cpu.max_completion_length": 8, "grpo.tiny-cpu.logging_steps": 1, "grpo.tiny-cpu.max_pixels": 3136,
    })
    sft = train_sft(params, records, str(family_models[name]), tmp_path / "sft", max_steps=2)
    assert sft["global_step"] == 2
    info = json.loads((tmp_path / "sft" / "final" / "univg_train.json").read_text())
    assert info["family"] == name
    grpo = train_grpo(params, records, sft["final_dir"], tmp_path / "grpo", max_steps=1)
    assert grpo["global_step"] == 1
    assert json.loads((tmp_path / "grpo" / "final" / "config.json").read_text())["model_type"] == name

    metrics = evaluate_model(grpo["final_dir"], "mig-synth", records, tmp_path / "eval", batch_size=4,
                             max_new_tokens=8, n_bootstrap=100, params=params, device="cpu")
    assert metrics["family"] == name and metrics["coords"] == FAMILIES[name].coords
    assert metrics["n"] == 6 and metrics["errors"] == 0
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(6))
