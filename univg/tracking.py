"""The one helper every stage uses to open its MLflow run.

- Store: `MLFLOW_TRACKING_URI` wins; else `tracking.uri` from params; else an absolute
  `sqlite:///<repo>/mlruns.db` (MLflow 3 refuses a plain file store).
- The experiment is created once, before anything logs to it.
- Nesting: when the Prefect pipeline flow runs the stages it exports `UNIVG_PARENT_RUN_ID`;
  each stage's run then nests under that parent run.
- Lineage tags on every run: stage name, git commit, and the data hash from dvc.lock.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARENT_RUN_ENV = "UNIVG_PARENT_RUN_ID"


def repo_root(start: str | Path | None = None) -> Path:
    """The folder holding params.yaml / dvc.yaml (the current directory when none is found)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / "params.yaml").exists():
            return folder
    return here


def tracking_uri(configured: str = "", root: str | Path | None = None) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if configured:
        return configured
    return f"sqlite:///{(repo_root(root) / 'mlruns.db').resolve()}"


def setup_mlflow(configured_uri: str = "", experiment: str = "univg", root: str | Path | None = None) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    import mlflow

    uri = tracking_uri(configured_uri, root)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") or "://" not in uri:
        # Artifacts beside the database, not in whatever folder the stage happens to run from.
        artifact_root = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
    else:
        artifact_root = None
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = client.create_experiment(
                experiment, artifact_location=artifact_root.as_uri() if artifact_root else None
            )
        except Exception:  # created by a concurrent writer between our check and create
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit(root: str | Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(root), capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_hash(root: str | Path | None = None, stage: str = "data") -> str:
    """md5 of the `stage`'s first output in dvc.lock (the data the model was trained on)."""
    import yaml

    lock = repo_root(root) / "dvc.lock"
    if not lock.exists():
        return "unknown"
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        outs = stages.get(stage, {}).get("outs", [])
        return str(outs[0].get("md5", "unknown")) if outs else "unknown"
    except Exception:
        return "unknown"


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Any = None,
    run_name: str | None = None,
    log_params: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Open the MLflow run of one pipeline stage, nested under the flow's parent run if any.

    `params` is the typed Params (for the tracking section); `log_params` are logged flat.
    """
    import mlflow

    tracking = getattr(params, "tracking", None)
    setup_mlflow(getattr(tracking, "uri", ""), getattr(tracking, "experiment", "univg"))
    parent = os.environ.get(PARENT_RUN_ENV)
    tags = {"univg.stage": stage, "git_commit": git_commit(), "data_hash": data_hash()}
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_name=run_name or stage, tags=tags) as run:
        if log_params:
            mlflow.log_params({k: _short(v) for k, v in flatten(log_params).items()})
        yield run


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
