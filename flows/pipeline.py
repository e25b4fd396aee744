"""The pipeline flow: the DVC stages in order as Prefect tasks, under one MLflow parent run.

Thin wiring only (the work is in `univg` and dvc.yaml):
1. apply params overrides to params.yaml (validated by the typed config first), for this run only;
2. open an MLflow parent run; each stage's run nests under it via UNIVG_PARENT_RUN_ID, and every
   run carries the lineage tags (univg.tracking.lineage_tags: the DVC experiment, git commit,
   dvc.lock hash, DVC remote);
3. `dvc repro <stage>` for each stage, one at a time (DVC holds a repo lock), with retries for
   transient failures; a forced stage runs with `--force --single-item`;
4. keep the run as a DVC experiment named after the flow run (`dvc exp save`: params, dvc.lock,
   metrics; `dvc exp show` lists it), then put params.yaml back as it was;
5. publish Prefect artifacts (a markdown summary with the metrics table and the promotion
   decision, a link to the MLflow run). The promotion gate is dvc.yaml's last stage;
6. push the outputs to the DVC remote (`dvc push`) and the experiment to the git remote, if any.

Run it directly (`python flows/pipeline.py --set grpo.tiny-cpu.max_steps=2`) or through the
deployment in infra/prefect.yaml (see docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

if __package__ in (None, ""):  # loaded by file path (a deployment's entrypoint): make `flows` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.steps import (  # noqa: E402
    StageFailed,
    StageResult,
    apply_overrides,
    dvc_stage_names,
    mlflow_run_link,
    params_restored,
    push_outputs,
    read_json,
    run_dvc_stage,
    save_experiment,
    stage_env,
    summary_markdown,
)
from univg.config import load_params  # noqa: E402
from univg.lineage import experiment_name  # noqa: E402
from univg.tracking import EXPERIMENT_ENV, lineage_tags, setup_mlflow, tracking_uri  # noqa: E402


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a stage unless its failure is one a retry cannot fix (see StageFailed.transient)."""
    try:
        state.result()
    except StageFailed as error:
        return error.transient
    except Exception:
        return True
    return False


