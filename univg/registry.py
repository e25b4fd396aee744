"""Registration and the significance-gated promotion of `champion` in the MLflow model registry.

- `decide` (univg.gate) is the gate, a pure function: promote only when the candidate's Acc@0.5 beats the
  reference by at least `min_delta` AND the paired-bootstrap interval of the difference excludes 0.
- `promote` registers the candidate (alias `challenger`), pairs its per-sample hits with the
  champion's (or the base model's, for the first version) by record id, and moves `champion`
  only when the gate says so. Every decision lives in model-version tags, so a second run with
  the same candidate changes nothing, and `rollback` can restore the previous champion.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from univg.config import Params
from univg.gate import HIT_IOU, GateDecision, PromotionError, best_candidate, decide, pair_hits, read_hits  # noqa: F401
from univg.tracking import (
    FINGERPRINT_TAG,
    checkpoint_fingerprint,
    lineage_tags,
    log_jsonl_input,
    log_model_checkpoint,
    setup_mlflow,
    stage_run,
)

CHAMPION, CHALLENGER = "champion", "challenger"
PER_SAMPLE_TAG = "univg.per_sample_uri"
PREVIOUS_TAG = "univg.previous_champion"
ROLLED_BACK_TAG = "univg.rolled_back"
DECISION_TAG = "univg.gate.decision"
MIN_SHARED_FRACTION = 0.9  # below this the two files come from different benchmark versions
EVAL_KEYS = ("acc@0.3", "acc@0.5", "acc@0.7", "miou", "avg", "n")


# ----------------------------------------------------------------------------- registry helpers
def _version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _existing_version(client: Any, name: str, candidate: str | None, fingerprint: str | None) -> Any | None:
    """The registered version of this candidate, if an earlier promotion registered it."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    if fingerprint:
        matches = [v for v in versions if v.tags.get(FINGERPRINT_TAG) == fingerprint]
    else:
        matches = [v for v in versions if v.source == candidate]
    return max(matches, key=lambda v: int(v.version), default=None)


def _logged_model_uri(fingerprint: str) -> str | None:
    """The newest model a training stage logged from exactly this checkpoint."""
    import mlflow

    found = mlflow.search_logged_models(
        filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'",
        order_by=[{"field_name": "creation_time", "ascending": False}],
        output_format="list", max_results=1,
    )
    return f"models:/{found[0].model_id}" if found else None


def _register(client: Any, name: str, model_uri: str, fallback_run_id: str, fingerprint: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="UniVG-R1 grounding model; alias champion serves.")
    run_id, model_id = fallback_run_id, None
    if model_uri.startswith("runs:/"):
        run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
    elif model_uri.startswith("models:/m-"):
        model_id = model_uri.removeprefix("models:/").split("/", 1)[0]
        run_id = client.get_logged_model(model_id).source_run_id or fallback_run_id
    tags = {FINGERPRINT_TAG: fingerprint} if fingerprint else None
    # A tracking server insists on model_id for a models:/m-... source (a sqlite store does not).
    return client.create_model_version(name=name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id)


def _tag_version(client: Any, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def _eval_tags(metrics_file: Path, model: str) -> dict[str, str]:
    if not metrics_file.is_file():
        return {}
    entry = json.loads(metrics_file.read_text()).get(model, {})
    return {f"eval.{key.replace('@', '_at_')}": json.dumps(entry[key]) for key in EVAL_KEYS if key in entry}


def _download_hits(uri: str) -> dict[str, float]:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return read_hits(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))


def _num(text: str | None) -> float | None:
    value = float(text) if text not in (None, "") else float("nan")
    return None if math.isnan(value) else value


