"""mig-synth: a seeded synthetic multi-image grounding benchmark with MIG-Bench's ten task names.

Each sample shows 2-6 images (never more than `max_images`) of bold flat shapes (square, circle,
triangle, diamond, cross) in seven saturated colours, solid or striped, on a light-grey canvas,
and asks for one box in one image; the question can only be answered by comparing images. Task
rules live in `univg.data.scenes`, layout in `univg.data.layout`, pixels in `univg.data.draw`.

Determinism: sample `index` of `task` in `split` draws everything from
`numpy.random.default_rng([seed, split_id, task_id, index])` (split_id train=0, val=1, test=2;
task_id = position in `univg.config.TASKS`), so splits come from disjoint streams, a sample does
not depend on which other tasks or counts were asked for, and the same config gives
byte-identical JSONL and PNG files. Ids are `<split>-<task>-<index:05d>`.

Record (the grounding contract) plus `meta`:

    meta = {"scene": SCENE, "difficulty": {"n_objects": int,      # objects over all images
                                           "clutter": float, "distractors": int}}
    SCENE = {
      "image_size": [W, H],
      "images": [                                    # one entry per image, in order
        {"objects": [{"shape": str, "colour": str, "texture": "solid"|"striped",
                      "size": "small"|"medium"|"large", "box": [x1, y1, x2, y2]}],  # 0..1000 ints
         "marks": [{"kind": "box"|"dot", "object": int}],  # drawn on the image; [] if none
         "view": "original"|"shifted"|"mirrored"|"frame"}],
      "target": {"image": int (1-based), "object": int (0-based index into that image's objects)},
      "reference": {"image": int, "object": int} or null,
      "facts": {...}}                                # task-specific, below

Boxes are tight boxes of the drawn pixels. The record's `target_image`/`box` always equal the
scene target's image/box. `reference` is the object in another image the question points at:
region (the boxed object), correspondence (the dotted one), multi_view (the object at the named
position in image 1), reasoning (the largest/smallest shape in image 1), diff/view_diff (the
object before a colour/shape change; null when an object was added); null for the other tasks.

facts per task:
  diff            {"change": "added"|"colour"|"shape", "before": OBJECT (image-1 scene object) or null}
  view_diff       as diff, plus "shift_px": [dx, dy] (the camera shift applied to image 2, pixels)
  region          {"mark": "box", "box": [x1,y1,x2,y2]}   (the box given in the question, image 1)
  correspondence  {"mark": "dot", "size_before": str, "size_after": str}
  group_grounding {"description": "the blue triangle"}   (in exactly one image)
  reasoning       {"rule": "same colour as the largest shape in image 1",
                   "attribute": "colour"|"shape", "extreme": "largest"|"smallest", "value": str}
  common_object   {"shared": {"shape": str, "colour": str}}
  multi_view      {"transform": "mirrored"|"shifted", "position": "top-left"|... }
                  (position names: top/bottom x left/right on a 2x2 grid; top/middle/bottom x
                  left/centre/right, and "centre", on a 3x3 grid)
  object_tracking {"track": [[image, object], ...] (the moving object in every frame),
                   "direction": "right"|"left"|"up"|"down"}
  refer_grounding {"expression": "the red square"}
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from univg.config import TASKS, DataConfig
from univg.data.draw import render
from univg.data.images import save_png
from univg.data.layout import Context, Sample, scene_object
from univg.data.scenes import BUILDERS
from univg.schema import iou, write_jsonl, write_text_atomic

SOURCE = "mig-synth"
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
SPECK_AREA = 250  # pixels of canvas per clutter speck at clutter=1.0


def split_size(cfg: DataConfig, split: str) -> int:
    return {"train": cfg.train_per_task, "val": cfg.val_per_task, "test": cfg.test_per_task}[split]


def sample_rng(cfg: DataConfig, split: str, task: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SPLIT_IDS[split], TASKS.index(task), index])


def scene_dict(sample: Sample, size: int) -> dict[str, Any]:
    image, obj = sample.target
    return {
        "image_size": [size, size],
        "images": [
            {"objects": [scene_object(o, size) for o in frame.objects],
             "marks": [{"kind": kind, "object": i} for kind, i in frame.marks],
             "view": frame.view}
            for frame in sample.frames
        ],
        "target": {"image": image, "object": obj},
        "reference": None if sample.reference is None else
        {"image": sample.reference[0], "object": sample.reference[1]},
        "facts": sample.facts,
    }


def clutter_specks(rng: np.random.Generator, size: int, clutter: float) -> list[tuple[int, int, int, int]]:
    """Small grey specks (x, y, side, grey): noise only, never mistaken for an object."""
    count = int(round(clutter * size * size / SPECK_AREA))
    largest = max(1, size // 56)
    specks = []
    for _ in range(count):
        side = int(rng.integers(1, largest + 1))
        x, y = (int(v) for v in rng.integers(0, size - side, size=2))
        specks.append((x, y, side, int(rng.integers(80, 171))))
    return specks


def make_sample(cfg: DataConfig, split: str, task: str, index: int, out_dir: Path) -> dict[str, Any]:
    """Build one sample, write its PNGs under out_dir/images/<split>/, return its record."""
    rng = sample_rng(cfg, split, task, index)
    size = cfg.image_size
    sample = BUILDERS[task](Context(rng, size, cfg.max_images, cfg.distractors))
    sample_id = f"{split}-{task}-{index:05d}"
    paths = []
    for number, frame in enumerate(sample.frames, start=1):
        rel = f"images/{split}/{sample_id}_{number}.png"
        specks = clutter_specks(rng, size, cfg.clutter)
        save_png(render(frame.objects, frame.marks, size, size, specks, cfg.position_cue), out_dir / rel)
        paths.append(rel)
    scene = scene_dict(sample, size)
    target = scene["images"][sample.target[0] - 1]["objects"][sample.target[1]]
    record = {
        "id": sample_id, "task": task, "images": paths, "question": sample.question,
        "target_image": sample.target[0], "box": list(target["box"]), "source": SOURCE,
        "meta": {"scene": scene, "difficulty": {
            "n_objects": sum(len(f.objects) for f in sample.frames),
            "clutter": cfg.clutter, "distractors": cfg.distractors}},
    }
    assert 2 <= len(paths) <= cfg.max_images, f"{sample_id}: {len(paths)} images"
    assert record["box"] == scene["images"][record["target_image"] - 1]["objects"][scene["target"]["object"]]["box"]
    return record


def generate_split(cfg: DataConfig, split: str, out_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """All records of one split, samples interleaved across tasks (a prefix covers every task).

    The split's image folder is emptied first, so no image from an earlier, larger run lingers.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_IDS)}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)
    count = split_size(cfg, split)
    records = []
    with tqdm(total=count * len(cfg.tasks), desc=f"mig-synth {split}", unit="sample", disable=not progress) as bar:
        for index in range(count):
            for task in cfg.tasks:
                records.append(make_sample(cfg, split, task, index, out_dir))
                bar.update()
    return records


