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
import logging
import os
import queue
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
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


EXPERIMENT_ENV = "UNIVG_EXPERIMENT"  # the DVC experiment a flow run is saved as, set for every stage it runs
LINEAGE_KEYS = ("univg.experiment", "git_commit", "dvc_lock_md5", "data_hash", "dvc.remote", "git.repo")


def lineage_tags(root: str | Path | None = None) -> dict[str, str]:
    """What made a run, as tags (univg.lineage reads them back): the DVC experiment, the git commit,
    dvc.lock's and the data's hashes, the DVC remote the outputs go to, and where to clone from."""
    root = repo_root(root)
    lock = root / "dvc.lock"
    return {
        "univg.experiment": os.environ.get(EXPERIMENT_ENV, ""),
        "git_commit": git_commit(root),
        "dvc_lock_md5": hashlib.md5(lock.read_bytes()).hexdigest() if lock.is_file() else "unknown",  # at the start
        "data_hash": data_hash(root),
        "dvc.remote": without_credentials(dvc_remote_url(root)),
        "git.repo": without_credentials(git_repo_url(root)),
    }


def without_credentials(url: str) -> str:
    """`url` without a user or token (https://user:token@host/... -> https://host/...): tags are not secrets."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url:
        return url
    parts = urlsplit(url)
    # over http(s) a user name alone may be a token (https://TOKEN@github.com); over ssh it is the login
    keep_user = parts.username and not parts.password and not parts.scheme.startswith("http")
    if not (parts.username or parts.password) or keep_user:
        return url
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))


def dvc_remote_url(root: str | Path | None = None) -> str:
    """The default DVC remote's URL ('' for none); a local path is made absolute (DVC reads paths in
    its config relative to .dvc/). Read from .dvc/config and config.local, as DVC merges them."""
    import configparser

    folder = repo_root(root) / ".dvc"
    config = configparser.ConfigParser(interpolation=None)  # a '%' in a URL is a character, not a template
    try:
        config.read([folder / "config", folder / "config.local"])
    except configparser.Error:
        return ""
    name = config.get("core", "remote", fallback="")
    url = config.get(f"'remote \"{name}\"'", "url", fallback="") if name else ""
    if not url or "://" in url or Path(url).is_absolute():
        return url
    return str((folder / url).resolve())


def git_repo_url(root: str | Path | None = None) -> str:
    """Where a fresh clone of this checkout comes from: its `origin` remote, else its own folder."""
    root = repo_root(root)
    try:
        out = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return str(root.resolve())
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else str(root.resolve())


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
    tags = {"univg.stage": stage, **lineage_tags()}
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


# ----------------------------------------------------------------------------- logging that survives
class MetricSink:
    """Metrics to one run from a background thread, so that a slow or vanished tracking server
    never stalls or kills training.

    A batch that fails stays queued and is sent again with backoff (1 s doubling to 30 s), in
    step order, once the server answers. A send that fails, or takes over SLOW_S seconds (MLflow's
    client retries for minutes), logs one warning; the recovery logs another. `close()` waits up
    to `flush_timeout_s` for the queue to drain, then writes what is still unsent to
    `spill_path` (JSONL: key, value, step, timestamp) and says so, so no number is lost.
    """

    def __init__(self, run_id: str, spill_path: str | Path | None = None, flush_timeout_s: float = 60.0):
        self.run_id, self.spill_path, self.flush_timeout_s = run_id, spill_path, flush_timeout_s
        self.unsent: list[Any] = []  # mlflow Metric entities, oldest first
        self.sending_since: float | None = None  # monotonic time the send in progress began
        self.warned = False
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._send_forever, name="univg-metric-sink", daemon=True)
        self._thread.start()

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._queue.put([Metric(key, float(value), stamp, int(step)) for key, value in metrics.items()])
        since = self.sending_since
        if since is not None and time.monotonic() - since > self.SLOW_S:
            self._warn(f"no answer for {time.monotonic() - since:.0f} s")

    SLOW_S = 5.0  # a send that takes longer than this gets a warning (MLflow's client retries for minutes)

    def _warn(self, why: str) -> None:
        if not self.warned:
            self.warned = True
            log.warning(
                "MLflow is not answering (%s); training goes on and metrics are kept to be sent when it is back",
                why)

    def _send_forever(self) -> None:
        from mlflow import MlflowClient

        client, delay = MlflowClient(), 1.0
        while True:
            try:
                batch = self._queue.get(timeout=0.2)
                with self._lock:
                    self.unsent.extend(batch)
            except queue.Empty:
                if self._closing.is_set() and not self.unsent:
                    return
            with self._lock:
                pending = list(self.unsent)
            if not pending:
                continue
            try:
                self.sending_since = time.monotonic()
                for start in range(0, len(pending), 1000):  # MLflow's log_batch limit
                    client.log_batch(self.run_id, metrics=pending[start : start + 1000], synchronous=True)
                with self._lock:
                    del self.unsent[: len(pending)]
                if self.warned:
                    log.warning("MLflow answers again; %d queued metrics sent", len(pending))
                    self.warned = False
                delay = 1.0
            except Exception as error:  # any transport or server error: keep the metrics, try again later
                self._warn(f"{type(error).__name__}: {str(error)[:200]}")
                if self._closing.wait(delay) and not self.unsent:
                    return
                delay = min(30.0, delay * 2)
            finally:
                self.sending_since = None

    def close(self) -> int:
        """Flush (bounded by flush_timeout_s); returns how many metrics could not be sent."""

        self._closing.set()
        deadline = time.monotonic() + self.flush_timeout_s
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.5)
            since = self.sending_since
            if since is not None and time.monotonic() - since > self.SLOW_S:
                self._warn(f"no answer for {time.monotonic() - since:.0f} s while flushing")
        while not self._queue.empty():  # logged after the thread stopped taking batches
            self.unsent.extend(self._queue.get_nowait())
        with self._lock:
            unsent = list(self.unsent)
        if unsent and self.spill_path:
            rows = [json.dumps({"key": m.key, "value": m.value, "step": m.step, "timestamp": m.timestamp})
                    for m in unsent]
            Path(self.spill_path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.spill_path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(rows) + "\n")
            log.warning(
                "%d metrics could not reach MLflow; they are in %s (replay: univg.tracking.replay_metrics)",
                len(unsent), self.spill_path)
        return len(unsent)


def replay_metrics(spill_path: str | Path, run_id: str) -> int:
    """Send the metrics a MetricSink spilled to a file to their run; returns how many."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    rows = [json.loads(line) for line in Path(spill_path).read_text().splitlines() if line.strip()]
    metrics = [Metric(r["key"], r["value"], r["timestamp"], r["step"]) for r in rows]
    for start in range(0, len(metrics), 1000):
        MlflowClient().log_batch(run_id, metrics=metrics[start : start + 1000])
    return len(metrics)


@contextlib.contextmanager
def best_effort(what: str) -> Iterator[None]:
    """For optional logging during training (sample panels, histograms): a failure is a warning."""
    try:
        yield
    except Exception as error:  # the tracking server is down or refuses: training matters more
        log.warning("could not log %s to MLflow (%s: %s); training goes on", what, type(error).__name__,
                    str(error)[:200])
