"""The `validate` stage: CoT records through a Great Expectations suite (contract).

`validate_file` writes into the output folder
  accepted.jsonl   records that pass every check (image paths rebased to this folder)
  rejected.jsonl   records that fail, each with `reasons` (short check names); a line that is not
                   a JSON object is kept as {"line": N, "raw": "...", "reasons": [...]}
  report.json      total, accepted, rejected, by_expectation {reason: rows}, accepted_fraction, ...
  data_docs/       the GX Data Docs site (index.html)
Every non-blank input line lands in exactly one of the two JSONL files. The stage fails
(ValidationFailed, after writing everything) only when the accepted share is below
validate.min_accept_fraction.

Checks are GX expectations (univg/cot/expectations.py) on columns derived here in one pass:
types, question, images (checked once per unique file, in threads), box, target, chain (length,
which image its conclusion names), the teacher's own answer, duplicates and test-split leakage (by
id, by question and image paths, and by image content: a training image whose pixels equal a test
image's, whatever its file name).
Duplicates keep their first occurrence in file order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from univg.data.images import ImageError, ImagePolicy, data_root_for, pixel_digest, stage_policy
from univg.data.naming import last_named_image
from univg.errors import UserError
from univg.schema import iou, read_jsonl_lines

PARSE_REASONS = ("not_utf8", "malformed_json", "not_an_object")
_MISSING = object()


class ValidationFailed(UserError, RuntimeError):
    """The accepted share of a validated file is below the configured threshold."""


# ----------------------------------------------------------------------------- entry points
def validate_file(
    input_path: Path, out_dir: Path, cfg: Any, image_root: Path | None = None, test_split: Path | None = None,
    policy: ImagePolicy | None = None,
) -> dict[str, Any]:
    """Validate one CoT JSONL file into `out_dir`; returns the report (also written as report.json).
    Images must satisfy `policy` (default: inside the file's data root, univg.data.images)."""
    from univg.cot.expectations import reason_names, run_suite

    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.is_file():
        raise FileNotFoundError(f"{input_path}: no such file")
    base_dir = Path(image_root) if image_root else input_path.parent
    policy = policy or ImagePolicy(root=data_root_for(input_path, image_root))
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- read: every non-blank line is either a record or an unparseable line with its reason
    records, unparseable = read_lines(input_path)

    # -- derive the columns the expectations look at
    test_ids, test_keys, test_images = read_test_split(Path(test_split), image_root) if test_split else (set(), set(), set())
    frame = derive_columns([r for _, r in records], base_dir, test_ids, test_keys, policy, test_images)

    # -- run the suite (writes the Data Docs) and map failing rows back to reasons
    failing = run_suite(frame, cfg, out_dir / "data_docs") if len(frame) else {}
    reasons = _reasons_per_row(len(records), failing, reason_names(cfg))

    # -- write accepted / rejected / report
    report = write_outputs(out_dir, base_dir, records, unparseable, reasons, reason_names(cfg))
    report.update({"input": str(input_path), "min_accept_fraction": cfg.min_accept_fraction,
                   "data_docs": str(out_dir / "data_docs" / "index.html") if len(frame) else None})
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))

    # -- gate: fail loudly, but only after every output is on disk
    if report["accepted_fraction"] < cfg.min_accept_fraction:
        raise ValidationFailed(
            f"{input_path}: only {report['accepted']} of {report['total']} rows accepted "
            f"({report['accepted_fraction']:.1%} < validate.min_accept_fraction {cfg.min_accept_fraction:.1%}); "
            f"top reasons: {_top_reasons(report['by_expectation'])}; see {out_dir / 'rejected.jsonl'}"
        )
    return report


# MLflow wiring, not a validation check: outside mutation testing (docs/testing.md); the stage
# tests in tests/cot/test_cot_generate.py check what it logs.
# pragma: no mutate start
def run_validate_stage(
    params: Any, input_path: Path, out_dir: Path, image_root: Path | None = None, test_split: Path | None = None
) -> dict[str, Any]:
    """validate_file inside the `validate` MLflow run: counts as metrics, report.json and Data Docs as
    artifacts, accepted.jsonl as a dataset input. A failed gate is logged before it is raised."""
    from univg.cot.generate import log_dataset
    from univg.tracking import stage_run

    cfg = params.validate_
    out_dir = Path(out_dir)
    logged = {"validate": cfg.model_dump(mode="json"), "input": str(input_path), "test_split": str(test_split or "")}
    with stage_run("validate", params, log_params=logged) as run:
        try:
            report = validate_file(input_path, out_dir, cfg, image_root, test_split,
                                   stage_policy(input_path, image_root, params.data))
        except ValidationFailed:
            _log_outputs(out_dir)
            raise
        _log_outputs(out_dir)
        log_dataset(out_dir / "accepted.jsonl", "cot-accepted", context="validated")
        report["mlflow_run_id"] = run.info.run_id
    return report


