"""No-op `dvc repro`: depending on an image folder vs on the files that describe it, in one run.

The pipeline's data stage writes ~11,500 images. Until this change five downstream stages listed
the whole folder as a dependency, so every no-op `dvc repro` stat-ed and looked up every image five
more times; they now depend on the JSONL files and the dataset card (whose images_sha256 changes
whenever an image does). This benchmark builds two throw-away DVC repos with the pipeline's shape
(one data stage writing N files, five stages reading them) that differ only in that, and times a
no-op `dvc repro` in each, alternating.

    python benchmarks/dvc_noop_layout.py [--files 11500] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATE = """
import os, pathlib
root = pathlib.Path("data"); (root / "images").mkdir(parents=True, exist_ok=True)
for i in range({files}):
    (root / "images" / f"{{i}}.png").write_bytes(os.urandom(300))
(root / "train.jsonl").write_text("{{}}\\n"); (root / "card.json").write_text("{{}}\\n")
"""


def dvc(*args: str) -> list[str]:
    beside = Path(sys.executable).parent / "dvc"
    return [str(beside) if beside.exists() else "dvc", *args]


def make_repo(folder: Path, files: int, deps: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "generate.py").write_text(GENERATE.format(files=files))
    stages = {"data": {"cmd": "python generate.py", "deps": ["generate.py"], "outs": ["data"]}}
    for k in range(5):
        stages[f"s{k}"] = {"cmd": f"echo {k} > out{k}.txt", "deps": deps, "outs": [f"out{k}.txt"]}
    (folder / "dvc.yaml").write_text(json.dumps({"stages": stages}, indent=2))  # JSON is YAML
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for command in (["git", "init", "-q"], dvc("init", "-q"), dvc("repro", "-q")):
        subprocess.run(command, cwd=folder, check=True, capture_output=True, env=env)
    return folder


def time_noop(folder: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(dvc("repro"), cwd=folder, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "Running stage" in done.stdout:
        raise SystemExit(f"error: not a no-op in {folder}:\n{done.stdout[-1000:]}{done.stderr[-1000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=11500, help="images the data stage writes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="univg-noop-") as tmp:
        folder_deps = make_repo(Path(tmp) / "folder", args.files, ["data"])
        file_deps = make_repo(Path(tmp) / "files", args.files, ["data/train.jsonl", "data/card.json"])
        timings: dict[str, list[float]] = {"folder": [], "files": []}
        for _ in range(args.repeats):
            timings["folder"].append(time_noop(folder_deps))
            timings["files"].append(time_noop(file_deps))
    result = {
        "files": args.files, "repeats": args.repeats,
        "folder_deps_median_s": round(statistics.median(timings["folder"]), 3),
        "file_deps_median_s": round(statistics.median(timings["files"]), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    result["ratio"] = round(result["file_deps_median_s"] / result["folder_deps_median_s"], 3)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