def _record(name: str, version: Any) -> dict[str, Any]:
    """The promotion record, read back from the version's tags (so a re-run writes the same file)."""
    tags = version.tags
    gate = {k.removeprefix("univg.gate."): v for k, v in tags.items() if k.startswith("univg.gate.")}
    promoted = tags.get(DECISION_TAG) == "promote"
    before = gate.get("champion_before") or None
    return {
        "model_name": name,
        "version": str(version.version),
        "source": version.source,
        "promoted": promoted,
        "champion_before": before,
        "champion_after": str(version.version) if promoted else before,
        "rolled_back": tags.get(ROLLED_BACK_TAG) == "true",
        "candidate": tags.get("univg.candidate"),
        "chosen_because": tags.get("univg.candidate.chosen_because"),
        "decision": {
            "promote": promoted,
            **{key: gate.get(key, "") for key in ("reason", "reference", "benchmark")},
            **{key: _num(gate.get(key)) for key in ("delta", "confidence", "min_delta", "candidate_acc", "reference_acc")},
            "ci": [_num(gate.get("ci_low")), _num(gate.get("ci_high"))],
            "n": int(gate.get("n") or 0),
        },
        "eval": {k.removeprefix("eval."): json.loads(v) for k, v in sorted(tags.items()) if k.startswith("eval.")},
        "data_hash": tags.get("data_hash"),
        "git_commit": tags.get("git_commit"),
        "experiment": tags.get("univg.experiment") or None,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- promotion
def promote(
    params: Params,
    candidate_per_sample: Path,
    reference_per_sample: Path,
    checkpoint_dir: Path | None = None,
    candidate: str | None = None,
    candidate_name: str = "grpo",
    metrics_file: Path | None = None,
    out: Path = Path("metrics/promotion.json"),
    chosen_because: str = "",
) -> dict[str, Any]:
    """Register the candidate as `challenger`; move `champion` to it only when the gate says so.

    The candidate is `candidate` (a models:/m-... or runs:/ URI of a logged model) or else the
    model logged from `checkpoint_dir` (found by its fingerprint; logged now if no stage logged
    it). `reference_per_sample` (the base model's per-sample file) is the reference while there
    is no champion. Idempotent: a version that already carries a
    decision is left as it is. Writes `out` and returns the record plus `changed`.
    """
    import mlflow

    name, benchmark = params.gate.model_name, params.gate.benchmark
    if candidate is None and (checkpoint_dir is None or not (Path(checkpoint_dir) / "config.json").is_file()):
        raise PromotionError(f"{checkpoint_dir}: no candidate checkpoint (config.json missing) and no candidate URI")
    setup_mlflow(params.tracking.uri, params.tracking.experiment)
    client = mlflow.MlflowClient()
    candidate_hits = read_hits(candidate_per_sample)
    fingerprint = checkpoint_fingerprint(checkpoint_dir) if candidate is None else None
    version = _existing_version(client, name, candidate, fingerprint)
    if version is not None and DECISION_TAG in version.tags:
        record = _record(name, version)
        _write_json(Path(out), record)
        return {**record, "changed": False}

    with stage_run("promote", params, log_params={"gate": params.gate.model_dump(mode="json")}) as run:
        for label, path in (("candidate", candidate_per_sample), ("reference", reference_per_sample)):
            if Path(path).is_file():
                log_jsonl_input(path, f"{benchmark}-{label}-per-sample", context="gate")
        if version is None:
            model_uri = candidate or _logged_model_uri(fingerprint) or log_model_checkpoint(
                Path(checkpoint_dir), name=candidate_name)
            version = _register(client, name, model_uri, run.info.run_id, fingerprint)
        # The per-sample hits travel with the version, so a later gate can pair records by id.
        version_run = version.run_id or run.info.run_id
        client.log_artifact(version_run, str(candidate_per_sample), artifact_path=f"gate/{benchmark}")
        per_sample_key = f"{PER_SAMPLE_TAG}.{benchmark}"
        _tag_version(client, name, version.version, {
            per_sample_key: f"runs:/{version_run}/gate/{benchmark}/{Path(candidate_per_sample).name}",
            **lineage_tags(), "univg.candidate": candidate_name,
            "univg.candidate.chosen_because": chosen_because or "named by the caller",
            **_eval_tags(Path(metrics_file or params.eval.metrics_file), candidate_name),
        })
        client.set_registered_model_alias(name, CHALLENGER, version.version)

        champion = _version_by_alias(client, name, CHAMPION)
        decision, reference = _gate(params, candidate_hits, reference_per_sample, champion, version, per_sample_key)
        decision_tags = {
            "univg.gate.delta": decision.delta, "univg.gate.ci_low": decision.ci[0],
            "univg.gate.ci_high": decision.ci[1], "univg.gate.n": decision.n,
            "univg.gate.reason": decision.reason, "univg.gate.reference": reference,
            "univg.gate.benchmark": benchmark, "univg.gate.min_delta": params.gate.min_delta,
            "univg.gate.confidence": params.gate.confidence,
            "univg.gate.candidate_acc": decision.candidate_acc, "univg.gate.reference_acc": decision.reference_acc,
            "univg.gate.champion_before": champion.version if champion else "",
        }
        _tag_version(client, name, version.version, decision_tags)
        if decision.promote:
            _tag_version(client, name, version.version, {PREVIOUS_TAG: champion.version if champion else ""})
            client.set_registered_model_alias(name, CHAMPION, version.version)
        # Written last: its presence marks the decision as complete (see the idempotency check).
        _tag_version(client, name, version.version, {DECISION_TAG: "promote" if decision.promote else "keep"})

        record = _record(name, client.get_model_version(name, version.version))
        mlflow.set_tags({**{k: str(v) for k, v in decision_tags.items()}, "univg.version": record["version"],
                         DECISION_TAG: "promote" if decision.promote else "keep"})
        metrics = {"gate_delta": decision.delta, "gate_ci_low": decision.ci[0], "gate_ci_high": decision.ci[1]}
        mlflow.log_metrics({"promoted": float(decision.promote), **{k: v for k, v in metrics.items() if v == v}})
        mlflow.log_dict(record, "promotion.json")
    _write_json(Path(out), record)
    return {**record, "changed": True}


def _gate(
    params: Params, candidate_hits: dict[str, float], reference_per_sample: Path,
    champion: Any | None, version: Any, per_sample_key: str,
) -> tuple[GateDecision, str]:
    """The gate against the champion (or against the base model while there is none)."""
    nan = float("nan")
    if champion is None:
        reference, reference_hits = "base", read_hits(reference_per_sample)
    else:
        reference = f"champion:v{champion.version}"
        if champion.version == version.version:
            return GateDecision(False, 0.0, (nan, nan), "candidate is already the champion"), reference
        uri = champion.tags.get(per_sample_key)
        if not uri:
            reason = f"champion v{champion.version} has no per-sample record on {params.gate.benchmark}"
            return GateDecision(False, nan, (nan, nan), reason), reference
        reference_hits = _download_hits(uri)
    cand, ref, shared = pair_hits(candidate_hits, reference_hits)
    if shared < MIN_SHARED_FRACTION:
        reason = (f"{reference} was scored on a different benchmark version: only {shared:.0%} of the "
                  f"candidate's record ids are shared (need {MIN_SHARED_FRACTION:.0%})")
        return GateDecision(False, nan, (nan, nan), reason, len(cand)), reference
    decision = decide(cand, ref, params.gate.min_delta, params.gate.confidence,
                      params.eval.n_bootstrap, params.eval.seed)
    return decision, reference


def promote_pipeline(params: Params) -> dict[str, Any]:
    """`univg promote`: gate the run's best trained model (highest Acc@0.5 of sft and grpo in the
    eval stage's metrics) against the champion; the record says which it chose and why."""
    if params.gate.benchmark != params.eval.benchmark:
        raise PromotionError(
            f"gate.benchmark {params.gate.benchmark!r} differs from eval.benchmark {params.eval.benchmark!r}: "
            "the pipeline's per-sample files are scored on the eval benchmark")
    folders = {"sft": Path(params.sft.out_dir) / "final", "grpo": Path(params.grpo.out_dir) / "final"}
    trained = [m for m in params.eval.models if m in folders]
    if not trained:
        raise PromotionError(f"eval.models {params.eval.models} holds no trained model (sft or grpo) to promote")
    metrics_file = Path(params.eval.metrics_file)
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    stage, why = best_candidate(metrics, trained)
    eval_dir = Path(params.eval.out_dir)
    return promote(
        params, candidate_per_sample=eval_dir / stage / "per_sample.jsonl",
        reference_per_sample=eval_dir / "base" / "per_sample.jsonl", checkpoint_dir=folders[stage],
        candidate_name=stage, metrics_file=metrics_file, out=Path("metrics/promotion.json"), chosen_because=why,
    )


def rollback(params: Params) -> dict[str, Any]:
    """`univg promote --rollback`: give `champion` back to the version it replaced."""
    import mlflow

    name = params.gate.model_name
    setup_mlflow(params.tracking.uri, params.tracking.experiment)
    client = mlflow.MlflowClient()
    current = _version_by_alias(client, name, CHAMPION)
    if current is None:
        raise PromotionError(f"model {name!r} has no champion to roll back")
    previous = current.tags.get(PREVIOUS_TAG, "")
    if not previous:
        raise PromotionError(f"{name} v{current.version} was the first champion: there is no previous one")
    with stage_run("rollback", params):
        client.set_registered_model_alias(name, CHAMPION, previous)
        # Marks the version, so that the record says so and a re-run of the gate leaves it be.
        client.set_model_version_tag(name, current.version, ROLLED_BACK_TAG, "true")
        mlflow.set_tags({"univg.rollback.from": str(current.version), "univg.rollback.to": previous})
    return {"model_name": name, "champion_before": str(current.version), "champion_after": previous,
            "rolled_back": True}
