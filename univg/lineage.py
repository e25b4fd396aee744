"""Lineage: which data, params and code made a registered model, and getting them back.

Every pipeline flow run is a DVC experiment (flows/pipeline.py saves it with `dvc exp save` and
pushes its outputs to the DVC remote). Each stage's MLflow run and each registered model version
carry univg.tracking.lineage_tags():
  univg.experiment  the DVC experiment (named after the Prefect flow run)
  git_commit        the commit the experiment is based on
  dvc_lock_md5      md5 of dvc.lock when the run was made
  data_hash         md5 of the data stage's output (as before)
  dvc.remote        the DVC remote's URL (absolute), where the outputs were pushed
  git.repo          where to clone the code and the experiment from (the git remote, else this checkout)

    univg lineage models:/univg@champion           prints them
    univg restore models:/univg@champion --into D  clones, pulls the experiment, applies it, pulls its data
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from univg.errors import UserError
from univg.tracking import LINEAGE_KEYS


class LineageError(UserError, RuntimeError):
    """A model or experiment whose lineage cannot be read or restored (the message says why)."""


# ----------------------------------------------------------------------------- reading the checkout
def _run(args: list[str], cwd: Path, check: bool = False) -> str:
    tool = Path(sys.executable).parent / args[0]  # dvc from this environment when it is there
    command = [str(tool) if tool.exists() else args[0], *args[1:]]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        if check:
            raise LineageError(f"`{' '.join(args)}` could not run in {cwd}: {error}") from None
        return ""
    if check and done.returncode != 0:
        raise LineageError(f"`{' '.join(args)}` failed in {cwd}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout.strip() if done.returncode == 0 else ""


_EXPERIMENT = re.compile(r"univg-[A-Za-z0-9_-]+")


def experiment_name(flow_run_name: str, flow_run_id: str = "") -> str:
    """A DVC experiment name from a Prefect flow run (git ref rules: letters, digits, - and _).
    Prefect's two-word run names repeat over time; the run id's first characters keep it unique."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", flow_run_name).strip("-") or "local"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", flow_run_id)[:8]
    return f"univg-{name}" + (f"-{suffix}" if suffix else "")


def _checked(lineage: dict[str, Any]) -> dict[str, Any]:
    """Refuse tag values that would reach git or DVC as options or odd refs (tags are user-writable)."""
    if not _EXPERIMENT.fullmatch(lineage["univg.experiment"]):
        raise LineageError(f"experiment name {lineage['univg.experiment']!r} is not one this project writes")
    for key in ("git.repo", "dvc.remote"):
        if lineage[key].startswith("-") or any(c in lineage[key] for c in "\n\r\0"):
            raise LineageError(f"tag {key} = {lineage[key]!r} is not a repository or remote address")
    if not lineage["git.repo"]:
        raise LineageError("the model version names no git repository (tag git.repo) to clone from")
    return lineage


# ----------------------------------------------------------------------------- a model's lineage
def model_lineage(model_uri: str) -> dict[str, Any]:
    """The lineage tags of a registered model version (`models:/name@alias` or `models:/name/3`)."""
    import mlflow

    match = re.fullmatch(r"models:/([^/@]+)(?:@([\w-]+)|/(\d+))", model_uri)
    if not match:
        raise LineageError(f"{model_uri!r}: name a registered model version as models:/NAME@ALIAS or models:/NAME/N")
    name, alias, number = match.groups()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except mlflow.exceptions.MlflowException as error:
        raise LineageError(f"{model_uri}: {error.message}") from None
    tags = version.tags
    found = {key: tags.get(key, "") for key in LINEAGE_KEYS}
    if not found["univg.experiment"]:
        raise LineageError(f"{model_uri} (version {version.version}) carries no DVC experiment: it was not made "
                           "by a pipeline flow run (flows/pipeline.py), so there is nothing to restore")
    return {"model": name, "version": version.version, "run_id": version.run_id, **found}


def registered_experiments(name: str) -> dict[str, list[str]]:
    """{DVC experiment: [versions of registered model `name` made by it]}: what `dvc gc` must keep."""
    import mlflow

    found: dict[str, list[str]] = {}
    for version in mlflow.MlflowClient().search_model_versions(f"name='{name}'"):
        experiment = version.tags.get("univg.experiment")
        if experiment:
            found.setdefault(experiment, []).append(str(version.version))
    return found


def restore(model_uri: str, into: str | Path) -> dict[str, Any]:
    """Clone the code, pull and apply the model's DVC experiment, and pull its outputs into `into`."""
    lineage = _checked(model_lineage(model_uri))
    into = Path(into)
    if into.exists() and any(into.iterdir()):
        raise LineageError(f"{into}: not empty; restore into a new folder")
    experiment, remote = lineage["univg.experiment"], lineage["dvc.remote"]
    _run(["git", "clone", "-q", "--", lineage["git.repo"], str(into)], Path.cwd(), check=True)
    if remote:  # the checkout's remote may be a path relative to a folder this clone does not have
        _run(["dvc", "remote", "add", "--local", "--force", "--default", "--", "lineage", remote], into, check=True)
    _run(["dvc", "exp", "pull", "origin", experiment], into, check=True)
    _run(["dvc", "exp", "apply", experiment], into, check=True)
    _run(["dvc", "pull"], into, check=True)
    return {**lineage, "restored_into": str(into.resolve())}

