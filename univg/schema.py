"""The grounding record (contract), its validation, and box/coordinate helpers.

A record is one JSONL line:
  id (str, unique), task (str), images (paths relative to the JSONL file's folder unless an
  image root is given), question (str), target_image (1-based int), box ([x1,y1,x2,y2] integers
  0..1000 relative to the target image, x1<x2, y1<y2), optional cot (str, no tags), optional meta
  (dict), source (str).

Validation returns short reasons instead of raising, so that callers can quarantine a row and
keep going: bad input is reported, never silently dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from univg.errors import UserError

COORD_MAX = 1000
MAX_QUESTION_CHARS = 4000  # MIG-Bench's longest is under 1,000; a longer one is a broken row, not a question


class RecordError(UserError, ValueError):
    """A records file with a line that breaks the contract; the message gives file:line and reasons."""

Box = tuple[float, float, float, float]


@dataclass
class GroundingRecord:
    id: str
    task: str
    images: list[str]
    question: str
    target_image: int
    box: list[int]
    source: str
    cot: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["cot"] is None:
            del data["cot"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundingRecord:
        reasons = record_reasons(data)
        if reasons:
            raise ValueError(f"record {data.get('id', '?')!r}: " + "; ".join(reasons))
        return cls(
            id=data["id"], task=data["task"], images=list(data["images"]), question=data["question"],
            target_image=int(data["target_image"]), box=[int(v) for v in data["box"]],
            source=data["source"], cot=data.get("cot"), meta=dict(data.get("meta") or {}),
        )


REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "task": str,
    "images": list,
    "question": str,
    "target_image": int,
    "box": list,
    "source": str,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def record_reasons(data: Any) -> list[str]:
    """Every way `data` breaks the record contract, as short reasons (empty list: valid)."""
    if not isinstance(data, dict):
        return [f"not a JSON object ({type(data).__name__})"]
    reasons = []
    for name, kind in REQUIRED_FIELDS.items():
        if name not in data:
            reasons.append(f"missing field '{name}'")
        elif kind is int and not _is_int(data[name]):
            reasons.append(f"'{name}' is not an integer: {data[name]!r}")
        elif kind is not int and not isinstance(data[name], kind):
            reasons.append(f"'{name}' is not a {kind.__name__}: {data[name]!r}"[:200])
    if isinstance(data.get("id"), str) and not data["id"].strip():
        reasons.append("empty id")
    if isinstance(data.get("question"), str) and not data["question"].strip():
        reasons.append("empty question")
    if isinstance(data.get("question"), str) and len(data["question"]) > MAX_QUESTION_CHARS:
        reasons.append(f"question too long: {len(data['question'])} characters (limit {MAX_QUESTION_CHARS})")
    images = data.get("images")
    if isinstance(images, list):
        if not images:
            reasons.append("no images")
        elif not all(isinstance(p, str) and p for p in images):
            reasons.append("images must be non-empty path strings")
    box = data.get("box")
    if isinstance(box, list):
        reasons.extend(box_reasons(box))
    target = data.get("target_image")
    if _is_int(target) and isinstance(images, list) and images and not 1 <= target <= len(images):
        reasons.append(f"target_image {target} out of range 1..{len(images)}")
    if "cot" in data and data["cot"] is not None and not isinstance(data["cot"], str):
        reasons.append("'cot' is not a string")
    if "meta" in data and data["meta"] is not None and not isinstance(data["meta"], dict):
        reasons.append("'meta' is not an object")
    return reasons


def box_reasons(box: Any) -> list[str]:
    """Why `box` is not a valid [x1,y1,x2,y2] in 0..1000 integer space (empty list: valid)."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return [f"box must be 4 numbers, got {box!r}"[:200]]
    if not all(_is_int(v) for v in box):
        return [f"box values must be integers: {list(box)}"]
    reasons = []
    if not all(0 <= v <= COORD_MAX for v in box):
        reasons.append(f"box out of range 0..{COORD_MAX}: {list(box)}")
    if not (box[0] < box[2] and box[1] < box[3]):
        reasons.append(f"box inverted or empty (need x1<x2, y1<y2): {list(box)}")
    return reasons


@dataclass
class JsonlLine:
    """One line of a JSONL file: its number, raw text, parsed object (if any) and problems."""

    number: int
    raw: str
    data: Any = None
    reasons: list[str] = field(default_factory=list)


