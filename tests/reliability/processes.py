"""Run `univg` as a real subprocess, kill it at a chosen moment, run it to the end (imported as `processes`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false", "GX_ANALYTICS_ENABLED": "false"}


def univg(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "univg.cli", *args]


def environment(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **OFFLINE, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}


def kill_when(command: list[str], cwd: Path, env: dict, ready: Callable[[], bool], timeout: float = 300) -> float:
    """Start `command`, SIGKILL its process group as soon as `ready()` holds; returns the seconds it ran.
    Fails if the command ends on its own first: the kill must land mid-run to test anything."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        while not ready():
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"finished (rc {process.returncode}) before the kill point\n{err.decode()[-3000:]}")
            if time.monotonic() - started > timeout:
                pytest.fail("kill point never reached")
            time.sleep(0.005)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return time.monotonic() - started


def finish(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def whole_jsonl(path: Path) -> int:
    lines = path.read_text().splitlines()
    for line in lines:
        json.loads(line)
    return len(lines)


def printed_json(stdout: str):
    """The JSON document a command printed last (indented), after whatever it logged before."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # nested objects are indented
    return json.loads("\n".join(lines[start:]))
