"""Benchmark loaders, by name in `BENCHMARKS`: an annotation file -> records + quarantined rows.

Records are in the contract's shape (box: 0..1000 ints of the target image) and keep their
0-based position in the file; a malformed row is quarantined with reasons, never dropped (it
counts in `n` and scores as a miss). meta["box_exact"]: the ground truth in 0..1000 floats before
rounding (scoring uses it); meta["target_rule"]: how the target image was decided. A file is a
JSON list, one JSON object, or JSONL (positions count non-blank lines, malformed ones included).
Image paths are relative to `image_root` (default: the annotation file's folder).

mig-synth (answers `indexed`, image index scored): the record contract, one object per line.
mig-bench (`univg-r1`, image index never scored): the MIG-Bench JSON list {"task", "images",
  "question", "answer" [x1,y1,x2,y2], "additional_info", "need_format"}. `answer` is 0..1 floats
  (up to 5% outside the image: clamped, kept in meta.box_clamped) or 0..1000 in the revised copy,
  decided per file by majority (a row whose largest value is <= 1.5 is 0..1; a row disagreeing with
  its file is quarantined); a string, NaN or an unknown task is quarantined. Target: the image `additional_info` names ("It is in the
  first image."), else the one the question grounds in ("locate it in the third image", "in
  image 2", "Image-2", "second picture", "last frame"; univg.data.naming.target_from_text), else the last image.
univg-r1 (`univg-r1`): the release's {"question", "answer", "images", "task"?, "id"?,
  "target_image"?}; `answer` is text holding `(x1,y1),(x2,y2)` in 0..1000 (tags and an
  `Image-k:` prefix allowed; Image-k is then the target) or [x1,y1,x2,y2] (0..1000; all <= 1:
  0..1). Chat rows ("messages"/"conversations": user/human, assistant/gpt; MGrounding-630k, the CoT
  SFT file) give the first question and answer; later turns are counted in meta.turns_not_read. A
  `<think>` chain in the answer is kept as the record's `cot` (meta.cot.teacher "release").
  `<image>`, Qwen's object-reference markers and the format instruction are stripped from
  questions. Target: the answer's Image-k, "target_image", the answer's words ("It's in the third
  image."), the question, the last image. Task: "task", else "univg-r1".
reasoning-grounding (`univg-r1`), as UniVG-R1's zero-shot evaluation reads them: LISA/LLMSeg image
  rows {"image"|"image_path", "instruction" (LISA: a list, the first) | "question" | "text" |
  "query", "box"|"bbox" absolute pixels or "boxes" [[...], ...] (the first) or nested [[x1, y1],
  [x2, y2]] (flattened) or "box_norm" 0..1000, "width"?, "height"?, "task"|"dataset"?};
  ReVOS-Grounding {"video_id", "frames": 0-based positions among the video folder's *.jpg/*.png
  sorted by the first number in their names, "question", "bbox_list"}; ReasonVOS-Grounding
  {"image_list"|"frames", "bbox_list" (strings "[x1, y1, x2, y2]" accepted), "target_frame" k
  (1-based, default 3)}. Pixel boxes use "width"/"height" or the target image's header
  (unreadable: quarantined). Prompts are the release's: "Output the bounding box in the image
  corresponding to the instruction: {text}." for images, "This is a sequence of images from a
  video. ... in the third image according to the instruction: {text}." for videos (the release's
  ". First output the thinking ..." follows from univg.answers). Task: "task", "dataset", else
  image_/video_grounding.
`path_map` {old prefix: new prefix} rewrites every image path (and video folder) first.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from PIL import Image

from univg.answers import INSTRUCTIONS, parse_answer
from univg.config import TASKS as MIG_BENCH_TASKS
from univg.data.images import ImageError, ImagePolicy, image_problems, resolve_image
from univg.data.naming import ORDINALS, decide_target
from univg.errors import UserError
from univg.schema import COORD_MAX, read_jsonl_lines, record_reasons


class BenchmarkError(UserError, ValueError):
    """An annotation file that cannot be read at all (the message names the file)."""


class RowError(UserError, ValueError):
    """One row is malformed: it is quarantined with this message as its reason."""


BOX_TOLERANCE = 0.05  # share of a side a box may overshoot the image and still be clamped, not refused


@dataclass(frozen=True)
class BenchmarkSample:
    index: int  # 0-based position of the row in the annotation file
    record: dict[str, Any]


class QuarantinedRow(TypedDict):  # a row that could not be read; a plain dict, JSON-ready
    index: int
    reasons: list[str]
    raw: str
    task: str | None


@dataclass
class LoadedBenchmark:
    name: str
    path: Path
    base_dir: Path  # folder the record image paths are relative to
    samples: list[BenchmarkSample]
    quarantined: list[QuarantinedRow]
    answer_format: str  # default answer format of this benchmark
    scores_image_index: bool  # False: the image index in an answer is never scored
    info: dict[str, Any] = field(default_factory=dict)
    policy: ImagePolicy = ImagePolicy()  # where its images may be read from

    @property
    def total(self) -> int:
        return len(self.samples) + len(self.quarantined)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [s.record for s in self.samples]

    def head(self, limit: int) -> LoadedBenchmark:
        """The first `limit` rows of the file (quarantined ones included), for quick runs."""
        return replace(self, samples=[s for s in self.samples if s.index < limit], info={**self.info, "limit": limit},
                       quarantined=[q for q in self.quarantined if q["index"] < limit])


def read_rows(path: Path) -> list[tuple[Any, list[str], str]]:
    """(data, problems, raw) per row of a JSON list / object / JSONL file."""
    if not path.is_file():
        raise BenchmarkError(f"annotation file not found: {path}")
    try:
        whole = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        whole = None  # not one JSON document: read it line by line
    if isinstance(whole, list | dict):
        return [(row, [], json.dumps(row, ensure_ascii=False)[:500]) for row in ([whole] if isinstance(whole, dict) else whole)]
    rows = [(line.data, line.reasons, line.raw[:500]) for line in read_jsonl_lines(path)]
    if rows and all(problems for _, problems, _ in rows):
        raise BenchmarkError(f"{path}: neither a JSON document nor JSONL (first problem: {rows[0][1][0]})")
    return rows


# ----------------------------------------------------------------------------- boxes
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")


def four_numbers(value: Any, text_ok: bool = True) -> list[float]:
    """A box given as a list of 4 finite numbers, or (`text_ok`) a string holding exactly four."""
    if isinstance(value, str) and not text_ok:
        raise RowError(f"box must be a list of 4 numbers, got the string {value[:80]!r}")
    if isinstance(value, str):
        value = [float(v) for v in _NUMBER.findall(value)]
    if isinstance(value, list | tuple) and len(value) == 1 and isinstance(value[0], list | tuple):
        value = value[0]
    numbers = isinstance(value, list | tuple) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not numbers or len(value) != 4:
        raise RowError(f"box must be 4 numbers, got {str(value)[:80]}")
    if not all(math.isfinite(v) for v in value):
        raise RowError(f"box has a value that is not a finite number: {list(value)}")
    return [float(v) for v in value]


def exact_box(values: list[float], scale: float, meta: dict[str, Any] | None = None) -> list[float]:
    """Scale to 0..1000; 6-decimal floats. Answers slightly outside the image exist (MIG-Bench has a
    few just above 1): up to `BOX_TOLERANCE` of the side they are clamped, and meta["box_clamped"]
    keeps the values before clamping; further out the row is refused."""
    scaled = [v * scale for v in values]
    slack = BOX_TOLERANCE * COORD_MAX
    if not all(-slack <= v <= COORD_MAX + slack for v in scaled):
        raise RowError(f"box out of range: {values} is outside the image (0..{COORD_MAX:g} after scaling: {scaled})")
    box = [round(min(float(COORD_MAX), max(0.0, v)), 6) for v in scaled]
    if meta is not None and box != [round(v, 6) for v in scaled]:
        meta["box_clamped"] = [round(v, 6) for v in scaled]
    if not (box[0] < box[2] and box[1] < box[3]):
        raise RowError(f"box inverted or empty after conversion to 0..1000: {box}")
    return box


def int_box(exact: list[float]) -> list[int]:
    """The contract's integer box, at least one unit wide (rounding must not collapse it)."""
    x1, y1, x2, y2 = (int(round(v)) for v in exact)
    x1, y1 = min(x1, COORD_MAX - 1), min(y1, COORD_MAX - 1)
    return [x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)]


