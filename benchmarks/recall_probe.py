"""Can a base model look things up in its context? A text-only probe of in-context recall.

Every reasoning step of a scan chain past the scan itself is an in-context lookup: find the key
object in the written scan and read its size and cell, or compare an object with the question's.
Pre-trained LLMs do this with induction heads; the tiny model, trained from scratch, has none.
The tasks live in univg.models.recall (univg-tiny's pre-training mixes them in). This probe trains a copy of a base model with plain AdamW on text alone and prints the held-out
accuracy of the answer every `--every` steps (no images, so it runs fast):

- `ar`: classic associative recall, "Pairs: circle red; square blue; cross green; diamond red.
  square:" -> " blue" (four single-token keys);
- `lookup`: the scan-chain lookup, a written scan of 2-5 images, then "We look for the cyan
  diamond in image 2. The target is the cyan diamond," -> " medium, at the bottom-right of image 2."

    python benchmarks/recall_probe.py models/base --task ar --steps 6000 --batch-size 64

Session 3 measured (docs/results.md): `lookup` stays at 0.10-0.17 after 600 steps, `ar` at 0.39
after 4000 steps at batch 32; at batch 64, `ar` starts to rise only after 2000-2500 steps.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

from univg.models.recall import RECALL_TASKS as TASKS
from univg.models.recall import answer_accuracy, encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a base model folder (models/base)")
    parser.add_argument("--task", choices=sorted(TASKS), default="ar")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--every", type=int, default=250, help="print held-out accuracy every N steps")
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    make = TASKS[args.task]
    held_out_rng, train_rng = random.Random(123), random.Random(0)
    held_out = encode(tokenizer, [make(held_out_rng) for _ in range(256)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    print(f"step 0: held-out answer accuracy {answer_accuracy(model.eval(), held_out):.3f}", flush=True)
    started = time.time()
    for step in range(1, args.steps + 1):
        model.train()
        model(**encode(tokenizer, [make(train_rng) for _ in range(args.batch_size)])).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % args.every == 0 or step == args.steps:
            accuracy = answer_accuracy(model.eval(), held_out)
            print(f"step {step}: held-out answer accuracy {accuracy:.3f} ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
