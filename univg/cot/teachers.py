"""Teachers write candidate chains of thought; `select_best` keeps one per record.

A teacher is shown the answer (target image and box) and writes reasoning as if it had not been:
  - `rule`   writes short, faithful chains from a mig-synth record's saved scene description
             (meta.scene): which image holds what, what differs, which candidate matches, where.
             Records without a scene (imported data) get a generic chain that only states the
             conclusion; such rows are flagged with meta.cot.scene = False so they can be filtered.
  - `openai` any OpenAI-compatible chat-completions endpoint (univg/cot/openai_teacher.py).

Every chain ends by naming the target image: validation rejects a chain whose last named image is
not the target (`univg.cot.naming.last_named_image` is the one parser for that, shared with validation).
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from univg.cot.naming import last_named_image
from univg.cot.scan import keyed_steps, scan_sentences, target_sentence
from univg.eval.parsing import BOX_PATTERN
from univg.schema import iou

CHAIN_STYLES = ("scan", "keyed", "brief")

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


# ----------------------------------------------------------------------------- rule teacher
def coarse_position(box: Sequence[float]) -> str:
    """'top left' .. 'bottom right' or 'centre', from a 0..1000 box's centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col = "left" if cx < 333 else "right" if cx > 666 else ""
    row = "top" if cy < 333 else "bottom" if cy > 666 else ""
    return f"{row} {col}".strip() or "centre"


def _at(box: Sequence[float], rng: random.Random) -> str:
    place = coarse_position(box)
    if place == "centre":
        return rng.choice(["in the centre", "near the centre", "in the middle"])
    return rng.choice([f"at the {place}", f"in the {place}", f"near the {place}"])


def describe(obj: dict[str, Any], others: Sequence[dict[str, Any]] = ()) -> str:
    """'red circle', adding texture then size only when another object would share the words."""
    words = [str(obj.get("colour", "")), str(obj.get("shape", "object"))]
    clash = [o for o in others if o is not obj and o.get("colour") == obj.get("colour") and o.get("shape") == obj.get("shape")]
    texture = obj.get("texture")
    if clash and texture and texture not in ("plain", "solid", "flat"):
        words.insert(0, str(texture))
        clash = [o for o in clash if o.get("texture") == texture]
    if clash and obj.get("size"):
        words.insert(0, str(obj["size"]))
    return " ".join(w for w in words if w)


