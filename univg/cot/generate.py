"""The `cot` stage: a teacher writes chains of thought for grounding records.

Output rows are the input record plus `cot` (the chain, no tags) and
`meta.cot = {"teacher", "candidates", "scores", "selected", "selected_by", ["answer_box", "answer_image"]}`.
Rows the teacher could not do (unreadable lines, invalid records, requests that failed after
retries) go to the sibling `<out stem>.failed.jsonl` with `reasons`: nothing is dropped silently.
Image paths are rebased so each written file stands on its own.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from univg.cot.rule_teacher import RuleTeacher
from univg.cot.teachers import RowOutcome, Teacher, Usage
from univg.data.images import ImagePolicy, rebase_images, stage_policy
from univg.schema import read_jsonl_lines, record_reasons, write_jsonl


def make_teacher(cfg: Any, cache_path: Path | None = None, image_policy: ImagePolicy | None = None) -> Teacher:
    """The teacher named by cot.teacher ('rule' or 'openai')."""
    if cfg.teacher == "rule":
        return RuleTeacher(cfg.num_candidates, cfg.seed, cfg.chain_style)
    if cfg.teacher == "openai":
        from univg.cot.openai_teacher import OpenAITeacher

        return OpenAITeacher(cfg.openai, cfg.num_candidates, cfg.answer_format, cache_path, image_policy)
    raise ValueError(f"unknown teacher {cfg.teacher!r}; choose 'rule' or 'openai'")


def failed_path(out_path: Path) -> Path:
    """`data/cot/train.jsonl` -> `data/cot/train.failed.jsonl`."""
    return Path(out_path).with_suffix(".failed.jsonl")


def generate_cot(
    input_path: Path, out_path: Path, cfg: Any, image_root: Path | None = None, limit: int | None = None,
    policy: ImagePolicy | None = None,
) -> dict[str, Any]:
    """Write chains for the records of `input_path` (the first `limit` lines if given) with cfg.teacher.
    A teacher that looks at the images reads them as `policy` allows (default: the file's data root).

    Returns stats: rows, written, failures, candidates, prompt/completion tokens, cost, cache hits,
    requests, retries.
    """
    input_path, out_path = Path(input_path), Path(out_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"{input_path}: no such file")
    base_dir = Path(image_root) if image_root else input_path.parent

    # -- read: valid records go to the teacher, the rest straight to failed
    numbered, failed = read_input(input_path, limit)
    rows = len(numbered) + len(failed)

    # -- teach: candidates and selection, per record
    teacher, outcomes, written, refused = teach(numbered, cfg, base_dir, policy)

    # -- write: output rows in input order, failures (in input order too) beside them
    write_outputs(out_path, base_dir, written, failed + refused)
    return summarise(teacher, outcomes, rows, len(written), len(failed) + len(refused))


Numbered = list[tuple[int, dict[str, Any]]]  # (line number in the input file, row)


def teach(numbered: Numbered, cfg: Any, base_dir: Path, policy: ImagePolicy | None = None,
          ) -> tuple[Teacher, list[RowOutcome], Numbered, Numbered]:
    """(teacher, outcomes, [(line, record with its chain)], [(line, failed row)]) for (line, record) pairs.

    Each row's chain depends on that row alone (the rule teacher seeds per record id, the OpenAI
    teacher asks per record), so any split of the rows teaches each one as the whole file would.
    """
    teacher = make_teacher(cfg, cache_path=cache_file(cfg), image_policy=policy)
    outcomes = run_teacher(teacher, [record for _, record in numbered], base_dir)
    written, failed = [], []
    for (number, record), outcome in zip(numbered, outcomes, strict=True):
        if outcome.failure:
            failed.append((number, {**record, "reasons": outcome.failure}))
        else:
            written.append((number, with_chain(record, outcome, teacher.name)))
    return teacher, outcomes, written, failed


def write_outputs(out_path: Path, base_dir: Path, written: Numbered, failed: Numbered) -> None:
    """The chains file and its failures file beside it, each in input order, images rebased."""
    out_path = Path(out_path)
    write_jsonl(out_path, (rebase_images(r, base_dir, out_path.parent) for _, r in sorted(written, key=_line)))
    write_jsonl(failed_path(out_path),
                (_rebase_if_possible(r, base_dir, out_path.parent) for _, r in sorted(failed, key=_line)))


def _line(item: tuple[int, dict[str, Any]]) -> int:
    return item[0]


def read_input(path: Path, limit: int | None) -> tuple[list[tuple[int, dict]], list[tuple[int, dict]]]:
    """([(line, record)], [(line, failed row)]) for the first `limit` non-blank lines."""
    records, failed = [], []
    for count, line in enumerate(read_jsonl_lines(path)):
        if limit is not None and count >= limit:
            break
        reasons = line.reasons or record_reasons(line.data)
        if line.reasons or not isinstance(line.data, dict):
            failed.append((line.number, {"line": line.number, "raw": line.raw, "reasons": reasons}))
        elif reasons:
            failed.append((line.number, {**line.data, "reasons": reasons}))
        else:
            records.append((line.number, line.data))
    return records, failed


def cache_file(cfg: Any) -> Path | None:
    """One cache per teacher kind under cot.cache_dir; keys hold the record content and settings."""
    if cfg.teacher != "openai" or not getattr(cfg, "cache_dir", ""):
        return None
    return Path(cfg.cache_dir) / "openai-chains.jsonl"


def run_teacher(teacher: Teacher, records: list[dict[str, Any]], base_dir: Path) -> list[RowOutcome]:
    from tqdm.auto import tqdm

    with tqdm(total=len(records), desc=f"cot ({teacher.name})", unit="row", mininterval=2.0) as bar:
        return teacher.run(records, base_dir, progress=bar.update)


def with_chain(record: dict[str, Any], outcome: RowOutcome, teacher_name: str) -> dict[str, Any]:
    best = outcome.candidates[outcome.chosen]
    info: dict[str, Any] = {
        "teacher": teacher_name,
        "candidates": len(outcome.candidates),
        "scores": outcome.scores,
        "selected": outcome.chosen,
        "selected_by": outcome.selected_by,
    }
    if best.answer_box is not None:
        info["answer_box"] = best.answer_box
    if best.answer_image is not None:
        info["answer_image"] = best.answer_image
    info.update(outcome.extra)
    meta = dict(record.get("meta") or {})
    meta["cot"] = info
    return {**record, "cot": best.text, "meta": meta}


def _rebase_if_possible(row: dict[str, Any], from_dir: Path, to_dir: Path) -> dict[str, Any]:
    images = row.get("images")
    if isinstance(images, list) and images and all(isinstance(p, str) and p for p in images):
        return rebase_images(row, from_dir, to_dir)
    return row


def summarise(teacher: Teacher, outcomes: list[RowOutcome], rows: int, written: int, failed: int) -> dict[str, Any]:
    usage = Usage()
    for outcome in outcomes:
        usage.add(outcome.usage)
    return {
        "teacher": teacher.name,
        "rows": rows,
        "written": written,
        "failures": failed,
        "candidates": sum(len(o.candidates) for o in outcomes),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "tokens": usage.prompt_tokens + usage.completion_tokens,
        "cost": round(teacher.cost(usage), 6),
        "cache_hits": sum(1 for o in outcomes if o.cached),
        "requests": usage.requests,
        "retries": usage.retries,
        "generic_chains": sum(1 for o in outcomes if o.extra.get("scene") is False),
    }


# ----------------------------------------------------------------------------- stage
def run_cot_stage(
    params: Any, input_path: Path, out_path: Path, image_root: Path | None = None, limit: int | None = None
) -> dict[str, Any]:
    """generate_cot inside the `cot` MLflow run: params, stats as metrics, failures and a sample as
    artifacts, the written data as a dataset input."""
    from univg.tracking import stage_run

    cfg = params.cot
    out_path = Path(out_path)
    logged = {"cot": cfg.model_dump(mode="json"), "input": str(input_path), "limit": limit}
    with stage_run("cot", params, log_params=logged) as run:
        import mlflow

        stats = generate_cot(Path(input_path), out_path, cfg, image_root, limit,
                             stage_policy(input_path, image_root, params.data))
        mlflow.log_metrics({k: float(v) for k, v in stats.items() if isinstance(v, int | float)})
        mlflow.log_dict(stats, "cot_stats.json")
        if failed_path(out_path).stat().st_size:
            mlflow.log_artifact(str(failed_path(out_path)))
        log_dataset(out_path, "cot")
        stats["mlflow_run_id"] = run.info.run_id
    return stats


DATASET_COLUMNS = ("id", "task", "images", "question", "target_image", "box", "source", "cot")


def log_dataset(path: Path, name: str, context: str = "cot") -> None:
    """A record file as an MLflow dataset input: the contract columns (not meta: scenes are bulky),
    lists as JSON text so pandas can hash them for the digest."""
    import mlflow
    import pandas as pd

    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            rows.append({k: json.dumps(record[k]) if isinstance(record.get(k), list) else record.get(k)
                         for k in DATASET_COLUMNS})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return
    with warnings.catch_warnings():  # MLflow's hints about local sources and int columns: noise here
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=str(Path(path).resolve()), name=name)
        mlflow.log_input(dataset, context=context)
    mlflow.log_table(frame.head(20), artifact_file=f"{name}_sample.json")