def generate_dataset(cfg: DataConfig, out_dir: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Write out_dir/{train,val,test}.jsonl, images/, card.json and README.md; return the card."""
    out_dir = Path(out_dir if out_dir is not None else cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # card.json is written last and marks a finished run: drop the old one (and the old splits)
    # first, so a run killed half-way can never pass for a finished one.
    for stale in ("card.json", *(f"{split}.jsonl" for split in SPLIT_IDS)):
        (out_dir / stale).unlink(missing_ok=True)
    splits = {}
    for split in SPLIT_IDS:
        splits[split] = generate_split(cfg, split, out_dir, progress)
        write_jsonl(out_dir / f"{split}.jsonl", splits[split])
    card = dataset_card(cfg, splits)
    # Downstream stages depend on this card and the JSONL files, not on the thousands of image
    # files (checking those on every `dvc repro` was most of its no-op time): the digest makes
    # the card change whenever any image does.
    card["images_sha256"] = folder_digest(out_dir / "images")
    write_text_atomic(out_dir / "README.md", card_markdown(card))
    write_text_atomic(out_dir / "card.json", json.dumps(card, indent=2) + "\n")  # last: the run finished
    return card


# ----------------------------------------------------------------------------- dataset card
def folder_digest(folder: Path) -> str:
    """sha256 over every file of `folder` (relative path and bytes), in sorted order."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()

def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0, "max": 0}
    return {"min": round(float(min(values)), 1), "mean": round(float(np.mean(values)), 1),
            "max": round(float(max(values)), 1)}