def read_jsonl_lines(path: str | Path) -> Iterator[JsonlLine]:
    """Yield every non-blank line with its parse problems; bad lines are reported, never skipped."""
    with open(path, "rb") as handle:
        for number, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as error:
                raw = raw_bytes.decode("utf-8", errors="replace")
                yield JsonlLine(number, raw.rstrip("\n"), None, [f"not UTF-8 (byte {error.start})"])
                continue
            if not raw.strip():
                continue
            try:
                yield JsonlLine(number, raw.rstrip("\n"), json.loads(raw))
            except json.JSONDecodeError as error:
                yield JsonlLine(number, raw.rstrip("\n"), None, [f"malformed JSON: {error.msg} (col {error.colno})"])


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Strictly read a record file: the first bad line stops with its file, line number and reasons."""
    records = []
    for line in read_jsonl_lines(path):
        reasons = line.reasons or record_reasons(line.data)
        if reasons:
            raise RecordError(f"{path}:{line.number}: " + "; ".join(reasons))
        records.append(line.data)
    return records


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed to `path` when the block ends well, so a
    crash leaves the old file or none, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    yield partial
    os.replace(partial, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_jsonl(path: str | Path, rows: Sequence[dict[str, Any]] | Iterator[dict[str, Any]]) -> int:
    """Write rows as JSONL atomically (see atomic_path)."""
    count = 0
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# ----------------------------------------------------------------------------- coordinates
def _clamp(value: float) -> int:
    return int(min(COORD_MAX, max(0, round(value))))


def pixels_to_norm(box: Sequence[float], width: int, height: int) -> list[int]:
    """Absolute pixel box -> 0..1000 integers (Qwen2-VL convention), clamped to the image."""
    x1, y1, x2, y2 = box
    return [_clamp(x1 * COORD_MAX / width), _clamp(y1 * COORD_MAX / height),
            _clamp(x2 * COORD_MAX / width), _clamp(y2 * COORD_MAX / height)]


def norm_to_pixels(box: Sequence[float], width: int, height: int) -> list[float]:
    """0..1000 box -> absolute pixels: x_abs = x * width / 1000."""
    x1, y1, x2, y2 = box
    return [x1 * width / COORD_MAX, y1 * height / COORD_MAX, x2 * width / COORD_MAX, y2 * height / COORD_MAX]


def unit_to_norm(box: Sequence[float]) -> list[int]:
    """0..1 floats (MIG-Bench answers; a few are slightly above 1) -> 0..1000 integers, clamped."""
    return [_clamp(v * COORD_MAX) for v in box]


def norm_to_unit(box: Sequence[float]) -> list[float]:
    return [v / COORD_MAX for v in box]


def qwen25_to_norm(box: Sequence[float], resized_width: int, resized_height: int) -> list[int]:
    """Qwen2.5-VL answers in absolute pixels of the *resized* image; bring them to 0..1000."""
    return pixels_to_norm(box, resized_width, resized_height)


def iou(pred: Sequence[float], truth: Sequence[float]) -> float:
    """Continuous IoU of two [x1,y1,x2,y2] boxes as given (no clipping).

    A predicted box with x2<=x1 or y2<=y1 has IoU 0.
    """
    px1, py1, px2, py2 = (float(v) for v in pred)
    tx1, ty1, tx2, ty2 = (float(v) for v in truth)
    if px2 <= px1 or py2 <= py1:
        return 0.0
    inter_w = min(px2, tx2) - max(px1, tx1)
    inter_h = min(py2, ty2) - max(py1, ty1)
    inter = max(0.0, inter_w) * max(0.0, inter_h)
    union = (px2 - px1) * (py2 - py1) + max(0.0, tx2 - tx1) * max(0.0, ty2 - ty1) - inter
    return inter / union if union > 0 else 0.0


def batch_iou(preds: Sequence[Sequence[float]], truths: Sequence[Sequence[float]]) -> list[float]:
    """Element-wise IoU for many pairs at once (torchvision's box_iou on the diagonal)."""
    import torch
    from torchvision.ops import box_iou

    if len(preds) == 0:
        return []
    pred = torch.tensor(preds, dtype=torch.float64)
    truth = torch.tensor(truths, dtype=torch.float64)
    valid = (pred[:, 2] > pred[:, 0]) & (pred[:, 3] > pred[:, 1])
    # box_iou is pairwise; the diagonal is what we want. Chunk to keep memory flat.
    out = []
    for start in range(0, len(pred), 1024):
        p, t = pred[start : start + 1024], truth[start : start + 1024]
        out.append(torch.diagonal(box_iou(p, t)))
    values = torch.cat(out).clamp(min=0.0)
    return torch.where(valid, values, torch.zeros_like(values)).tolist()