def image_size(path: str, base_dir: Path, policy: ImagePolicy = ImagePolicy()) -> tuple[int, int]:
    """(width, height) from the header of a row's image (inside the data root), or RowError naming it."""
    try:
        with Image.open(resolve_image(path, base_dir, policy)) as image:
            return image.size
    except ImageError as error:
        raise RowError(str(error)) from None
    except Exception as error:  # missing, truncated, not an image
        raise RowError(f"image size unreadable: {path} ({type(error).__name__})") from None


def _text_field(row: dict, *names: str) -> tuple[str, str]:
    found = next((name for name in names if isinstance(row.get(name), str) and row[name].strip()), None)
    if found is None:
        raise RowError(f"missing text field (one of {list(names)})")
    return found, row[found].strip()


@dataclass(frozen=True)
class Context:  # what a row converter knows besides the row
    name: str
    index: int
    base_dir: Path
    info: dict[str, Any]
    policy: ImagePolicy = ImagePolicy()
    path_map: tuple[tuple[str, str], ...] = ()  # (old prefix, new prefix) for the release's absolute paths


def map_path(path: str, path_map: tuple[tuple[str, str], ...]) -> str:
    """`path` with the first matching old prefix replaced (release files name their authors' folders)."""
    for old, new in path_map:
        if path.startswith(old):
            return new + path[len(old):]
    return path