def dataset_card(cfg: DataConfig, splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    everything = [r for records in splits.values() for r in records]
    per_image = [len(img["objects"]) for r in everything for img in r["meta"]["scene"]["images"]]
    return {
        "name": SOURCE,
        "generator": "univg.data.synth",
        "config": cfg.model_dump(mode="json", exclude={"source", "import_path", "image_root", "out_dir"}),
        "seeds": {"base": cfg.seed, "split_ids": SPLIT_IDS,
                  "stream": "numpy.random.default_rng([seed, split_id, task_id, index]); "
                            "task_id = position in univg.config.TASKS"},
        "image_size": [cfg.image_size, cfg.image_size],
        "splits": {name: {
            "samples": len(records),
            "images": sum(len(r["images"]) for r in records),
            "per_task": dict(sorted(Counter(r["task"] for r in records).items())),
            "images_per_sample": {str(k): v for k, v in sorted(Counter(len(r["images"]) for r in records).items())},
            "target_image": {str(k): v for k, v in sorted(Counter(r["target_image"] for r in records).items())},
        } for name, records in splits.items()},
        "box_size_0_1000": {
            "width": _stats([r["box"][2] - r["box"][0] for r in everything]),
            "height": _stats([r["box"][3] - r["box"][1] for r in everything]),
        },
        "objects_per_image": _stats(per_image),
    }


def card_markdown(card: dict[str, Any]) -> str:
    tasks = sorted({t for s in card["splits"].values() for t in s["per_task"]})
    names = list(card["splits"])
    lines = [
        f"# {card['name']}", "",
        "Synthetic multi-image visual grounding in MIG-Bench's ten task names, generated by "
        f"`{card['generator']}`. Every question needs more than one image; the answer is one box "
        "(0..1000 integers, tight around the drawn shape) in one target image.", "",
        f"- image size: {card['image_size'][0]}x{card['image_size'][1]} px",
        f"- seeds: base {card['seeds']['base']}; {card['seeds']['stream']} "
        f"(split ids {card['seeds']['split_ids']})",
        f"- objects per image: {card['objects_per_image']}",
        f"- target box width (0..1000): {card['box_size_0_1000']['width']}",
        f"- target box height (0..1000): {card['box_size_0_1000']['height']}", "",
        "## Samples per task", "",
        "| task | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for task in tasks:
        lines.append(f"| {task} | " + " | ".join(str(card["splits"][n]["per_task"].get(task, 0)) for n in names) + " |")
    lines.append("| **total** | " + " | ".join(str(card["splits"][n]["samples"]) for n in names) + " |")
    lines += ["", "## Images per sample", "", "| images | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    counts = sorted({k for s in card["splits"].values() for k in s["images_per_sample"]}, key=int)
    for k in counts:
        lines.append(f"| {k} | " + " | ".join(str(card["splits"][n]["images_per_sample"].get(k, 0)) for n in names) + " |")
    lines += ["", "## Config", "", "```json", json.dumps(card["config"], indent=2), "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- shortcut check
def box_prior_accuracy(train_records: Sequence[dict], test_records: Sequence[dict]) -> dict[str, Any]:
    """Acc@0.5 of always answering the mean training box in image 1 (a no-looking baseline).

    IoU ignores the image index (as MIG-Bench scoring does), which flatters the baseline;
    `acc@0.5_indexed` also requires the target image to be image 1.
    """
    if not train_records or not test_records:
        raise ValueError("box prior needs at least one training and one test record")
    mean_box = [float(np.mean([r["box"][i] for r in train_records])) for i in range(4)]
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for record in test_records:
        hit = iou(mean_box, record["box"]) >= 0.5
        hits.setdefault(record["task"], []).append((hit, hit and record["target_image"] == 1))
    flat = [h for task_hits in hits.values() for h in task_hits]
    return {
        "mean_box": [round(v, 1) for v in mean_box],
        "n": len(flat),
        "acc@0.5": sum(h for h, _ in flat) / len(flat),
        "acc@0.5_indexed": sum(h for _, h in flat) / len(flat),
        "per_task": {task: {"acc@0.5": sum(h for h, _ in th) / len(th), "n": len(th)}
                     for task, th in sorted(hits.items())},
    }
