"""benchmarks/recall_probe.py: the text-only in-context recall probe runs on a real tiny model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recall_probe.py"


@pytest.mark.parametrize("task", ["ar", "lookup"])
def test_recall_probe_trains_and_reports_accuracy(tiny_dir, task):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tiny_dir), "--task", task, "--steps", "2", "--batch-size", "2",
                             "--every", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 0", "step 1", "step 2"]
    assert all(0.0 <= float(line.split("accuracy ")[1].split()[0]) <= 1.0 for line in lines)