def _path_list(value: Any, name: str, ctx: Context, single_ok: bool = False) -> list[str]:
    """A field of image paths; one string is a list of one only where the format says so (`single_ok`)."""
    if isinstance(value, str) and single_ok:
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(p, str) and p for p in value):
        raise RowError(f"'{name}' must be a non-empty list of paths")
    return [map_path(p, ctx.path_map) for p in value]


_OBJECT_REF = re.compile(r"<\|object_ref_(?:start|end)\|>")


def clean_question(text: str) -> str:
    """The question alone: the release's `<image>` placeholders, format instruction and Qwen's
    object-reference markers (MGrounding-630k) removed, whitespace collapsed."""
    for sentence in INSTRUCTIONS.values():  # the release's rows may carry the format instruction
        text = text.replace(sentence, "")
    text = _OBJECT_REF.sub("", text.replace("<image>", " "))
    return re.sub(r"\s+", " ", text).strip()


def _record(ctx: Context, row: dict, task: str, images: list[str], question: str, target: int,
            box: list[float], meta: dict[str, Any]) -> dict[str, Any]:
    record_id = str(row["id"]) if isinstance(row.get("id"), str | int) else f"{ctx.name}-{ctx.index:05d}"
    return _valid({"id": record_id, "task": task, "images": images, "question": question, "target_image": int(target),
                   "box": int_box(box), "source": ctx.name, "meta": {**meta, "box_exact": box}})


def _valid(record: Any) -> dict[str, Any]:
    problems = record_reasons(record)
    if problems:
        raise RowError("; ".join(problems))
    return record


def _task(row: dict, default: str | None) -> str | None:
    return next((row[k] for k in ("task", "dataset") if isinstance(row.get(k), str) and row[k]), default)


# ----------------------------------------------------------------------------- converters
def _mig_synth(row: dict, ctx: Context) -> dict[str, Any]:
    return {**_valid(row), "meta": {**(row.get("meta") or {}), "box_exact": [float(v) for v in row["box"]]}}


