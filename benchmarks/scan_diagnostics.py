"""Where a scan-chain model goes wrong: seeing, choosing the object, or writing the answer.

Reads an evaluation folder (predictions.jsonl, as `univg eval` writes it) and the mig-synth
records it was run on, and prints, over all test samples:

- scan accuracy: per cell of every image the chain reads out, is the colour (or 'empty') right,
  and is the shape right (the perception the base model was pre-trained for);
- the conclusion ('The target is the <colour> <shape>, <size>, at the <cell> of image <k>.'):
  how often its image, object, cell and size are right;
- the key step before it ('We look for the <colour> <shape> in image <k>.'): how often it names
  the target, and how often the conclusion's cell is right when it does (the lookup in the scan);
- whether the answer box follows the conclusion, and the hit rate when the conclusion is right.

    python benchmarks/scan_diagnostics.py eval/sft data/mig-synth/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from univg.answers import parse_answer
from univg.data.layout import SIZES
from univg.data.scan import CELLS, cell_name, image_scan
from univg.schema import iou, read_records

CONCLUSION = re.compile(r"The target is the (\w+) (\w+), ([^<]*?), at the ([a-z-]+) of image (\d+)\.")
KEY = re.compile(rf"We look for the (?:(?:{'|'.join((*SIZES, 'striped'))}) )?(\w+) (\w+) in image (\d+)\.")


def read_scan(response: str, image: int) -> dict[str, str]:
    """{cell: 'colour shape, ...'} of the chain's scan of `image` ({} when it wrote none)."""
    found = re.search(rf"Image {image}: (.*?)\.(?= Image \d+:| [A-Z]|</think>|$)", response)
    if not found:
        return {}
    return dict(part.split(": ", 1) for part in found.group(1).split("; ") if ": " in part)


def diagnose(records: list[dict], responses: list[str]) -> dict[str, float]:
    counts: Counter = Counter()
    for record, response in zip(records, responses, strict=True):
        scene = record["meta"]["scene"]
        for k, image in enumerate(scene["images"], start=1):
            truth = dict(part.split(": ", 1) for part in image_scan(image).split("; "))
            said = read_scan(response, k)
            for cell in CELLS:
                true_words, said_words = truth[cell].split(",")[0].split(), said.get(cell, "").split(",")[0].split()
                counts["cells"] += 1
                counts["colour_ok"] += true_words[:1] == said_words[:1]
                counts["shape_ok"] += true_words[1:2] == said_words[1:2]
        target = scene["images"][record["target_image"] - 1]["objects"][scene["target"]["object"]]
        conclusion = CONCLUSION.search(response)
        counts["samples"] += 1
        if not conclusion:
            continue
        colour, shape, details, cell, image = conclusion.groups()
        key = KEY.search(response)
        if key:  # the last reasoning step before the lookup (chain_style: keyed)
            counts["keyed"] += 1
            key_ok = key.groups() == (target["colour"], target["shape"], str(record["target_image"]))
            counts["key_ok"] += key_ok
            if key_ok:
                counts["cell_ok_given_key"] += cell == cell_name(record["box"])
        right = {"image": int(image) == record["target_image"], "object": (colour, shape) == (target["colour"], target["shape"]),
                 "cell": cell == cell_name(record["box"]), "size": details.split(",")[0].strip() == target["size"]}
        counts["concluded"] += 1
        for name, ok in right.items():
            counts[f"conclusion_{name}_ok"] += ok
        parsed = parse_answer(response)
        if parsed is None:
            continue
        counts["answer_follows_conclusion"] += cell_name(parsed.box) == cell and parsed.image_index == int(image)
        if all(right.values()):
            counts["conclusion_all_ok"] += 1
            counts["hit_when_conclusion_ok"] += iou(parsed.box, record["box"]) >= 0.5
    share = lambda key, total: round(counts[key] / counts[total], 3) if counts[total] else 0.0  # noqa: E731
    return {
        "samples": counts["samples"], "scan_colour_acc": share("colour_ok", "cells"), "scan_shape_acc": share("shape_ok", "cells"),
        "concluded": share("concluded", "samples"),
        **{f"conclusion_{name}_acc": share(f"conclusion_{name}_ok", "concluded") for name in ("image", "object", "cell", "size")},
        "key_acc": share("key_ok", "keyed"), "conclusion_cell_acc_given_key": share("cell_ok_given_key", "key_ok"),
        "answer_follows_conclusion": share("answer_follows_conclusion", "concluded"),
        "hit_when_conclusion_ok": share("hit_when_conclusion_ok", "conclusion_all_ok"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path, help="an evaluation folder holding predictions.jsonl")
    parser.add_argument("records", type=Path, help="the mig-synth record file it was evaluated on")
    args = parser.parse_args()
    records = read_records(args.records)
    responses = [json.loads(line)["response"] for line in (args.eval_dir / "predictions.jsonl").read_text().splitlines()]
    print(json.dumps(diagnose(records, responses), indent=2))


if __name__ == "__main__":
    main()
