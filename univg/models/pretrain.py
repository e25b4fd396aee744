"""Perception pre-training of the tiny base model: it learns to see before it learns the task.

A real base model (Qwen2-VL) arrives after pre-training on captions and grounding data, so it
already describes objects and where they are; only the multi-image reasoning format is new to it.
A tiny Qwen2-VL built from scratch has seen nothing, and SFT on a few thousand multi-image chains
teaches it text priors instead of sight (measured: its loss was the same with blank images). This
module is the stand-in for that pre-training, in the `base_model` stage:

- freshly drawn single- and two-image scenes of the same shape world (a seed stream of its own,
  disjoint from train/val/test, so no benchmark sample is ever seen);
- three plain-text tasks, as in a VLM's grounding pre-training: describe an image cell by cell
  (80%: the scan of univg.data.scan, the densest signal per image), locate a named object (its cell
  and box), name the object in a cell;
- every question is about one image (of the one or two shown), with no <think>/<answer> tags: the
  base model does not know the benchmark's format or its multi-image reasoning, and must be taught
  both by CoT SFT.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from univg.answers import format_box
from univg.data.draw import render
from univg.data.layout import Context, pick, scene_object
from univg.data.scan import cell_name, image_scan, object_phrase
from univg.prompts import assistant_message

PRETRAIN_SPLIT_ID = 7  # the seed stream of pre-training scenes (train/val/test use 0/1/2)
TASKS = ("describe", "locate", "name")
TASK_SHARES = (0.8, 0.1, 0.1)  # a full scan carries the most signal per image


def random_image(ctx: Context, marked: bool) -> dict[str, Any]:
    """A scene image (the dict of univg.data.synth) with 2-4 objects on the 2x2 grid."""
    count = int(ctx.rng.integers(2, 5))
    objects = ctx.fill(2, ctx.fresh_pairs(count, set()), ctx.cells(2, count))
    marks = [(pick(ctx.rng, ("dot", "box")), int(ctx.rng.integers(count)))] if marked else []
    return {"objects": objects, "marks": marks,
            "scene": {"objects": [scene_object(o, ctx.size) for o in objects],
                      "marks": [{"kind": kind, "object": i} for kind, i in marks]}}


def perception_example(seed: int, index: int, image_size: int, position_cue: float) -> dict[str, Any]:
    """One pre-training example (TRL prompt/completion form with images); a pure function of its arguments."""
    rng = np.random.default_rng([seed, PRETRAIN_SPLIT_ID, index])
    ctx = Context(rng, image_size, max_images=2, distractors=2)
    n_images = 1 if rng.random() < 0.7 else 2
    drawn = [random_image(ctx, marked=rng.random() < 0.3) for _ in range(n_images)]
    images = [render(d["objects"], d["marks"], image_size, image_size, (), position_cue) for d in drawn]
    which = int(rng.integers(n_images))
    scene = drawn[which]["scene"]
    in_image = f" in image {which + 1}" if n_images > 1 else ""
    task = TASKS[int(rng.choice(len(TASKS), p=TASK_SHARES))]
    if task == "describe":
        question = f"Describe image {which + 1}." if n_images > 1 else "Describe the image."
        answer = image_scan(scene) + "."
    else:
        i = int(rng.integers(len(scene["objects"])))
        obj = scene["objects"][i]
        if task == "locate":
            question = f"Where is the {obj['colour']} {obj['shape']}{in_image}?"
            answer = f"{cell_name(obj['box'])} {format_box(obj['box'], answer_format='univg-r1')}"
        else:
            question = f"What is at the {cell_name(obj['box'])}{in_image}?"
            answer = object_phrase(obj, [m["kind"] for m in scene["marks"] if m["object"] == i])
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    return {"prompt": [{"role": "user", "content": content}], "completion": [assistant_message(answer)],
            "images": images, "task": task, "id": f"pretrain-{index:06d}"}


def perception_examples(count: int, seed: int, image_size: int, position_cue: float) -> Iterator[dict[str, Any]]:
    """Examples 0..count-1 of the pre-training stream."""
    for index in range(count):
        yield perception_example(seed, index, image_size, position_cue)


def pretrain_perception(model_dir: Path, out_dir: Path, *, steps: int, batch_size: int, learning_rate: float,
                        image_size: int, position_cue: float, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train the model in `model_dir` on `steps` x `batch_size` fresh perception examples; save to `out_dir`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    dataset = Dataset.from_list(list(perception_examples(steps * batch_size, seed, image_size, position_cue)))
    # Trainer wants an output_dir even with save_strategy "no"; a scratch one leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="univg-pretrain-") as scratch:
        args = SFTConfig(
            output_dir=scratch, per_device_train_batch_size=batch_size, max_steps=steps,
            learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=20,
            save_strategy="no", report_to=[], seed=seed, max_length=None, completion_only_loss=True, packing=False,
            dataset_kwargs={"skip_prepare_dataset": True}, use_cpu=not torch.cuda.is_available(),
            disable_tqdm=not progress, dataloader_num_workers=0, remove_unused_columns=False,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
        trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    trainer.model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return {"steps": steps, "examples": steps * batch_size, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "seconds": round(time.perf_counter() - started, 1)}