def _mig_bench_survey(rows: list[Any]) -> dict[str, Any]:
    """The file's answer convention by majority: rows whose largest value is <= 1.5 are 0..1."""
    peaks = []
    for row in rows:
        with contextlib.suppress(RowError, AttributeError):
            peaks.append(max(four_numbers(row.get("answer"))))
    unit = sum(p <= 1.5 for p in peaks) >= len(peaks) / 2 if peaks else True
    return {"answer_coords": "unit" if unit else "norm1000"}


def _mig_bench(row: dict, ctx: Context) -> dict[str, Any]:
    images = _path_list(row.get("images"), "images", ctx)
    question = clean_question(_text_field(row, "question")[1])
    task = _text_field(row, "task")[1]
    if task not in MIG_BENCH_TASKS:
        raise RowError(f"unknown MIG-Bench task {task!r}; the benchmark has {list(MIG_BENCH_TASKS)}")
    values = four_numbers(row.get("answer"), text_ok=False)
    unit = ctx.info["answer_coords"] == "unit"
    if unit and max(values) > 1.5:
        raise RowError(f"answer {values} is not in 0..1 like the rest of the file")
    target, rule = decide_target(len(images), ("additional_info", row.get("additional_info")), ("question", question))
    meta = {"target_rule": rule, "answer_raw": row.get("answer"), "need_format": row.get("need_format"),
            "additional_info": row.get("additional_info")}
    box = exact_box(values, float(COORD_MAX) if unit else 1.0, meta)
    return _record(ctx, row, task, images, question, target, box, meta)


def _chat_turns(row: dict) -> dict:
    """A chat row's first user turn as `question`, the first reply as `answer`, and how many turns
    after them were not read (MGrounding-630k rows hold several questions over the same images)."""
    turns = row.get("messages") or row.get("conversations")
    if "question" in row or not isinstance(turns, list):
        return row
    said: dict[str, Any] = {}
    for turn in (t for t in turns if isinstance(t, dict)):
        role = str(turn.get("role", turn.get("from", ""))).lower()
        key = {"user": "question", "human": "question", "assistant": "answer", "gpt": "answer"}.get(role)
        text = turn.get("content", turn.get("value"))
        if key and key not in said and isinstance(text, str):
            said[key] = text
    said["turns_not_read"] = max(0, len(turns) - 2)
    return {**row, **said}


def _univg_answer(answer: Any) -> tuple[list[float], int | None]:
    if isinstance(answer, str):
        parsed = parse_answer(answer, allow_untagged=True)
        if parsed is not None:
            return [float(v) for v in parsed.box], parsed.image_index
    values = four_numbers(answer)
    return ([v * COORD_MAX for v in values] if max(values) <= 1.0 else values), None


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def _univg_r1(row: dict, ctx: Context) -> dict[str, Any]:
    row = _chat_turns(row)
    images = (_path_list(row["images"], "images", ctx) if "images" in row
              else _path_list(row.get("image"), "image", ctx, True))
    question = clean_question(_text_field(row, "question", "problem")[1])
    answer = row.get("answer", row.get("solution"))
    values, named = _univg_answer(answer)
    given = row.get("target_image")
    meta: dict[str, Any] = {}
    if named is not None and 1 <= named <= len(images):
        target, rule = named, "answer_index"
    elif isinstance(given, int) and not isinstance(given, bool):
        target, rule = given, "target_image"
    else:  # MGrounding-630k says it in words: "It's in the third image. <|box_start|>..."
        answer_text = _THINK.sub("", answer) if isinstance(answer, str) else None
        target, rule = decide_target(len(images), ("answer", answer_text), ("question", question))
    meta["target_rule"] = rule
    if row.get("turns_not_read"):
        meta["turns_not_read"] = row["turns_not_read"]
    record = _record(ctx, row, _task(row, "univg-r1"), images, question, target, exact_box(values, 1.0, meta), meta)
    chain = _THINK.search(answer) if isinstance(answer, str) else None
    if chain and chain.group(1).strip():  # the release's CoT SFT rows: keep the teacher's chain
        record["cot"] = chain.group(1).strip()
        record["meta"]["cot"] = {"teacher": "release", "scene": None}
    return record


