from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.steps import tool_env
from tests.pipeline.tiny_params import write_tiny_params

REPO = Path(__file__).resolve().parents[2]


def project_files() -> list[str]:
    """Tracked plus untracked-but-not-ignored files: what a fresh clone would have."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return [line for line in out.stdout.splitlines() if line and (REPO / line).is_file()]


def copy_project(dest: Path) -> Path:
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    return dest


def pipeline_env() -> dict[str, str]:
    env = tool_env()
    env.pop("MLFLOW_TRACKING_URI", None)  # each copy uses its own sqlite store
    return env


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A fresh copy of the project (its own git repo) with tiny params."""
    repo = copy_project(tmp_path / "repo")
    write_tiny_params(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny copy")
    return repo
