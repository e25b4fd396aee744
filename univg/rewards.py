"""GRPO reward functions (contract), in TRL's reward-function signature.

TRL calls each function with `completions` (strings, or chat messages) plus every dataset column
as a keyword list, one entry per completion: so `box` is a list of boxes and `target_image` a
list of 1-based ints. Every function returns one float per completion.

- `iou_reward`: continuous IoU of the answer's box with the ground truth (no 0.5 threshold).
  The box is read by THE shared parser (univg.answers) with no untagged fallback: a
  completion without a closed `<answer>` earns nothing, as in the paper. In the `indexed`
  format a missing or wrong image index earns 0.
- `format_reward`: 1.0 when the whole completion matches the paper's strict pattern (with
  `Image-k:` required in the `indexed` format), else 0.0.
- `image_index_reward` (optional extra): 1.0 when the answer names the target image.

Which rewards GRPO uses, and their weights, come from params (`grpo.<profile>.rewards`, a map
of name -> weight, open-r1 style); `reward_functions` looks them up in `REWARD_FUNCTIONS`.
TRL passes `answer_format` nowhere, so it is bound with functools.partial; TRL reads a partial's
name from the wrapped function, so the logged metric names stay `rewards/iou_reward/mean`,
`rewards/format_reward/mean`, ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from univg.answers import check_format, is_strict_format, parse_answer
from univg.schema import iou


def _per_completion(name: str, values: Any, count: int) -> list[Any]:
    """A dataset column as TRL passes it: one entry per completion. Anything else is a wiring bug."""
    if values is None or isinstance(values, str | bytes) or len(values) != count:
        got = "nothing" if values is None else f"{type(values).__name__} of length {len(values)}"
        raise ValueError(f"reward column '{name}' must hold one entry per completion ({count}), got {got}")
    return list(values)


def _truth_box(box: Any) -> list[float]:
    if not isinstance(box, Sequence) or len(box) != 4:
        raise ValueError(f"ground-truth box must be [x1, y1, x2, y2], got {box!r}")
    return [float(v) for v in box]


def completion_iou(completion: Any, box: Sequence[float], target_image: int | None, answer_format: str) -> float:
    """IoU earned by one completion (0.0 for no answer, no box, or a wrong/missing index)."""
    parsed = parse_answer(completion, allow_untagged=False)
    if parsed is None:
        return 0.0
    if answer_format == "indexed" and parsed.image_index != target_image:
        return 0.0
    return iou(parsed.box, _truth_box(box))


def iou_reward(
    completions: Sequence[Any],
    box: Sequence[Sequence[float]],
    target_image: Sequence[int] | None = None,
    answer_format: str = "indexed",
    **kwargs: Any,
) -> list[float]:
    """Continuous IoU of each completion's answer box with its ground-truth `box` (contract)."""
    check_format(answer_format)
    boxes = _per_completion("box", box, len(completions))
    if answer_format == "indexed":
        if target_image is None:
            raise ValueError("iou_reward in 'indexed' format needs the 'target_image' column")
        targets = [int(t) for t in _per_completion("target_image", target_image, len(completions))]
    else:
        targets = [None] * len(completions)  # the univg-r1 answer names no image
    return [
        completion_iou(completion, truth, target, answer_format)
        for completion, truth, target in zip(completions, boxes, targets, strict=True)
    ]


def format_reward(completions: Sequence[Any], answer_format: str = "indexed", **kwargs: Any) -> list[float]:
    """1.0 when the whole completion matches the strict answer pattern, else 0.0 (contract)."""
    check_format(answer_format)
    return [1.0 if is_strict_format(completion, answer_format) else 0.0 for completion in completions]


def image_index_reward(
    completions: Sequence[Any], target_image: Sequence[int], **kwargs: Any
) -> list[float]:
    """1.0 when the parsed answer names the target image (an optional shaping reward)."""
    targets = _per_completion("target_image", target_image, len(completions))
    rewards = []
    for completion, target in zip(completions, targets, strict=True):
        parsed = parse_answer(completion, allow_untagged=False)
        rewards.append(1.0 if parsed is not None and parsed.image_index == int(target) else 0.0)
    return rewards


# Looked up by name from params (`grpo.<profile>.rewards`). Each takes `answer_format` or ignores it.
REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {
    "iou": iou_reward,
    "format": format_reward,
    "image_index": image_index_reward,
}


def reward_functions(names: Sequence[str], answer_format: str = "indexed") -> list[Callable[..., list[float]]]:
    """The named reward functions with `answer_format` bound (TRL keeps the wrapped names)."""
    check_format(answer_format)
    unknown = [name for name in names if name not in REWARD_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; choose from {sorted(REWARD_FUNCTIONS)}")
    if not names:
        raise ValueError("at least one reward function is needed")
    return [functools.partial(REWARD_FUNCTIONS[name], answer_format=answer_format) for name in names]