def _a(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_CONCLUDE = (
    "So the answer is in image {t}.",
    "The target is therefore in image {t}.",
    "That puts the answer in image {t}.",
    "Hence the object to locate is in image {t}.",
)


class Scene:
    """Read-only view of meta.scene with safe lookups (a malformed scene gives None, not a crash)."""

    def __init__(self, scene: dict[str, Any], target_image: int):
        self.raw = scene
        self.images = [img if isinstance(img, dict) else {} for img in scene.get("images") or []]
        target = scene.get("target") or {}
        self.t = int(target.get("image", target_image))
        self.target = self.object(self.t, target.get("object"))
        ref = scene.get("reference") or {}
        self.r = ref.get("image")
        self.reference = self.object(self.r, ref.get("object"))
        self.facts = scene.get("facts") or {}

    def object(self, image: Any, index: Any) -> dict[str, Any] | None:
        try:
            obj = self.images[int(image) - 1]["objects"][int(index)] if int(image) >= 1 and int(index) >= 0 else None
        except (IndexError, KeyError, TypeError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def objects(self, image: int) -> list[dict[str, Any]]:
        if not 1 <= image <= len(self.images):
            return []
        return [o for o in self.images[image - 1].get("objects") or [] if isinstance(o, dict)]


def _inventory(s: Scene, image: int, rng: random.Random) -> str:
    """'Image 1 shows a red circle, a blue square and a green cross.' (what one image holds)."""
    names = [describe(o, s.objects(image)) for o in s.objects(image)]
    if not names:
        return ""
    items = [_a(n) for n in names]
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"
    return rng.choice([f"Image {image} shows {listed}.", f"Image {image} has {listed}."])


def _evidence(task: str, s: Scene, rng: random.Random) -> list[str]:
    """The decisive observations for one mig-synth task, as sentences (before the conclusion).

    Sentences go from context to decision; rule_chain drops leading ones when a chain runs long.
    """
    T = s.target
    if T is None or "box" not in T:
        return []
    t, facts = s.t, s.facts
    name = describe(T, s.objects(t))
    where = _at(T["box"], rng)
    R = s.reference
    ref = describe(R, s.objects(s.r)) if R is not None and isinstance(s.r, int) else None

    if task in ("diff", "view_diff"):
        change = facts.get("change")
        before = facts.get("before") if isinstance(facts.get("before"), dict) else R
        lead = [_inventory(s, 1, rng)]
        if task == "view_diff":
            lead.append(rng.choice(["The camera shifts slightly between image 1 and image 2.",
                                    "Image 2 is seen from a slightly moved camera."]))
        if change == "colour" and before:
            body = f"The {before.get('shape')} that is {before.get('colour')} in image 1 is {T.get('colour')} in image {t}, {where}."
        elif change == "shape" and before:
            body = f"The {before.get('colour')} {before.get('shape')} of image 1 became {_a(str(T.get('shape')))} in image {t}, {where}."
        else:
            body = rng.choice([f"Image {t} has {_a(name)} {where} that image 1 lacks.",
                               f"{_cap(_a(name))} was added {where} in image {t}."])
        return lead + [body]
    if task == "common_object":
        shared = facts.get("shared") if isinstance(facts.get("shared"), dict) else T
        thing = f"{shared.get('colour', '')} {shared.get('shape', '')}".strip()
        return [rng.choice([f"Every image contains {_a(thing)}.", f"The one object all images share is {_a(thing)}."]),
                rng.choice([f"In image {t} it is {where}.", f"Image {t} has it {where}."])]
    if task == "object_tracking":
        direction = facts.get("direction")
        moves = f"moves {direction}" if direction else "moves"
        return [rng.choice([f"Only the {name} {moves} across the frames; the rest stay still.",
                            f"The {name} {moves} from frame to frame while the others stay put."]),
                f"In frame {t} it is {where}."]
    if task == "reasoning" and ref:
        extreme, attribute = facts.get("extreme", "marked"), facts.get("attribute", "colour")
        value = facts.get("value") or R.get(attribute)
        return [f"The {extreme} shape in image {s.r} is {_a(ref)}, so the {attribute} to match is {value}.",
                rng.choice([f"In image {t} only the {name} has it, {where}.", f"Image {t} has the {name} {where}."])]
    if task == "group_grounding":
        wanted = str(facts.get("description") or f"the {name}").rstrip(".")
        return [rng.choice([f"The other images hold only near misses of {wanted}.", f"We look for {wanted}."]),
                f"Only image {t} contains it, {where}."]
    if task == "refer_grounding":
        wanted = str(facts.get("expression") or f"the {name}").rstrip(".")
        return [rng.choice([f"Several images hold {wanted}, but the question asks about image {t}.",
                            f"The question names image {t} and {wanted}."]),
                f"In image {t} it is {where}."]
    if task == "multi_view" and ref:
        transform = {"mirrored": "mirrored left-right", "shifted": "from a shifted camera"}.get(
            str(facts.get("transform")), "from another view")
        position = str(facts.get("position") or "named position").replace("-", " ")
        return [f"The object at the {position} of image {s.r} is {_a(ref)}.",
                f"Image {t} shows the scene {transform}, so the {name} is now {where}."]
    if ref and s.r != t:  # region (boxed), correspondence (dotted), and any other marked reference
        marks = (s.images[s.r - 1].get("marks") if 0 < s.r <= len(s.images) else None) or []
        kind = marks[0].get("kind", "box") if marks and isinstance(marks[0], dict) else facts.get("mark", "box")
        marked = rng.choice([f"The {kind} in image {s.r} marks {_a(ref)}.", f"Image {s.r} marks {_a(ref)} with a {kind}."])
        resized = f", now {facts['size_after']}," if facts.get("size_after") and facts.get("size_after") != facts.get("size_before") else ""
        return [marked, rng.choice([f"In image {t} the same {T.get('colour')} {T.get('shape')}{resized} is {where}.",
                                    f"Image {t} has that {T.get('colour')} {T.get('shape')}{resized} {where}."])]
    return [rng.choice([f"The question refers to the {name}.", f"We need the {name}."]),
            f"Image {t} has the {name} {where}."]


def rule_chain(record: dict[str, Any], rng: random.Random, style: str = "scan") -> tuple[str, bool]:
    """(chain, used_scene): faithful, ending by naming the target image.

    style `brief`: the decisive observations only (60-250 chars). style `scan`: every image read
    out cell by cell first (univg.cot.scan), then the observations, then a conclusion naming the
    target's colour, shape, size, cell and image; the scan is the skill perception pre-training
    gives the tiny base model, so the rest of the chain is reasoning over text. style `keyed`:
    `scan` with fixed-wording steps down to a key object ("We look for the red circle in image 2.")
    in place of the observations, so diagnostics can score that step on its own.
    """
    t = int(record["target_image"])
    scene = (record.get("meta") or {}).get("scene")
    sentences: list[str] = []
    if isinstance(scene, dict):
        try:
            view = Scene(scene, t)
            # A scene that disagrees with the record's answer cannot back a faithful chain.
            task = str(record.get("task", ""))
            if view.t == t:
                sentences = keyed_steps(task, view) if style == "keyed" else _evidence(task, view, rng)
        except (KeyError, TypeError, ValueError, AttributeError):
            sentences = []  # a scene we cannot read: fall back to the generic chain below
    used_scene = bool(sentences)
    if used_scene and style in ("scan", "keyed"):
        chain = " ".join(scan_sentences(view.images) + sentences + [target_sentence(view.target, t)])
        return re.sub(r"\s+", " ", chain).strip(), used_scene
    if not used_scene:
        n = len(record.get("images") or [])
        sentences = [rng.choice([f"Comparing the {n} images against the question,",
                                 f"Checking each of the {n} images for what the question asks,"])
                     + f" the object it describes appears in image {t}."]
    conclusion = rng.choice(_CONCLUDE).format(t=t)
    chain = " ".join(sentences + [conclusion])
    # The tiny model needs short scaffolding: drop leading context sentences until it fits.
    while len(chain) > 250 and len(sentences) > 1:
        sentences = sentences[1:]
        chain = " ".join(sentences + [conclusion])
    return re.sub(r"\s+", " ", chain).strip(), used_scene


class RuleTeacher(Teacher):
    """Faithful chains from the scene description, worded with a seeded rng per (record, candidate)."""

    name = "rule"

    def __init__(self, num_candidates: int = 3, seed: int = 0, style: str = "scan"):
        if style not in CHAIN_STYLES:
            raise ValueError(f"unknown chain style {style!r}; choose from {CHAIN_STYLES}")
        self.num_candidates = num_candidates
        self.seed = seed
        self.style = style

    def candidates(self, record: dict[str, Any]) -> tuple[list[Candidate], bool]:
        chains, used_scene = [], True
        for k in range(self.num_candidates):
            # A string seed is hashed stably (sha512), so the wording never depends on row order.
            text, used = rule_chain(record, random.Random(f"{self.seed}:{record.get('id')}:{k}"), self.style)
            chains.append(Candidate(text))
            used_scene = used_scene and used
        return chains, used_scene

    def run(self, records, base_dir, progress=None) -> list[RowOutcome]:
        outcomes = []
        for index, record in enumerate(records):
            candidates, used_scene = self.candidates(record)
            chosen, scores = select_best(record, candidates)
            outcomes.append(RowOutcome(index, candidates, chosen, scores, "rule", extra={"scene": used_scene}))
            if progress:
                progress(1)
        return outcomes


def make_teacher(cfg: Any, cache_path: Path | None = None) -> Teacher:
    """The teacher named by cot.teacher ('rule' or 'openai')."""
    if cfg.teacher == "rule":
        return RuleTeacher(cfg.num_candidates, cfg.seed, cfg.chain_style)
    if cfg.teacher == "openai":
        from univg.cot.openai_teacher import OpenAITeacher

        return OpenAITeacher(cfg.openai, cfg.num_candidates, cfg.answer_format, cache_path)
    raise ValueError(f"unknown teacher {cfg.teacher!r}; choose 'rule' or 'openai'")
