"""How a record becomes a prompt and an SFT target, in one place for SFT, GRPO, eval and serving.

The user turn holds all images first, then the question and the paper's instruction. The
completion is `<think>CHAIN</think><answer>BOX</answer>`; in the `indexed` format (the project
default) the answer also names the image: `Image-2: (x1,y1),(x2,y2)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

INSTRUCTIONS = {
    "univg-r1": (
        "First output the thinking process in <think> </think> tags and then output the bounding box "
        "in <answer> </answer> tags."
    ),
    "indexed": (
        "First output the thinking process in <think> </think> tags and then output the image index "
        "and the bounding box in <answer> </answer> tags, as Image-k: (x1,y1),(x2,y2)."
    ),
}


def instruction_text(question: str, answer_format: str = "indexed") -> str:
    if answer_format not in INSTRUCTIONS:
        raise ValueError(f"unknown answer_format {answer_format!r}; choose from {sorted(INSTRUCTIONS)}")
    return f"{question} {INSTRUCTIONS[answer_format]}"


def user_message(num_images: int, question: str, answer_format: str = "indexed") -> dict[str, Any]:
    """The chat user turn: one {'type': 'image'} placeholder per image, then the text."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": instruction_text(question, answer_format)})
    return {"role": "user", "content": content}


def format_box(box: Sequence[int], target_image: int | None = None, answer_format: str = "indexed") -> str:
    x1, y1, x2, y2 = (int(v) for v in box)
    coords = f"({x1},{y1}),({x2},{y2})"
    return f"Image-{target_image}: {coords}" if answer_format == "indexed" else coords


def format_completion(cot: str, box: Sequence[int], target_image: int, answer_format: str = "indexed") -> str:
    """The SFT target: `<think>cot</think><answer>...</answer>`."""
    return f"<think>{cot.strip()}</think><answer>{format_box(box, target_image, answer_format)}</answer>"


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}
