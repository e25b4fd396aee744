"""The answer formats (contract): how an answer is asked for, written and read, side by side.

A completion is `<think>CHAIN</think><answer>BOX</answer>`. Two formats:
- `univg-r1` (the released model and data): the answer is the box, `(x1,y1),(x2,y2)`;
- `indexed` (this project's default): the answer also names the 1-based image,
  `Image-2: (x1,y1),(x2,y2)`.
Boxes are integers in 0..1000 relative to the target image.

Reading (one parser, shared by the GRPO rewards, scoring, serving and the teachers):
- The answer span is the text between the first `<answer>` and the next `</answer>`. An
  `<answer>` that never closes gives no box: a truncated completion earns nothing.
- The box is the first `(int,int),(int,int)` in the span (spaces allowed after the commas);
  an `Image-k:` just before it gives the 1-based image index.
- Scoring (not rewards) also accepts text with no `<answer>` tag at all, so untrained base models
  can be scored: then the span is the whole text with any `<think>...</think>` removed.
The strict pattern of the format reward is `STRICT_FORMAT` below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

AnswerFormat = Literal["indexed", "univg-r1"]
ANSWER_FORMATS: tuple[str, ...] = get_args(AnswerFormat)
DEFAULT_FORMAT = "indexed"


def check_format(answer_format: str) -> str:
    """`answer_format` itself, or a ValueError naming the formats there are."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {answer_format!r}; choose from {list(ANSWER_FORMATS)}")
    return answer_format


# ----------------------------------------------------------------------------- asking
# The instruction after the question (the paper's wording for univg-r1).
INSTRUCTIONS: dict[str, str] = {
    "univg-r1": (
        "First output the thinking process in <think> </think> tags and then output the bounding box "
        "in <answer> </answer> tags."
    ),
    "indexed": (
        "First output the thinking process in <think> </think> tags and then output the image index "
        "and the bounding box in <answer> </answer> tags, as Image-k: (x1,y1),(x2,y2)."
    ),
}


def instruction_text(question: str, answer_format: str = DEFAULT_FORMAT) -> str:
    """The user turn's text: the question, then the format's instruction."""
    return f"{question} {INSTRUCTIONS[check_format(answer_format)]}"


# ----------------------------------------------------------------------------- writing
def format_box(box: Sequence[int], target_image: int | None = None, answer_format: str = DEFAULT_FORMAT) -> str:
    """`Image-k: (x1,y1),(x2,y2)` (indexed) or `(x1,y1),(x2,y2)` (univg-r1)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    coords = f"({x1},{y1}),({x2},{y2})"
    return f"Image-{target_image}: {coords}" if check_format(answer_format) == "indexed" else coords


def format_completion(cot: str, box: Sequence[int], target_image: int, answer_format: str = DEFAULT_FORMAT) -> str:
    """The SFT target: `<think>cot</think><answer>...</answer>`."""
    return f"<think>{cot.strip()}</think><answer>{format_box(box, target_image, answer_format)}</answer>"


# ----------------------------------------------------------------------------- reading
BOX_PATTERN = r"\((\d+),\s*(\d+)\),\s*\((\d+),\s*(\d+)\)"
_BOX = re.compile(BOX_PATTERN)
_INDEX_BEFORE = re.compile(r"Image-(\d+):\s*$")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)

# The strict whole-completion patterns of the format reward (searched with DOTALL): text before
# <think> is tolerated; after </answer> only one final newline ($ allows exactly that).
STRICT_FORMAT: dict[str, re.Pattern[str]] = {
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


def is_strict_format(completion: Any, answer_format: str = DEFAULT_FORMAT) -> bool:
    """True when the whole completion matches the strict pattern of the format reward."""
    return STRICT_FORMAT[check_format(answer_format)].search(completion_text(completion)) is not None
