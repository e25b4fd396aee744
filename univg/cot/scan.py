"""The scan: one image read out cell by cell, in the words perception pre-training teaches.

`image_scan` writes `top-left: red circle, large; top-right: empty; bottom-left: ...` for one
image of a mig-synth scene. Perception pre-training (univg.models.pretrain) trains the base model
to say exactly this about an image, and the rule teacher's `scan` chains start with it, so SFT
builds on a skill the base model already has: reasoning over a written scan is text-to-text,
which a small model learns far faster than reading the answer straight off image tokens.

The order of words is deliberate: colour and shape come right after the position word (a tiny
model trained from scratch read colours at 0.93 accuracy after 200 steps in this order, 0.34 with
the colour after size and texture).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CELLS = ("top-left", "top-right", "bottom-left", "bottom-right")
MARK_WORDS = {"dot": "dot", "box": "framed"}


def cell_name(box: Sequence[float]) -> str:
    """The 2x2 cell a 0..1000 box's centre falls in: 'top-left' .. 'bottom-right'."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return f"{'top' if cy < 500 else 'bottom'}-{'left' if cx < 500 else 'right'}"


def object_phrase(obj: dict[str, Any], marks: Sequence[str] = ()) -> str:
    """'red circle, large, striped, dot' for a scene object and the marks drawn on it."""
    details = [str(obj.get("size", ""))] + (["striped"] if obj.get("texture") == "striped" else [])
    details += [MARK_WORDS.get(kind, kind) for kind in marks]
    return f"{obj.get('colour', '')} {obj.get('shape', 'object')}, " + ", ".join(d for d in details if d)


def image_scan(image: dict[str, Any]) -> str:
    """Every cell of one scene image in reading order, empty cells included."""
    marks: dict[int, list[str]] = {}
    for mark in image.get("marks") or []:
        if isinstance(mark, dict):
            marks.setdefault(int(mark.get("object", -1)), []).append(str(mark.get("kind", "")))
    by_cell: dict[str, list[str]] = {}
    for index, obj in enumerate(image.get("objects") or []):
        if isinstance(obj, dict) and "box" in obj:
            by_cell.setdefault(cell_name(obj["box"]), []).append(object_phrase(obj, marks.get(index, ())))
    return "; ".join(f"{cell}: {' and '.join(by_cell.get(cell, ['empty']))}" for cell in CELLS)


def scan_sentences(images: Sequence[dict[str, Any]]) -> list[str]:
    """'Image k: <scan>.' for every image of a scene."""
    return [f"Image {k}: {image_scan(image)}." for k, image in enumerate(images, start=1)]


def target_sentence(obj: dict[str, Any], image: int) -> str:
    """The conclusion with everything the box depends on: what, how large, where, which image."""
    return f"The target is the {object_phrase(obj)}, at the {cell_name(obj['box'])} of image {image}."