@task(name="params-overrides", cache_policy=NO_CACHE)
def apply_params_overrides(root: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    return apply_overrides(root, overrides)


@task(name="dvc-stage", cache_policy=NO_CACHE, retry_condition_fn=_retry_transient, task_run_name="{stage}")
def run_stage(root: Path, stage: str, force: bool, env: dict[str, str], single_item: bool) -> StageResult:
    result = run_dvc_stage(root, stage, force, env, single_item=single_item)
    get_run_logger().info("stage %s %s in %.1f s", stage, result.status, result.seconds)
    return result


@task(name="save-experiment", cache_policy=NO_CACHE)
def save_run_as_experiment(root: Path, experiment: str, env: dict[str, str]) -> dict[str, Any]:
    return save_experiment(root, experiment, env)


@task(name="push-outputs", cache_policy=NO_CACHE)
def push_run_outputs(root: Path, experiment: str, env: dict[str, str]) -> dict[str, Any]:
    return push_outputs(root, experiment, env)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(
    root: Path, results: list[StageResult], run_link: str, uri: str, applied: dict[str, Any]
) -> dict[str, Any]:
    params = load_params(root / "params.yaml")
    eval_metrics = read_json(root / params.eval.metrics_file)
    promotion = read_json(root / "metrics" / "promotion.json")
    markdown = summary_markdown(eval_metrics, promotion, results, run_link, uri, applied)
    create_markdown_artifact(markdown, key="univg-pipeline-summary", description="Stages, metrics, promotion")
    create_link_artifact(run_link, link_text="MLflow parent run", key="univg-mlflow-run")
    return {"eval": eval_metrics, "promotion": promotion}


def _log_to_parent(mlflow: Any, summary: dict[str, Any]) -> None:
    """The headline numbers on the parent run too, so the runs table compares pipeline runs."""
    for model, metrics in summary["eval"].items():
        if isinstance(metrics, dict):
            values = {f"{model}.{k.replace('@', '_at_')}": v for k, v in metrics.items()
                      if isinstance(v, int | float) and not isinstance(v, bool)}
            mlflow.log_metrics(values)
    promotion = summary["promotion"]
    if promotion:
        mlflow.set_tags({"univg.promoted": str(promotion.get("promoted")),
                         "univg.version": str(promotion.get("version")),
                         "univg.champion": str(promotion.get("champion_after"))})


@flow(name="univg-pipeline", log_prints=True)
def pipeline(
    repo: str = ".",
    overrides: dict[str, Any] | None = None,
    force: list[str] | None = None,
    stages: list[str] | None = None,
    stage_retries: int = 2,
    retry_delay_seconds: float = 30.0,
) -> dict[str, Any]:
    """Run the DVC pipeline stage by stage under an MLflow parent run; returns metrics and the decision.

    repo: the project checkout (holds dvc.yaml and params.yaml).
    overrides: dotted params to write first, e.g. {"grpo.tiny-cpu.learning_rate": 1e-4}.
    force: stages to re-run even when DVC finds them up to date.
    stages: which stages, in order (default: all of dvc.yaml, upstream first).
    stage_retries / retry_delay_seconds: retries of a stage that failed transiently (a crash, a
      held DVC lock), after retry_delay_seconds, then twice that, and so on (with 20% jitter);
      training stages resume from their last checkpoint (`resume: auto`). A stage that failed on
      bad input (`error: ...`, see univg.errors) is not retried.
    """
    root = Path(repo).resolve()
    order = stages or dvc_stage_names(root)
    unknown = sorted(set(force or []) - set(order))
    if unknown:
        raise ValueError(f"force names stage(s) {unknown} that are not in {order}")
    experiment = experiment_name(flow_run.get_name() or "local", str(flow_run.get_id() or ""))
    with params_restored(root):  # the overrides live in the experiment, not in the checkout
        result = _run_as_experiment(root, experiment, overrides, force, order, stages is None, stage_retries,
                                    retry_delay_seconds)
    result["pushed"] = push_run_outputs(root, experiment, result.pop("env"))
    failed = {what: outcome for what, outcome in result["pushed"].items() if str(outcome).startswith("failed")}
    if failed:  # the run is complete here, but not shared: say so loudly rather than succeed quietly
        raise RuntimeError(f"run kept as experiment {experiment}, but pushing it failed: {failed}")
    return result


def _run_as_experiment(root: Path, experiment: str, overrides: dict[str, Any] | None, force: list[str] | None,
                       order: list[str], whole: bool, stage_retries: int, retry_delay_seconds: float) -> dict[str, Any]:
    import mlflow

    # --- params overrides (before anything reads params)
    applied = apply_params_overrides(root, overrides)
    params = load_params(root / "params.yaml")

    # --- the MLflow parent run, tagged with the run's lineage
    uri = tracking_uri(params.tracking.uri, root)
    experiment_id = setup_mlflow(params.tracking.uri, params.tracking.experiment, root)
    run_name = f"pipeline-{flow_run.get_name() or 'local'}"
    tags = {"univg.stage": "pipeline", **lineage_tags(root), "univg.experiment": experiment,
            "prefect.flow_run_id": str(flow_run.get_id() or "")}
    with mlflow.start_run(run_name=run_name, tags=tags) as parent:
        if applied:
            mlflow.log_params({f"override.{k}": v for k, v in applied.items()})
        env = stage_env(parent.info.run_id, uri, {EXPERIMENT_ENV: experiment})

        # --- the stages, one at a time
        # Exponential backoff with jitter: a busy server or a held lock gets more room each time.
        delays = [retry_delay_seconds * 2**attempt for attempt in range(stage_retries)]
        runner = run_stage.with_options(retries=stage_retries, retry_delay_seconds=delays, retry_jitter_factor=0.2)
        # The whole pipeline upstream first: each stage's inputs were just reproduced, so DVC need
        # not re-check the stages above it. A chosen subset gets the full check.
        results = [runner(root, stage, stage in (force or []), env, whole) for stage in order]

        # --- keep the run: its params, dvc.lock and metrics as a DVC experiment
        saved = save_run_as_experiment(root, experiment, env)

        # --- report
        link = mlflow_run_link(uri, experiment_id, parent.info.run_id)
        summary = publish_summary(root, results, link, uri, applied)
        _log_to_parent(mlflow, summary)
    return {"mlflow_run_id": parent.info.run_id, "mlflow_link": link, "experiment": saved["experiment"],
            "stages": [r.to_dict() for r in results], "env": env, **summary}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the univg pipeline flow once, here.")
    parser.add_argument("--repo", default=".", help="project checkout (default: .)")
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                        help="params override, e.g. -S grpo.tiny-cpu.max_steps=2 (repeatable)")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE", help="re-run this stage")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    pipeline(repo=args.repo, overrides=overrides or None, force=args.force or None)


if __name__ == "__main__":
    main()
