"""The rule teacher: short, faithful chains of thought from a mig-synth record's saved scene.

It reads the record's scene description (meta.scene): which image holds what, what differs, which
candidate matches, where. Records without a scene (imported data) get a generic chain that only
states the conclusion; such rows are flagged with meta.cot.scene = False so they can be filtered.
Styles (cot.chain_style): 'scan' reads every image out cell by cell first (univg.data.scan), then
the decisive observations, then the conclusion; 'keyed' adds fixed-wording steps down to a key
object; 'brief' gives only the decisive observations.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, get_args

from univg.config import ChainStyle
from univg.cot.teachers import Candidate, RowOutcome, Teacher, select_best
from univg.data.scan import keyed_steps, scan_sentences, target_sentence

CHAIN_STYLES: tuple[str, ...] = get_args(ChainStyle)


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
    out cell by cell first (univg.data.scan), then the observations, then a conclusion naming the
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
