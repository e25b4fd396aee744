"""The one answer parser, shared by the GRPO rewards and by scoring (contract).

- The answer span is the text between the first `<answer>` and the next `</answer>`. An
  `<answer>` that never closes gives no box: a truncated completion earns nothing.
- The box is the first `(int,int),(int,int)` in the span (spaces allowed after the commas);
  an `Image-k:` just before it gives the 1-based image index.
- Scoring (not rewards) also accepts text with no `<answer>` tag at all, so untrained base models
  can be scored: then the span is the whole text with any `<think>...</think>` removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

BOX_PATTERN = r"\((\d+),\s*(\d+)\),\s*\((\d+),\s*(\d+)\)"
_BOX = re.compile(BOX_PATTERN)
_INDEX_BEFORE = re.compile(r"Image-(\d+):\s*$")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)

# The strict whole-completion patterns of the format reward (searched with DOTALL): text before
# <think> is tolerated; after </answer> only one final newline ($ allows exactly that).
STRICT_FORMAT = {
    "univg-r1": re.compile(
        r"<think>.*?</think>\s*<answer>\(\d+,\s*\d+\),\s*\(\d+,\s*\d+\)</answer>$", re.DOTALL
    ),
    "indexed": re.compile(
        r"<think>.*?</think>\s*<answer>Image-\d+:\s*\(\d+,\s*\d+\),\s*\(\d+,\s*\d+\)</answer>$", re.DOTALL
    ),
}


@dataclass(frozen=True)
class ParsedAnswer:
    box: tuple[int, int, int, int]
    image_index: int | None  # 1-based, None when the answer names no image


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes strings or chat messages [{'role', 'content'}]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return completion_text(completion.get("content", ""))
    if isinstance(completion, list):
        parts = []
        for item in completion:
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append(str(item.get("text", "")))
            elif isinstance(item, dict) and "content" in item:
                parts.append(completion_text(item["content"]))
            elif isinstance(item, str):
                parts.append(item)
        return "".join(parts)
    return "" if completion is None else str(completion)


def answer_span(text: str, allow_untagged: bool = False) -> str | None:
    """The text the box is read from, or None when there is no usable answer span."""
    start = text.find("<answer>")
    if start < 0:
        return _THINK_BLOCK.sub("", text) if allow_untagged else None
    end = text.find("</answer>", start + len("<answer>"))
    if end < 0:
        return None
    return text[start + len("<answer>") : end]


def parse_answer(completion: Any, allow_untagged: bool = False) -> ParsedAnswer | None:
    """Box (and image index) of a completion, or None. `allow_untagged` is for scoring only."""
    span = answer_span(completion_text(completion), allow_untagged)
    if span is None:
        return None
    match = _BOX.search(span)
    if match is None:
        return None
    index = _INDEX_BEFORE.search(span[: match.start()])
    box = tuple(int(v) for v in match.groups())
    return ParsedAnswer(box=box, image_index=int(index.group(1)) if index else None)  # type: ignore[arg-type]


def is_strict_format(completion: Any, answer_format: str = "indexed") -> bool:
    """True when the whole completion matches the strict pattern of the format reward."""
    if answer_format not in STRICT_FORMAT:
        raise ValueError(f"unknown answer_format {answer_format!r}; choose from {sorted(STRICT_FORMAT)}")
    return STRICT_FORMAT[answer_format].search(completion_text(completion)) is not None