def _reasoning_box(row: dict, images: list[str], target: int, video: bool, ctx: Context, meta: dict) -> list[float]:
    if "box_norm" in row:
        return exact_box(four_numbers(row["box_norm"]), 1.0, meta)
    raw = row.get("box", row.get("bbox", row.get("boxes")))
    for key in ("bbox_list", "boxes") if video else ():
        if isinstance(row.get(key), list) and len(row[key]) == len(images):
            raw = row[key][target - 1]  # one box per frame
            break
    if isinstance(raw, list) and raw and isinstance(raw[0], list | str):
        # several boxes (LISA "boxes"): the first one, as the release evaluates; LLMSeg's nested
        # [[x1, y1], [x2, y2]] is flattened, as its eval does
        raw = [v for pair in raw[:2] for v in pair] if len(raw) == 2 and all(
            isinstance(p, list) and len(p) == 2 for p in raw) else raw[0]
    if raw is None:
        raise RowError("missing box ('box', 'bbox', 'boxes', 'bbox_list' or 'box_norm')")
    given = (row.get("width"), row.get("height"))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in given)
    width, height = given if numeric else image_size(images[target - 1], ctx.base_dir, ctx.policy)
    if not (width > 0 and height > 0):
        raise RowError(f"image size must be positive, got width={width} height={height}")
    meta["image_size"] = [int(width), int(height)]
    x1, y1, x2, y2 = four_numbers(raw)
    return exact_box([x1 / width, y1 / height, x2 / width, y2 / height], float(COORD_MAX), meta)


_FRAME_NUMBER = re.compile(r"\d+")


def video_frames(ctx: Context, video: str, positions: Any) -> list[str]:
    """ReVOS-Grounding's frames: `positions` (0-based) in the video folder's *.jpg/*.png files sorted by
    the first number in their names, as the release's eval picks them; paths relative to the root."""
    if not isinstance(positions, list) or not positions or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in positions):
        raise RowError("'frames' must be a non-empty list of frame positions (integers)")
    folder = (ctx.base_dir / map_path(video, ctx.path_map)).resolve()
    if not ctx.policy.allows(folder, Path(ctx.policy.root or ctx.base_dir).resolve()):
        raise RowError(f"video folder leaves the data root: {video}")
    if not folder.is_dir():
        raise RowError(f"video folder not found: {video}")
    files = [f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png") and _FRAME_NUMBER.search(f.name)]
    files.sort(key=lambda f: (int(_FRAME_NUMBER.search(f.name).group()), f.name))
    outside = [k for k in positions if not 0 <= k < len(files)]
    if outside:
        raise RowError(f"frame positions {outside} outside the {len(files)} frames of {video}")
    return [f"{map_path(video, ctx.path_map).rstrip('/')}/{files[k].name}" for k in positions]


def _instruction(row: dict) -> tuple[str, str]:
    """(field, text) of a reasoning row's instruction; LISA's `instruction` may be a list (the first)."""
    listed = row.get("instruction")
    if isinstance(listed, list) and listed and isinstance(listed[0], str) and listed[0].strip():
        return "instruction", listed[0].strip()
    return _text_field(row, "question", "instruction", "text", "query", "sent")


def _reasoning(row: dict, ctx: Context) -> dict[str, Any]:
    if "video_id" in row:  # ReVOS-Grounding: a video folder and frame positions
        images, video = video_frames(ctx, str(row["video_id"]), row.get("frames")), True
    else:  # ReasonVOS-Grounding: frame paths; LISA / LLMSeg: one image
        frames = row.get("frames", row.get("image_list"))
        video = frames is not None
        images = _path_list(frames if video else row.get("image", row.get("image_path")), "frames" if video else "image",
                            ctx, single_ok=not video)
    target = row.get("target_frame", 3) if video else 1
    if not isinstance(target, int) or isinstance(target, bool):
        raise RowError(f"'target_frame' must be an integer, got {target!r}")
    if not 1 <= target <= len(images):
        raise RowError(f"target_frame {target} out of range 1..{len(images)}")
    _, text = _instruction(row)
    meta: dict[str, Any] = {"instruction": text, "target_rule": "target_frame" if video else "single_image"}
    box = _reasoning_box(row, images, target, video, ctx, meta)
    # The release's zero-shot prompts (UniVG-R1 eval/zero_shot/*/eval.py), whose instruction is
    # followed by ". First output the thinking process ..." (univg.answers adds that sentence).
    ordinal = next((w for w, k in ORDINALS.items() if k == target), f"#{target}")
    if video:
        question = ("This is a sequence of images from a video. Please understand the entire video content, and "
                    f"then output the bounding box in the {ordinal} image according to the instruction: {text}.")
    else:
        question = f"Output the bounding box in the image corresponding to the instruction: {text}."
    task = _task(row, "video_grounding" if video else "image_grounding")
    return _record(ctx, row, task, images, question, target, box, meta)


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    convert: Callable[[dict, Context], dict[str, Any]]  # one row -> a record, or RowError
    answer_format: str  # the default answer format
    scores_image_index: bool  # False: an answer's image index is never scored
    survey: Callable[[list[Any]], dict[str, Any]] = lambda rows: {}  # file-level facts, e.g. coordinates


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("mig-synth", _mig_synth, "indexed", True),
        BenchmarkSpec("mig-bench", _mig_bench, "univg-r1", False, _mig_bench_survey),
        BenchmarkSpec("univg-r1", _univg_r1, "univg-r1", True),
        BenchmarkSpec("reasoning-grounding", _reasoning, "univg-r1", True),
    )
}


