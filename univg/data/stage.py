"""The `data` stage: generate mig-synth, or import a file, and log the dataset card to MLflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from univg.config import Params
from univg.data.images import ImagePolicy, rebase_images
from univg.schema import write_jsonl, write_text_atomic
from univg.tracking import stage_run


def run_data_stage(params: Params, out_dir: Path | None = None) -> dict[str, Any]:
    cfg = params.data
    out_dir = Path(out_dir or cfg.out_dir)
    with stage_run("data", params, log_params={"data": cfg.model_dump(mode="json")}) as run:
        import mlflow

        if cfg.source == "synth":
            from univg.data.synth import generate_dataset

            card = generate_dataset(cfg, out_dir)
        else:
            card = import_records(cfg.source, Path(cfg.import_path), out_dir, Path(cfg.image_root) if cfg.image_root else None,
                                  cfg.allow_outside_root, cfg.path_map)
        write_text_atomic(out_dir / "card.json", json.dumps(card, indent=2))
        mlflow.log_dict(card, "dataset_card.json")
        if (out_dir / "README.md").exists():
            mlflow.log_artifact(str(out_dir / "README.md"))
        for split in ("train", "val", "test"):
            path = out_dir / f"{split}.jsonl"
            if path.exists():
                mlflow.log_metric(f"{split}_records", sum(1 for _ in path.open()))
        card["mlflow_run_id"] = run.info.run_id
        return card


def _split_of(key: str, test_share: float = 0.05) -> str:
    """Deterministic split by a key's hash, so re-imports never move a record between splits."""
    bucket = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test_share else "train"


def image_groups(records: list[dict[str, Any]]) -> list[str]:
    """Per record, the key of its group: records that share any image, directly or through others,
    form one group, keyed by its first image path in sorted order. Splitting by group keeps every
    image on one side (video frames, several questions about one picture), which the validation
    suite's pixel leak check would otherwise find."""
    parent: dict[str, str] = {}

    def find(item: str) -> str:
        while parent.setdefault(item, item) != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for record in records:
        first, *rest = [str(p) for p in record["images"]]
        for other in rest:
            a, b = find(first), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the smallest path is the root: the key is stable
    return [find(str(record["images"][0])) for record in records]


def import_records(fmt: str, path: Path, out_dir: Path, image_root: Path | None = None,
                   allow_outside_root: bool = False, path_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Convert a benchmark/training file into train/test record files plus quarantine.jsonl.

    Rows the loader cannot read are quarantined with their reasons, never dropped. `path_map`
    {old prefix: new prefix} rewrites image paths before they are resolved.
    """
    from univg.data.benchmarks import load_benchmark

    if not Path(path).is_file():
        raise FileNotFoundError(2, "no such file to import", str(path))
    root = Path(image_root) if image_root else Path(path).parent
    loaded = load_benchmark(fmt, Path(path), image_root, ImagePolicy(root=root, allow_outside_root=allow_outside_root),
                            path_map=path_map)
    source_dir = Path(image_root) if image_root else Path(path).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for record, group in zip(loaded.records, image_groups(loaded.records), strict=True):
        splits[_split_of(group)].append(rebase_images(record, source_dir, out_dir))
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)
    write_jsonl(out_dir / "quarantine.jsonl", loaded.quarantined)
    per_task: dict[str, int] = {}
    for record in loaded.records:
        per_task[record["task"]] = per_task.get(record["task"], 0) + 1
    return {
        "source": fmt,
        "imported_from": str(path),
        "counts": {split: len(rows) for split, rows in splits.items()},
        "quarantined": len(loaded.quarantined),
        "per_task": per_task,
    }
