"""In-context recall on text: the skill every reasoning step after a scan needs.

Every step of a scan chain past the scan itself is a lookup in the model's own context: find the
key object in the written scan and read its size and cell. Pre-trained LLMs do this with
induction heads; a tiny model trained from scratch has none until it is taught (docs/results.md).
Two tasks, each a (prompt, answer) pair of plain text:

- `ar`: classic associative recall, "Pairs: circle red; square blue; cross green; diamond red.
  square:" -> " blue" (four single-token keys);
- `lookup`: the scan-chain lookup, a written scan of 2-5 images, then "We look for the cyan
  diamond in image 2. The target is the cyan diamond," -> " medium, at the bottom-right of image 2."

univg-tiny's pre-training mixes both in (univg.models.univg_tiny), and benchmarks/recall_probe.py
trains any base model on them to see how fast it learns.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from univg.data.draw import SHAPES
from univg.data.layout import COLOURS, SIZES
from univg.data.scan import CELLS


def ar_example(rng: random.Random) -> tuple[str, str]:
    keys = rng.sample(SHAPES, 4)
    values = [rng.choice(COLOURS) for _ in keys]
    asked = rng.randrange(len(keys))
    pairs = ";".join(f" {k} {v}" for k, v in zip(keys, values, strict=True))
    return f"Pairs:{pairs}. {keys[asked]}:", f" {values[asked]}"


def lookup_example(rng: random.Random) -> tuple[str, str]:
    images = [{cell: (rng.choice(COLOURS), rng.choice(SHAPES), rng.choice(SIZES)) for cell in rng.sample(range(4), 3)}
              for _ in range(rng.randint(2, 5))]
    scan = " ".join(f"Image {k}: " + "; ".join(f"{CELLS[c]}: " + (f"{o[0]} {o[1]}, {o[2]}" if (o := image.get(c)) else "empty")
                                               for c in range(4)) + "."
                    for k, image in enumerate(images, start=1))
    t = rng.randrange(len(images))
    cell = rng.choice(sorted(images[t]))
    colour, shape, size = images[t][cell]
    prompt = f"{scan} We look for the {colour} {shape} in image {t + 1}. The target is the {colour} {shape},"
    return prompt, f" {size}, at the {CELLS[cell]} of image {t + 1}."


RECALL_TASKS: dict[str, Callable[[random.Random], tuple[str, str]]] = {"ar": ar_example, "lookup": lookup_example}


def encode(tokenizer: Any, examples: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """{input_ids, labels, attention_mask}, right-padded; only answer tokens carry labels."""
    import torch

    rows = []
    for prompt, answer in examples:
        prompt_ids, answer_ids = tokenizer(prompt)["input_ids"], tokenizer(answer)["input_ids"]
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([i + [pad] * (width - len(i)) for i, _ in rows]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows]),
        "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows]),
    }


def answer_accuracy(model: Any, batch: dict[str, Any], chunk: int = 64) -> float:
    """Share of examples whose every answer token is the model's greedy choice (teacher-forced)."""
    import torch

    hits = []
    with torch.no_grad():
        for start in range(0, batch["input_ids"].shape[0], chunk):
            ids = batch["input_ids"][start:start + chunk]
            mask = batch["attention_mask"][start:start + chunk]
            target = batch["labels"][start:start + chunk][:, 1:]
            predicted = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
            hits.append(((predicted == target) | (target == -100)).all(dim=1).float())
    return torch.cat(hits).mean().item()