def _log_outputs(out_dir: Path) -> None:
    import mlflow

    report = json.loads((out_dir / "report.json").read_text())
    metrics = {k: float(report[k]) for k in ("total", "accepted", "rejected", "accepted_fraction")}
    metrics.update({f"rejected_{reason}": float(n) for reason, n in report["by_expectation"].items()})
    mlflow.log_metrics(metrics)
    mlflow.log_artifact(str(out_dir / "report.json"))
    if (out_dir / "data_docs").is_dir():
        mlflow.log_artifacts(str(out_dir / "data_docs"), artifact_path="data_docs")
    if (out_dir / "rejected.jsonl").stat().st_size:
        mlflow.log_artifact(str(out_dir / "rejected.jsonl"))
# pragma: no mutate end


# ----------------------------------------------------------------------------- reading
def read_lines(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """([(line number, record)], [{"line", "raw", "reasons"}]) for every non-blank line."""
    records, unparseable = [], []
    for line in read_jsonl_lines(path):
        if line.reasons:
            reason = "not_utf8" if line.reasons[0].startswith("not UTF-8") else "malformed_json"
            unparseable.append({"line": line.number, "raw": line.raw, "reasons": [reason]})
        elif not isinstance(line.data, dict):
            unparseable.append({"line": line.number, "raw": line.raw, "reasons": ["not_an_object"]})
        else:
            records.append((line.number, line.data))
    return records, unparseable


def read_test_split(path: Path, image_root: Path | None = None) -> tuple[set[str], set[str], set[str]]:
    """Ids, (question, images) keys and image pixel digests of the test split; its unreadable lines
    and images cannot leak, so they are skipped.

    Its image paths are read relative to its own folder and, when an image root is given, to that too.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: test split not found")
    bases = [_Paths(path.parent)] + ([_Paths(Path(image_root))] if image_root else [])
    ids, keys, files = set(), set(), set()
    for line in read_jsonl_lines(path):
        if isinstance(line.data, dict):
            if isinstance(line.data.get("id"), str):
                ids.add(line.data["id"])
            for paths in bases:
                key = _content_key(line.data.get("question"), line.data.get("images"), paths)
                if key is not None:
                    keys.add(key)
                    files.update(paths.absolute(p) for p in _image_paths(line.data.get("images")) or [])
    digests = image_digests(files, ImagePolicy(allow_outside_root=True))  # the test split's own files
    return ids, keys, {d for d in digests.values() if d is not None}


# ----------------------------------------------------------------------------- derived columns
def _clip(value: int | None) -> int | None:
    """Keep absurd integers (a box of 10**30) representable in an Int64 column; the checks still fail them."""
    return None if value is None else max(-(2**62), min(2**62, value))


def _type_name(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_paths(images: Any) -> list[str] | None:
    if isinstance(images, list) and all(isinstance(p, str) and p for p in images):
        return images
    return None


class _Paths:
    """Absolute and rebased forms of image paths, computed once per distinct path (100k rows share few)."""

    def __init__(self, base_dir: Path, out_dir: Path | None = None):
        self.base = os.path.abspath(base_dir)
        self.out = str(Path(out_dir).resolve()) if out_dir is not None else None
        self.real_base = str(Path(base_dir).resolve())
        self._abs: dict[str, str] = {}
        self._rebased: dict[str, str] = {}

    def absolute(self, rel: str) -> str:
        found = self._abs.get(rel)
        if found is None:
            found = self._abs[rel] = os.path.normpath(os.path.join(self.base, rel))
        return found

    def rebased(self, rel: str) -> str:
        """Same result as univg.data.images.rebase_images for one path, without a resolve() per row."""
        found = self._rebased.get(rel)
        if found is None:
            if os.path.isabs(rel):
                found = rel
            else:
                found = os.path.relpath(os.path.normpath(os.path.join(self.real_base, rel)), self.out)
            self._rebased[rel] = found
        return found


def _content_key(question: Any, images: Any, paths: _Paths) -> str | None:
    images = _image_paths(images)
    if not isinstance(question, str) or images is None:
        return None
    return "\x1f".join([" ".join(question.split()), *(paths.absolute(p) for p in images)])


def image_digests(paths: Iterable[str], policy: ImagePolicy = ImagePolicy(allow_outside_root=True)) -> dict[str, str | None]:
    """{path: pixel digest, or None when unusable}, each unique file opened once, in threads (PIL
    decodes without the GIL). Usable: inside the policy's root after symlinks, within the size
    limits, and it decodes. The digest (univg.data.images.pixel_digest) finds a test image saved again."""
    unique = sorted(set(paths))
    def digest(path: str) -> str | None:
        real = Path(path).resolve()
        if not policy.allows(real, Path(path).parent):
            return None
        try:
            return pixel_digest(real, policy.max_pixels)
        except ImageError:  # missing, truncated, not an image, too large: all the same to the check
            return None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return dict(zip(unique, pool.map(digest, unique), strict=True))


def derive_columns(records: list[dict[str, Any]], base_dir: Path, test_ids: set[str] = frozenset(),
                   test_keys: set[str] = frozenset(), policy: ImagePolicy | None = None,
                   test_images: set[str] = frozenset()) -> Any:
    """One row per record with the scalar columns the suite checks (None where a column does not apply)."""
    import pandas as pd

    paths = _Paths(base_dir)
    policy = policy or ImagePolicy(root=Path(base_dir))
    digests = image_digests((paths.absolute(p) for r in records for p in (_image_paths(r.get("images")) or [])), policy)
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for record in records:
        for name, value in _derive_row(record, paths, digests, test_ids, test_keys, test_images).items():
            columns[name].append(value)
    frame = pd.DataFrame({name: pd.Series(values, dtype=_COLUMNS[name]) for name, values in columns.items()})
    # Duplicates: the first occurrence (in file order) keeps rank 0 and passes; later ones fail.
    frame["dup_rank"] = _occurrence_rank(frame.pop("dup_key"))
    frame["id_rank"] = _occurrence_rank(frame.pop("id_key"))
    return frame


_COLUMNS = {
    **{f"type_{f}": "object" for f in ("id", "task", "source", "question", "images", "target_image", "box", "cot", "meta")},
    "question_chars": "Int64", "n_images": "Int64", "images_ok": "boolean",
    "box_lo": "Int64", "box_hi": "Int64", "box_x1": "Int64", "box_y1": "Int64", "box_x2": "Int64", "box_y2": "Int64",
    "target": "Int64", "chain": "object", "chain_names_image": "boolean", "chain_conclusion": "Int64",
    "answer_iou": "Float64", "answer_image": "Int64", "dup_key": "object", "id_key": "object", "in_test": "boolean",
    "image_in_test": "boolean",
}


def _derive_row(record: dict[str, Any], resolver: _Paths, digests: dict[str, str | None], test_ids, test_keys,
                test_images) -> dict[str, Any]:
    get = record.get
    types = {f"type_{f}": _type_name(get(f, _MISSING)) for f in ("task", "source", "question", "cot", "meta")}
    id_ = get("id", _MISSING)
    types["type_id"] = "str" if isinstance(id_, str) and id_.strip() else _type_name(id_) + ("(blank)" if isinstance(id_, str) else "")
    images = _image_paths(get("images"))
    types["type_images"] = "list[str]" if images is not None else _type_name(get("images", _MISSING))
    target = get("target_image", _MISSING)
    types["type_target_image"] = "int" if _is_int(target) else _type_name(target)
    box = get("box", _MISSING)
    box_ok = isinstance(box, list) and len(box) == 4 and all(_is_int(v) for v in box)
    types["type_box"] = "int[4]" if box_ok else (f"list[{len(box)}]" if isinstance(box, list) else _type_name(box))
    if types["type_task"] == "str" and not get("task").strip():
        types["type_task"] = "str(blank)"

    question = get("question")
    cot = get("cot")
    chain = cot.strip() if isinstance(cot, str) and cot.strip() else None
    conclusion = last_named_image(chain) if chain else None
    own_box, own_image = _teacher_answer(get("meta"))
    key = _content_key(question, images, resolver)
    return {
        **types,
        "question_chars": len(question.strip()) if isinstance(question, str) else None,
        "n_images": len(images) if images is not None else None,
        "images_ok": all(digests[resolver.absolute(p)] is not None for p in images) if images is not None else None,
        "image_in_test": any(digests[resolver.absolute(p)] in test_images for p in images) if images else None,
        "box_lo": _clip(min(box)) if box_ok else None, "box_hi": _clip(max(box)) if box_ok else None,
        "box_x1": _clip(box[0]) if box_ok else None, "box_y1": _clip(box[1]) if box_ok else None,
        "box_x2": _clip(box[2]) if box_ok else None, "box_y2": _clip(box[3]) if box_ok else None,
        "target": _clip(target) if _is_int(target) else None,
        "chain": chain,
        "chain_names_image": (conclusion is not None) if chain else None,
        "chain_conclusion": _clip(conclusion),
        "answer_iou": _answer_iou(own_box, box) if box_ok else None,
        "answer_image": _clip(own_image),
        "dup_key": key,
        "id_key": id_ if isinstance(id_, str) else None,
        "in_test": (isinstance(id_, str) and id_ in test_ids) or (key is not None and key in test_keys),
    }


def _teacher_answer(meta: Any) -> tuple[Any, int | None]:
    """(answer_box, answer_image) a teacher wrote itself, from meta.cot; (None, None) when it wrote none."""
    info = meta.get("cot") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        return None, None
    image = info.get("answer_image")
    return info.get("answer_box"), image if _is_int(image) else None


def _answer_iou(own_box: Any, truth: list[int]) -> float:
    """1.0 when the teacher wrote no box (the SFT target is the ground truth itself)."""
    if own_box is None:
        return 1.0
    if not (isinstance(own_box, list | tuple) and len(own_box) == 4 and all(isinstance(v, int | float) for v in own_box)):
        return 0.0
    return iou(own_box, truth)


def _occurrence_rank(keys: Any) -> Any:
    """0 for the first row with a key, 1, 2, ... for repeats; missing keys stay missing."""
    import pandas as pd

    rank = keys.groupby(keys, dropna=True).cumcount()
    return rank.reindex(keys.index).astype("Int64").where(keys.notna(), pd.NA)


# ----------------------------------------------------------------------------- writing
def _reasons_per_row(n_rows: int, failing: dict[str, list[int]], order: list[str]) -> list[list[str]]:
    reasons: list[list[str]] = [[] for _ in range(n_rows)]
    for reason in order:
        for index in sorted(set(failing.get(reason, []))):
            reasons[index].append(reason)
    return reasons


def write_outputs(out_dir, base_dir, records, unparseable, reasons, order) -> dict[str, Any]:
    """accepted.jsonl and rejected.jsonl in input order; returns the report counts."""
    by_line: list[tuple[int, dict[str, Any], bool]] = [(u["line"], u, False) for u in unparseable]
    for (number, record), why in zip(records, reasons, strict=True):
        by_line.append((number, {**record, "reasons": why} if why else record, not why))
    by_line.sort(key=lambda item: item[0])
    counts = dict.fromkeys([*PARSE_REASONS, *order], 0)
    paths = _Paths(base_dir, out_dir)
    accepted = 0
    with open(out_dir / "accepted.jsonl", "w", encoding="utf-8") as good, open(out_dir / "rejected.jsonl", "w", encoding="utf-8") as bad:
        for _, row, ok in by_line:
            if "images" in row and _image_paths(row["images"]) is not None:
                row = {**row, "images": [paths.rebased(p) for p in row["images"]]}
            (good if ok else bad).write(json.dumps(row, ensure_ascii=False) + "\n")
            accepted += ok
            for reason in () if ok else row["reasons"]:
                counts[reason] += 1
    total = len(by_line)
    return {
        "total": total, "accepted": accepted, "rejected": total - accepted,
        "accepted_fraction": accepted / total if total else 0.0,
        "by_expectation": counts,
    }


def _top_reasons(counts: dict[str, int], k: int = 3) -> str:
    top = sorted(((-n, r) for r, n in counts.items() if n))[:k]
    return ", ".join(f"{r} ({-n})" for n, r in top) or "none"
