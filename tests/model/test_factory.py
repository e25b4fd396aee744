"""The tiny Qwen2-VL factory: saved folder, config/tokenizer agreement, determinism, corpus reading."""

from __future__ import annotations

import json

import pytest
import torch

from univg.config import ModelConfig
from univg.models.tiny import (
    INFO_FILE,
    SPECIAL_TOKENS,
    build_tiny_model,
    check_sizes,
    corpus_from_records,
    mrope_section,
)


def test_folder_loads_with_auto_classes(tiny_dir):
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
    )

    processor = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    assert isinstance(processor, Qwen2VLProcessor)
    assert isinstance(model, Qwen2VLForConditionalGeneration)
    assert model.config._attn_implementation == "sdpa"
    assert processor.tokenizer.padding_side == "left"
    assert processor.chat_template and "<|image_pad|>" in processor.chat_template


def test_config_token_ids_are_the_tokenizers(tiny):
    model, processor = tiny
    tokenizer, config = processor.tokenizer, model.config
    ids = tokenizer.convert_tokens_to_ids
    assert config.image_token_id == ids("<|image_pad|>") == processor.image_token_id
    assert config.video_token_id == ids("<|video_pad|>")
    assert config.vision_start_token_id == ids("<|vision_start|>")
    assert config.vision_end_token_id == ids("<|vision_end|>")
    assert config.text_config.eos_token_id == tokenizer.eos_token_id
    assert config.text_config.pad_token_id == tokenizer.pad_token_id
    assert config.text_config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token_id in model.generation_config.eos_token_id


def test_architecture_matches_qwen2_vl_rules(tiny, test_model_config):
    config = tiny[0].config
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    assert config.vision_config.hidden_size == config.text_config.hidden_size
    assert (config.vision_config.patch_size, config.vision_config.spatial_merge_size) == (14, 2)
    assert config.vision_config.temporal_patch_size == 2
    assert config.text_config.num_hidden_layers == test_model_config.num_layers
    assert config.vision_config.depth == test_model_config.vision_depth


@pytest.mark.parametrize("head_dim", [16, 32, 64, 128])
def test_mrope_section_sums_to_half_head_dim(head_dim):
    section = mrope_section(head_dim)
    assert sum(section) == head_dim // 2 and min(section) >= 1
    assert mrope_section(128) == [16, 24, 24]  # Qwen2-VL-7B's own split


def test_info_file_matches_the_model(tiny, tiny_dir):
    info = json.loads((tiny_dir / INFO_FILE).read_text())
    model, processor = tiny
    assert info["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert info["parameters"]["vision"] == sum(p.numel() for p in model.model.visual.parameters())
    assert info["parameters"]["text"] == info["parameters"]["total"] - info["parameters"]["vision"]
    assert info["vocab_size"] == len(processor.tokenizer)
    assert set(SPECIAL_TOKENS) <= set(info["token_ids"])
    assert info["token_ids"]["<think>"] == processor.tokenizer.convert_tokens_to_ids("<think>")


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_same_seed_gives_identical_weights(tmp_path, test_model_config, corpus_factory, tiny_dir):
    corpus = corpus_factory()
    build_tiny_model(test_model_config, corpus, tmp_path / "again")
    first, again = _weights(tiny_dir), _weights(tmp_path / "again")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert (tmp_path / "again" / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()

    other_seed = test_model_config.model_copy(update={"seed": 1})
    build_tiny_model(other_seed, corpus, tmp_path / "other")
    other = _weights(tmp_path / "other")
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"hidden_size": 100, "num_heads": 3}, "not divisible by num_heads"),
        ({"num_heads": 4, "num_kv_heads": 3}, "num_kv_heads"),
        ({"vision_embed_dim": 40, "vision_heads": 4}, "divisible by 4"),
        ({"min_pixels": 224 * 224, "max_pixels": 112 * 112}, "min_pixels"),
    ],
)
def test_impossible_sizes_are_refused_with_the_reason(override, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_sizes(ModelConfig(**override))


def test_default_sizes_are_valid():
    check_sizes(ModelConfig())


def test_corpus_from_records_covers_prompts_and_targets(tmp_path):
    from univg.schema import write_jsonl

    record = {
        "id": "a", "task": "common_object", "images": ["1.png", "2.png"], "question": "Find the star.",
        "target_image": 2, "box": [10, 20, 300, 400], "source": "synth", "cot": "It is in image 2.",
    }
    write_jsonl(tmp_path / "train.jsonl", [record, {**record, "id": "b", "cot": None}])
    texts = list(corpus_from_records([tmp_path / "train.jsonl"]))
    assert any(t.startswith("Find the star. First output the thinking process") for t in texts)
    assert "<think>It is in image 2.</think><answer>Image-2: (10,20),(300,400)</answer>" in texts
    assert "<think>It is in image 2.</think><answer>(10,20),(300,400)</answer>" in texts


def test_corpus_from_records_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: .*missing field"):
        list(corpus_from_records([bad]))
