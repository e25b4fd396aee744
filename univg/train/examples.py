"""Grounding records -> training examples for TRL (shared by SFT and GRPO).

An example is conversational, in TRL's prompt/completion form, with an `images` column:
  prompt      [user turn: one {"type": "image"} per image, then question + instruction]
  completion  [assistant turn: <think>cot</think><answer>...</answer>]   (SFT only)
  images      list of PIL images, in the order of the placeholders
  box, target_image, task, id   passed through (GRPO's reward functions receive them as kwargs)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from univg.answers import format_completion
from univg.data.images import ImageError, ImagePolicy, data_root_for, load_record_images
from univg.prompts import assistant_message, user_message
from univg.schema import RecordError, read_records


def record_to_example(
    record: dict[str, Any], base_dir: str | Path, answer_format: str = "indexed", with_completion: bool = True,
    policy: ImagePolicy = ImagePolicy(),
) -> dict[str, Any]:
    example = {
        "prompt": [user_message(len(record["images"]), record["question"], answer_format)],
        "images": load_record_images(record, base_dir, policy),
        "box": list(record["box"]),
        "target_image": int(record["target_image"]),
        "task": record["task"],
        "id": record["id"],
    }
    if with_completion:
        if not record.get("cot"):
            raise RecordError(f"record {record['id']!r} has no 'cot': SFT needs validated CoT data")
        completion = format_completion(record["cot"], record["box"], record["target_image"], answer_format)
        example["completion"] = [assistant_message(completion)]
    return example


def load_examples(
    path: str | Path,
    image_root: str | Path | None = None,
    answer_format: str = "indexed",
    with_completion: bool = True,
    limit: int | None = None,
    policy: ImagePolicy | None = None,
) -> list[dict[str, Any]]:
    """Read a record file strictly (a bad line stops with file:line and reasons) into examples.
    Images must satisfy `policy` (default: inside the file's data root, univg.data.images)."""
    path = Path(path)
    base_dir = Path(image_root) if image_root else path.parent
    policy = policy or ImagePolicy(root=data_root_for(path, image_root))
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    examples = []
    for number, record in enumerate(records, start=1):
        try:
            examples.append(record_to_example(record, base_dir, answer_format, with_completion, policy))
        except ImageError as error:
            raise ImageError(f"{path}:{number} (id {record['id']!r}): {error}") from None
    return examples
