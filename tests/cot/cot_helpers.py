"""Record builders and JSONL helpers shared by the CoT tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def good_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "id": "r0", "task": "diff", "images": ["img/a.png", "img/b.png"],
        "question": "What changed between image 1 and image 2? Locate it in image 2.",
        "target_image": 2, "box": [100, 120, 300, 340], "source": "test",
        "cot": "Image 1 shows a red circle. Image 2 adds a blue square at the top left, so the answer is in image 2.",
    }
    record.update(overrides)
    return record


def write_lines(path: Path, rows: list[Any]) -> Path:
    """Rows as JSONL; a str row is written as-is, bytes raw (malformed and non-UTF-8 lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for row in rows:
            if isinstance(row, bytes):
                handle.write(row.rstrip(b"\n") + b"\n")
            elif isinstance(row, str):
                handle.write(row.encode() + b"\n")
            else:
                handle.write(json.dumps(row).encode() + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
