"""`univg data inspect`: check a record file line by line and draw a contact sheet.

Every problem is reported with its line number and short reasons (malformed JSON, non-UTF-8
bytes, schema breaks, boxes out of range or inverted, target_image out of range, duplicate ids,
missing or undecodable images, a mig-synth scene that disagrees with the record); nothing is
skipped silently. The contact sheet shows valid samples, one per row: the images side by side,
the ground-truth box in green on the target image, then the task and the wrapped question.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from univg.data.images import ImageError, ImagePolicy, data_root_for, image_problems, load_record_images
from univg.schema import COORD_MAX, read_jsonl_lines, record_reasons

TILE_HEIGHT = 168
PAD = 8
FONT_SIZE = 13
GT_COLOUR = (0, 200, 0)
REPORT_PROBLEM_LIMIT = 50


def scene_reasons(record: dict[str, Any]) -> list[str]:
    """A mig-synth scene (meta.scene) whose target disagrees with the record's answer."""
    scene = (record.get("meta") or {}).get("scene")
    if scene is None:
        return []
    try:
        target = scene["target"]
        obj = scene["images"][target["image"] - 1]["objects"][target["object"]]
    except (KeyError, IndexError, TypeError):
        return ["meta.scene has no readable target object"]
    reasons = []
    if target["image"] != record["target_image"]:
        reasons.append(f"meta.scene target image {target['image']} != target_image {record['target_image']}")
    if obj.get("box") != record["box"]:
        reasons.append(f"meta.scene target box {obj.get('box')} != box {record['box']}")
    return reasons


def line_reasons(data: Any, base_dir: Path, policy: ImagePolicy = ImagePolicy()) -> list[str]:
    """Schema problems first; images (univg.data.images rules) and scene only on a schema-valid record."""
    reasons = record_reasons(data)
    if reasons:
        return reasons
    return image_problems(data["images"], base_dir, policy) + scene_reasons(data)


