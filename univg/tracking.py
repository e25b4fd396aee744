"""Training-time MLflow: the one helper every stage uses to open its run, and what a run logs.

- Store: `MLFLOW_TRACKING_URI` wins; else `tracking.uri` from params; else an absolute
  `sqlite:///<repo>/mlruns.db` (MLflow 3 refuses a plain file store).
- The experiment is created once, before anything logs to it.
- Nesting: when the Prefect pipeline flow runs the stages it exports `UNIVG_PARENT_RUN_ID`;
  each stage's run then nests under that parent run.
- Lineage tags on every run: stage name, git commit, and the data hash from dvc.lock.
- `log_model_checkpoint` logs a checkpoint folder as a pyfunc model, `log_jsonl_input` a JSONL
  file as a dataset input (the training stages, and promotion, call them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

PARENT_RUN_ENV = "UNIVG_PARENT_RUN_ID"
FINGERPRINT_TAG = "univg.checkpoint_fingerprint"


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


# ----------------------------------------------------------------------------- models and data of a run
def checkpoint_fingerprint(checkpoint_dir: str | Path) -> str:
    """A cheap content fingerprint of a checkpoint folder, stable across `dvc checkout`.

    Small files are hashed whole; large weight files by size plus head and tail, so a 15 GB
    checkpoint costs milliseconds while any retrained weights still change the fingerprint.
    """
    root = Path(checkpoint_dir)
    digest = hashlib.sha256()
    chunk = 4 << 20
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= 2 * chunk:
                digest.update(handle.read())
            else:
                digest.update(handle.read(chunk))
                handle.seek(size - chunk)
                digest.update(handle.read(chunk))
    return digest.hexdigest()[:32]


def _pip_requirements() -> list[str]:
    # Pinned from the running environment: MLflow's own inference imports the model in a
    # subprocess, which costs many seconds for a torch model.
    pins = []
    for package in ("mlflow", "torch", "torchvision", "transformers", "pillow", "pandas", "numpy"):
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


# Models from code (not a pickled object): the logged model holds this file, and loading it
# only needs `univg` importable, whatever cloudpickle or Python version wrote it.
_MODEL_CODE = "import mlflow\nfrom univg.predict import UnivgPyfuncModel\n\nmlflow.models.set_model(UnivgPyfuncModel())\n"


def log_model_checkpoint(
    checkpoint_dir: Path, name: str = "model", registered_model_name: str | None = None
) -> str:
    """Log a checkpoint folder as an MLflow pyfunc model into the active run; returns its URI.

    The folder travels as the artifact `checkpoint`; the model loader finds it again (the
    folder holding config.json) from a models:/ or runs:/ URI. Without an active run, one is
    opened for the occasion. predict() takes a DataFrame with `images` and `question` columns.
    """
    import mlflow

    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: not a checkpoint folder (no config.json)")

    def _log() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            code = Path(tmp) / "univg_pyfunc.py"
            code.write_text(_MODEL_CODE)
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(code),
                artifacts={"checkpoint": str(checkpoint_dir)},
                pip_requirements=_pip_requirements(),
                registered_model_name=registered_model_name,
                tags={FINGERPRINT_TAG: checkpoint_fingerprint(checkpoint_dir),
                      "git_commit": git_commit(), "data_hash": data_hash()},
            )
        return info.model_uri

    if mlflow.active_run() is not None:
        return _log()
    with stage_run(f"log_model-{name}"):
        return _log()


def log_jsonl_input(path: str | Path, name: str, context: str) -> None:
    """Log a JSONL file as an MLflow dataset input of the active run (lineage: which data fed it)."""
    import mlflow
    import pandas as pd

    path = Path(path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    frame = pd.json_normalize(rows) if rows else pd.DataFrame()
    with warnings.catch_warnings():  # MLflow registers the local source twice and warns about it
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(frame.astype(str), source=str(path.resolve()), name=name)
    mlflow.log_input(dataset, context=context)
