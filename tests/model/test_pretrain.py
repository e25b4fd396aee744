"""Perception pre-training of the tiny base model: its examples, and a short real run."""

from __future__ import annotations

import numpy as np

from univg.data.scan import CELLS
from univg.models.pretrain import TASKS, perception_example, pretrain_perception


def completion(example) -> str:
    return example["completion"][0]["content"][0]["text"]


def test_examples_are_a_pure_function_of_seed_and_index():
    first, again = perception_example(0, 5, 112, 1.0), perception_example(0, 5, 112, 1.0)
    assert completion(first) == completion(again)
    assert [np.asarray(i).tobytes() for i in first["images"]] == [np.asarray(i).tobytes() for i in again["images"]]
    assert completion(perception_example(1, 5, 112, 1.0)) != completion(first)


def test_examples_cover_every_task_without_the_benchmark_format():
    examples = [perception_example(0, i, 112, 1.0) for i in range(60)]
    assert {e["task"] for e in examples} == set(TASKS)
    for example in examples:
        text = completion(example)
        assert "<think>" not in text and "<answer>" not in text and "Image-" not in text
        assert len(example["images"]) in (1, 2)
        assert example["images"][0].size == (112, 112)
        if example["task"] == "describe":
            assert [part.split(":")[0] for part in text.rstrip(".").split("; ")] == list(CELLS)


def test_a_short_pretraining_run_saves_a_loadable_model_that_changed(tiny_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    before = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    out = tmp_path / "pretrained"
    summary = pretrain_perception(tiny_dir, out, steps=2, batch_size=2, learning_rate=1e-3, image_size=56,
                                  position_cue=1.0, progress=False)
    assert summary["steps"] == 2 and summary["examples"] == 4
    after = AutoModelForImageTextToText.from_pretrained(out)
    changed = [name for (name, a), (_, b) in zip(before.named_parameters(), after.named_parameters(), strict=True)
               if not a.detach().equal(b.detach())]
    assert changed, "pre-training left every weight as it was"
    assert (out / "tokenizer.json").is_file()
