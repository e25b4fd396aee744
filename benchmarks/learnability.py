"""How fast can a tiny base model learn to see? A minute-scale probe of one visual skill.

Trains a copy of a base model (a folder saved by `univg model build`) with plain AdamW on freshly
drawn single images for one probe task and prints, every 25 steps, the held-out accuracy of the
answer's first token (for `describe`, of every colour token in the scan). This is how the session-2
design choices were measured (docs/results.md): the learning rate, the scan's word order, the
position cues and the rotary base.

    python benchmarks/learnability.py models/base --task describe --steps 200 --lr 1e-3

Tasks: `colour` (one object: "What colour is the object?"), `colour_at` (2-4 objects: "What colour
is the object at the top-left?"), `describe` (2-4 objects: the fixed scan "top-left: red circle;
top-right: empty; ..."), `describe_size_first` (the scan worded "a large striped red circle").
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from univg.data.draw import PALETTE, render
from univg.data.layout import Context
from univg.data.scan import CELLS
from univg.prompts import assistant_message

TASKS = ("colour", "colour_at", "describe", "describe_size_first")


def example(task: str, index: int, size: int, cue: float) -> dict:
    rng = np.random.default_rng([9, index])
    ctx = Context(rng, size, 2, 2)
    count = 1 if task == "colour" else int(rng.integers(2, 5))
    cells = ctx.cells(2, count)
    objects = ctx.fill(2, ctx.fresh_pairs(count, set()), cells)
    if task == "colour":
        question, answer = "What colour is the object?", objects[0].colour
    elif task == "colour_at":
        k = int(rng.integers(count))
        question, answer = f"What colour is the object at the {CELLS[cells[k]]}?", objects[k].colour
    else:
        names = ["empty"] * 4
        for obj, cell in zip(objects, cells, strict=True):
            texture = " striped" if obj.texture == "striped" else ""
            names[cell] = (f"{obj.colour} {obj.shape}" if task == "describe"
                           else f"a {obj.size}{texture} {obj.colour} {obj.shape}")
        question, answer = "Describe the image.", "; ".join(f"{c}: {n}" for c, n in zip(CELLS, names, strict=True))
    content = [{"type": "image"}, {"type": "text", "text": question}]
    return {"prompt": [{"role": "user", "content": content}], "completion": [assistant_message(answer)],
            "images": [render(objects, [], size, size, (), cue)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a base model folder")
    parser.add_argument("--task", choices=TASKS, default="describe")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rope-theta", type=float, default=None, help="override the text rotary base")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--position-cue", type=float, default=1.0)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    if args.rope_theta:  # rotary has no weights: only its frequencies change
        text_config = model.config.text_config
        text_config.rope_parameters["rope_theta"] = args.rope_theta
        rotary = model.model.language_model.rotary_emb
        inv_freq, _ = rotary.compute_default_rope_parameters(text_config)
        rotary.inv_freq.copy_(inv_freq)
        rotary.original_inv_freq.copy_(inv_freq)
    processor = AutoProcessor.from_pretrained(args.model)
    processor.tokenizer.padding_side = "right"
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    colour_ids = torch.tensor(sorted({processor.tokenizer.encode(" " + c)[0] for c in PALETTE}))
    held_out = collate([example(args.task, 10**6 + i, args.image_size, args.position_cue) for i in range(128)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            logits = model(**held_out).logits
        model.train()
        labels, predicted = held_out["labels"][:, 1:], logits[:, :-1].argmax(-1)
        mask = labels != -100
        if args.task.startswith("describe"):
            mask &= torch.isin(labels, colour_ids)
        else:  # the first answer token of each row
            first = mask.float().argmax(1)
            mask = torch.zeros_like(mask)
            mask[torch.arange(len(first)), first] = True
        return (predicted[mask] == labels[mask]).float().mean().item()

    started = time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        batch = collate([example(args.task, step * args.batch_size + j, args.image_size, args.position_cue)
                         for j in range(args.batch_size)])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0 or step == args.steps:
            print(f"step {step:4d}  train loss {loss.item():.3f}  held-out accuracy {accuracy():.3f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
