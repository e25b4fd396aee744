"""The `base_model` stage: put the base model in models/base.

- `univg-tiny`: the pretrained tiny Qwen2-VL shipped in checkpoints/univg-tiny, copied after its
  weights' sha256 is checked against its release record (seconds);
- `scratch`: build a tiny Qwen2-VL here: tokenizer on the given corpus, init, perception pre-training;
- anything else: a real checkpoint (folder, hub id, MLflow URI), resolved once and saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from univg.config import Params
from univg.models.loading import SHIPPED_MODELS
from univg.tracking import stage_run


def run_base_model_stage(params: Params, corpus_files: list[Path], out_dir: Path | None = None) -> dict[str, Any]:
    cfg = params.model
    out_dir = Path(out_dir or cfg.out_dir)
    with stage_run("base_model", params, log_params={"model": cfg.model_dump(mode="json")}):
        import mlflow

        if cfg.base in SHIPPED_MODELS:
            info = copy_shipped(cfg.base, out_dir)
        elif cfg.base == "scratch":
            from univg.models.tiny import build_tiny_model, corpus_from_records

            missing = [str(p) for p in corpus_files if not Path(p).is_file()]
            if missing:
                raise FileNotFoundError(f"corpus file(s) not found: {', '.join(missing)}")
            info = build_tiny_model(cfg, corpus_from_records(list(corpus_files)), out_dir)
            if cfg.pretrain_steps:
                info["pretrain"] = _pretrain(params, out_dir)
        else:
            # A real checkpoint: resolve it once (fails clearly when offline without a copy) and
            # save it here, so every later stage loads the same local folder.
            from univg.models.loading import load_model_and_processor

            model, processor = load_model_and_processor(cfg.base, padding_side="left")
            model.save_pretrained(out_dir)
            processor.save_pretrained(out_dir)
            info = {"base": cfg.base, "parameters": sum(p.numel() for p in model.parameters())}
            (out_dir / "univg_model.json").write_text(json.dumps(info, indent=2))
        mlflow.log_dict(info, "model_info.json")
        for key, value in (info.get("pretrain") or {}).items():
            if isinstance(value, int | float):
                mlflow.log_metric(f"pretrain/{key}", value)
        for key, value in info.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                mlflow.log_metric(key, value)
        return info


def _pretrain(params: Params, model_dir: Path) -> dict[str, Any]:
    """Perception pre-training of the freshly built tiny model, in place (univg.models.pretrain)."""
    from univg.models.pretrain import pretrain_perception

    cfg = params.model
    summary = pretrain_perception(
        model_dir, model_dir, steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch_size,
        learning_rate=cfg.pretrain_learning_rate, image_size=params.data.image_size,
        position_cue=params.data.position_cue, seed=cfg.seed,
    )
    (model_dir / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def copy_shipped(name: str, out_dir: Path) -> dict[str, Any]:
    """Copy a shipped checkpoint to `out_dir` after checking its weights against its release record."""
    import shutil

    from univg.models.univg_tiny import RELEASE_FILE, WEIGHTS_FILE, file_sha256

    source = SHIPPED_MODELS[name]
    record_file = source / RELEASE_FILE
    if not record_file.is_file():
        raise FileNotFoundError(f"{source}: no shipped checkpoint here ({RELEASE_FILE} missing); "
                                "rebuild it with `dvc repro pretrain/dvc.yaml`")
    release = json.loads(record_file.read_text())
    found = file_sha256(source / WEIGHTS_FILE)
    if found != release.get("sha256"):
        raise ValueError(f"{source / WEIGHTS_FILE}: sha256 {found} does not match its release record "
                         f"({release.get('sha256')}); the file is damaged or was changed by hand")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(source, out_dir)
    return {"base": name, "sha256": found, "gates": release.get("gates", {}), "steps": release.get("steps")}