def load_benchmark(name: str, annotations: str | Path, image_root: str | Path | None = None,
                   policy: ImagePolicy | None = None, check_images: bool = True,
                   path_map: dict[str, str] | None = None) -> LoadedBenchmark:
    """Read `annotations` with the loader registered as `name`; bad rows are quarantined: rows
    that break the format, and (`check_images`) rows with an image that is missing, unreadable,
    out of limits or outside what `policy` allows (default: the file's folder or the image root,
    univg.data.images). `path_map` {old prefix: new prefix} rewrites image paths first (release
    files name absolute folders of their authors' machines)."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    path = Path(annotations)
    base_dir = Path(image_root) if image_root else path.parent
    policy = policy or ImagePolicy(root=base_dir)  # a file from outside: its own folder
    rows = read_rows(path)
    if not rows:
        raise BenchmarkError(f"{path}: no rows")
    info = spec.survey([data for data, problems, _ in rows if not problems])
    samples, quarantined, seen_ids = [], [], set()
    for index, (row, problems, raw) in enumerate(rows):
        try:
            if problems:
                raise RowError("; ".join(problems))
            if not isinstance(row, dict):
                raise RowError(f"not a JSON object ({type(row).__name__})")
            record = spec.convert(row, Context(name, index, base_dir, info, policy, tuple((path_map or {}).items())))
            unusable = image_problems(record["images"], base_dir, policy) if check_images else []
            if unusable:
                raise RowError("; ".join(unusable))
            if record["id"] in seen_ids:
                raise RowError(f"duplicate id {record['id']!r}")
            seen_ids.add(record["id"])
            samples.append(BenchmarkSample(index, record))
        except (RowError, TypeError, ValueError) as error:
            task = _task(row, None) if isinstance(row, dict) else None
            quarantined.append(QuarantinedRow(index=index, reasons=problems or [str(error)], raw=raw, task=task))
    return LoadedBenchmark(name, path, base_dir, samples, quarantined, spec.answer_format, spec.scores_image_index, info,
                           policy)
