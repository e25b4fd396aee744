"""The teacher interface: teachers write candidate chains of thought; `select_best` keeps one per record.

A teacher is shown the answer (target image and box) and writes reasoning as if it had not been:
  - `rule`   univg/cot/rule_teacher.py: faithful chains from a mig-synth record's saved scene;
  - `openai` univg/cot/openai_teacher.py: any OpenAI-compatible chat-completions endpoint.
`univg.cot.generate.make_teacher` picks one from params.

Every chain ends by naming the target image: validation rejects a chain whose last named image is
not the target (`univg.data.naming.last_named_image` is the one parser for that, shared with validation).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from univg.answers import BOX_PATTERN
from univg.data.naming import last_named_image
from univg.schema import iou

_CHAIN_BOX = re.compile(BOX_PATTERN)


# ----------------------------------------------------------------------------- interface
@dataclass
class Candidate:
    """One chain written by a teacher (`answer_box`/`answer_image` only when it wrote its own answer)."""

    text: str
    answer_box: list[int] | None = None
    answer_image: int | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.requests += other.requests
        self.retries += other.retries


@dataclass
class RowOutcome:
    """What a teacher produced for one record: the candidates and the pick, or why it failed."""

    index: int
    candidates: list[Candidate] = field(default_factory=list)
    chosen: int = 0
    scores: list[float] = field(default_factory=list)
    selected_by: str = "rule"
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    failure: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Teacher(ABC):
    """Writes `num_candidates` chains per record and picks one (select_best)."""

    name: str = "teacher"

    @abstractmethod
    def run(
        self, records: Sequence[dict[str, Any]], base_dir: Path, progress: Callable[[int], None] | None = None
    ) -> list[RowOutcome]:
        """One outcome per record, in input order; `progress(k)` is told of k finished rows."""

    def cost(self, usage: Usage) -> float:
        """Money spent for `usage` (0 for local teachers)."""
        return 0.0


# ----------------------------------------------------------------------------- selection
Judge = Callable[[dict[str, Any], list[str]], "int | None"]


def rule_score(record: dict[str, Any], candidate: Candidate | str, min_chars: int = 20, max_chars: int = 2000) -> float:
    """0..1: names the target image last (0.6), length within bounds (0.2), no box contradicting the answer (0.2)."""
    cand = candidate if isinstance(candidate, Candidate) else Candidate(str(candidate))
    text = cand.text.strip()
    score = 0.6 if last_named_image(text) == record.get("target_image") else 0.0
    score += 0.2 if min_chars <= len(text) <= max_chars else 0.0
    score += 0.0 if _contradicts_box(record, cand) else 0.2
    return round(score, 4)


def _contradicts_box(record: dict[str, Any], cand: Candidate) -> bool:
    truth = record.get("box")
    if cand.answer_box is not None and iou(cand.answer_box, truth) < 0.5:
        return True
    # A box the chain concludes with (its last one) that the question did not supply must agree.
    boxes = list(_CHAIN_BOX.finditer(cand.text))
    if not boxes:
        return False
    last = boxes[-1]
    if last.group(0).replace(" ", "") in str(record.get("question", "")).replace(" ", ""):
        return False
    return iou([int(v) for v in last.groups()], truth) < 0.5


def select_best(
    record: dict[str, Any], candidates: Sequence[Candidate | str], judge: Judge | None = None
) -> tuple[int, list[float]]:
    """(index of the kept candidate, rule score of each).

    A judge, when given, chooses among the candidates that already name the target image last
    (a judge cannot rescue an unfaithful chain, and one faithful chain needs no judge call);
    it returns an index into the list it was shown, or None to fall back to the rule score.
    """
    scores = [rule_score(record, c) for c in candidates]
    if not candidates:
        raise ValueError("select_best needs at least one candidate")
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    if judge is None:
        return best, scores
    faithful = [i for i, c in enumerate(candidates) if _names_target(record, c)]
    if len(faithful) < 2:
        return best, scores
    picked = judge(record, [_text(candidates[i]) for i in faithful])
    if picked is None or not 0 <= picked < len(faithful):
        return best, scores
    return faithful[picked], scores


def _text(candidate: Candidate | str) -> str:
    return candidate.text if isinstance(candidate, Candidate) else str(candidate)


def _names_target(record: dict[str, Any], candidate: Candidate | str) -> bool:
    return last_named_image(_text(candidate)) == record.get("target_image")
