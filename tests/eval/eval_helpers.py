"""Small writers shared by the evaluation tests (imported as `eval_helpers`)."""

from __future__ import annotations

import json
from pathlib import Path


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def synth_record(i: int, task: str = "common_object", box=(100, 100, 300, 300), target: int = 2, images=None,
                 meta=None) -> dict:
    record = {"id": f"r{i}", "task": task, "images": images or ["a.png", "b.png"], "question": "Locate it.",
              "target_image": target, "box": list(box), "source": "test"}
    if meta:
        record["meta"] = meta
    return record