def inspect_file(
    path: Path, image_root: Path | None = None, sheet_path: Path | None = None, max_samples: int = 16
) -> dict[str, Any]:
    """Check every non-blank line of a record file; optionally write a contact-sheet PNG.

    Returns {"file", "lines" (non-blank lines checked), "valid", "invalid", "per_task" (valid
    records per task), "problems": [{"line", "id", "reasons"}]} plus "sheet" when one was written.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such record file")
    base_dir = Path(image_root) if image_root else path.parent
    policy = ImagePolicy(root=data_root_for(path, image_root))
    first_line_of: dict[str, int] = {}
    problems: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    lines = 0
    for line in read_jsonl_lines(path):
        lines += 1
        reasons = list(line.reasons) or line_reasons(line.data, base_dir, policy)
        record_id = line.data.get("id") if isinstance(line.data, dict) else None
        if isinstance(record_id, str):
            if record_id in first_line_of:
                reasons.append(f"duplicate id {record_id!r} (first on line {first_line_of[record_id]})")
            else:
                first_line_of[record_id] = line.number
        if reasons:
            shown_id = record_id if isinstance(record_id, str | int) else None
            problems.append({"line": line.number, "id": shown_id, "reasons": reasons})
        else:
            valid.append(line.data)
    report: dict[str, Any] = {
        "file": str(path),
        "lines": lines,
        "valid": len(valid),
        "invalid": len(problems),
        "per_task": dict(sorted(Counter(r["task"] for r in valid).items())),
        "problems": problems,
    }
    if sheet_path is not None:
        report["sheet"] = str(write_contact_sheet(valid, base_dir, Path(sheet_path), max_samples, policy))
    return report


# ----------------------------------------------------------------------------- contact sheet
def pick_samples(records: list[dict[str, Any]], max_samples: int) -> list[dict[str, Any]]:
    """Round-robin over tasks in file order, so a sheet shows every task before repeating one."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    picked: list[dict[str, Any]] = []
    queues = list(by_task.values())
    while len(picked) < max_samples and any(queues):
        for queue in queues:
            if queue and len(picked) < max_samples:
                picked.append(queue.pop(0))
    return picked


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tiles(record: dict[str, Any], base_dir: Path, policy: ImagePolicy = ImagePolicy()) -> list[Image.Image]:
    """The sample's images scaled to TILE_HEIGHT, the ground truth drawn on the target one."""
    tiles = []
    for number, image in enumerate(load_record_images(record, base_dir, policy), start=1):
        width = max(1, round(image.width * TILE_HEIGHT / image.height))
        tile = image.resize((width, TILE_HEIGHT), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        if number == record["target_image"]:
            x1, y1, x2, y2 = record["box"]
            sx, sy = width / COORD_MAX, TILE_HEIGHT / COORD_MAX
            # a thin black rim keeps the green box visible on green objects
            draw.rectangle([x1 * sx - 1, y1 * sy - 1, x2 * sx + 1, y2 * sy + 1], outline=(0, 0, 0), width=1)
            draw.rectangle([x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=GT_COLOUR, width=2)
        draw.text((3, 1), str(number), fill=(0, 0, 0), font=_font(FONT_SIZE))
        tiles.append(tile)
    return tiles


def _caption(record: dict[str, Any], width_px: int) -> list[str]:
    chars = max(20, int(width_px / (FONT_SIZE * 0.55)))
    head = f"{record['id']}  [{record['task']}]  answer: image {record['target_image']} {record['box']}"
    return textwrap.wrap(head, chars) + textwrap.wrap(record["question"], chars)


def write_contact_sheet(
    records: list[dict[str, Any]], base_dir: Path, sheet_path: Path, max_samples: int = 16,
    policy: ImagePolicy = ImagePolicy(),
) -> Path:
    """One row per sample; records whose images cannot be read are left out (inspect lists them)."""
    rows = []
    for record in pick_samples(records, max_samples):
        try:
            rows.append((record, _tiles(record, base_dir, policy)))
        except ImageError:
            continue
    font = _font(FONT_SIZE)
    line_height = FONT_SIZE + 4
    width = max([sum(t.width + PAD for t in tiles) + PAD for _, tiles in rows] + [480])
    captions = [_caption(record, width - 2 * PAD) for record, _ in rows]
    height = PAD + sum(TILE_HEIGHT + PAD + len(c) * line_height + PAD for c in captions)
    sheet = Image.new("RGB", (width, max(height, 2 * PAD + line_height)), "white")
    draw = ImageDraw.Draw(sheet)
    y = PAD
    if not rows:
        draw.text((PAD, PAD), "no valid samples to show", fill=(0, 0, 0), font=font)
    for (_, tiles), caption in zip(rows, captions, strict=True):
        x = PAD
        for tile in tiles:
            sheet.paste(tile, (x, y))
            x += tile.width + PAD
        y += TILE_HEIGHT + PAD
        for text in caption:
            draw.text((PAD, y), text, fill=(0, 0, 0), font=font)
            y += line_height
        y += PAD
        draw.line([(0, y - PAD // 2), (width, y - PAD // 2)], fill=(200, 200, 200))
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(sheet_path, format="PNG")
    return sheet_path


# ----------------------------------------------------------------------------- CLI text
def format_report(report: dict[str, Any]) -> str:
    """The report as a human-readable table for the terminal."""
    out = [
        f"file     {report['file']}",
        f"lines    {report['lines']}   valid {report['valid']}   invalid {report['invalid']}",
    ]
    if report["per_task"]:
        width = max(len(t) for t in report["per_task"]) + 2
        out += ["", f"{'task':<{width}}valid", f"{'-' * (width - 2)}  -----"]
        out += [f"{task:<{width}}{count}" for task, count in report["per_task"].items()]
    problems = report["problems"]
    if problems:
        out += ["", f"problems ({len(problems)}):"]
        for problem in problems[:REPORT_PROBLEM_LIMIT]:
            shown_id = "" if problem["id"] is None else f" id={problem['id']}"
            out.append(f"  line {problem['line']}{shown_id}: " + "; ".join(problem["reasons"]))
        if len(problems) > REPORT_PROBLEM_LIMIT:
            out.append(f"  ... and {len(problems) - REPORT_PROBLEM_LIMIT} more")
    else:
        out += ["", "no problems found"]
    if report.get("sheet"):
        out += ["", f"contact sheet: {report['sheet']}"]
    return "\n".join(out)
