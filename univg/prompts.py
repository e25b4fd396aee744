"""How a record becomes a chat prompt, in one place for SFT, GRPO, eval, serving and the teachers.

The user turn holds all images first, then the question and the answer format's instruction
(univg.answers, which also writes the SFT target and reads the model's answer), then the model
family's note on its box convention (univg.models.family; empty for the 0..1000 families).
"""

from __future__ import annotations

from typing import Any

from univg.answers import DEFAULT_FORMAT, instruction_text


def user_message(num_images: int, question: str, answer_format: str = DEFAULT_FORMAT,
                 family_note: str = "") -> dict[str, Any]:
    """The chat user turn: one {'type': 'image'} placeholder per image, then the text."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": instruction_text(question, answer_format) + family_note})
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}
