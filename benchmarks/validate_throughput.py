"""Validation throughput (rows/s) of `univg cot validate` on a large synthetic CoT file.

Synthesises N rows (default 100k) that reference a handful of real tiny PNGs, with ~5% faults of
several kinds (wrong conclusion, bad box, missing image, duplicates, malformed lines), then times
validate_file end to end: reading, derived columns, the GX checkpoint (with Data Docs) and writing
accepted/rejected/report. Target: under 60 s for 100k rows on the 2-core dev machine.

    OMP_NUM_THREADS=1 python benchmarks/validate_throughput.py            # 100k rows
    OMP_NUM_THREADS=1 python benchmarks/validate_throughput.py --rows 20000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from univg.config import ValidateConfig


def synthesise(folder: Path, rows: int, seed: int = 0) -> Path:
    """A CoT JSONL of `rows` lines beside six tiny PNGs; about 5% of the lines are faulty."""
    from PIL import Image

    (folder / "img").mkdir(parents=True)
    names = []
    for k, colour in enumerate(("red", "green", "blue", "cyan", "orange", "purple")):
        Image.new("RGB", (56, 56), colour).save(folder / "img" / f"{k}.png")
        names.append(f"img/{k}.png")
    rng = random.Random(seed)
    path = folder / "cot.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(rows):
            k = rng.randint(2, 4)
            target = rng.randint(1, k)
            x, y = rng.randint(0, 600), rng.randint(0, 600)
            record = {
                "id": f"row-{n:07d}", "task": "diff", "images": rng.sample(names, k),
                "question": f"Sample {n}: find the changed object in image {target}.",
                "target_image": target, "box": [x, y, x + rng.randint(50, 300), y + rng.randint(50, 300)],
                "source": "bench",
                "cot": f"Image 1 shows a red circle and a blue square. The change is at the top left, so the answer is in image {target}.",
                "meta": {"cot": {"teacher": "rule", "candidates": 3, "scores": [1.0, 1.0, 1.0]}},
            }
            fault = rng.random()
            if fault < 0.01:
                record["cot"] = record["cot"].replace(f"image {target}.", f"image {target % k + 1}.")
            elif fault < 0.02:
                record["box"] = [500, 500, 100, 1200]
            elif fault < 0.03:
                record["images"] = [*record["images"][:-1], "img/missing.png"]
            elif fault < 0.04:
                record["question"] = "Sample 0: duplicate."
            elif fault < 0.05:
                handle.write('{"id": "broken' + "\n")
                continue
            handle.write(json.dumps(record) + "\n")
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    from univg.cot.validate import validate_file

    with tempfile.TemporaryDirectory() as tmp:
        source = synthesise(Path(tmp) / "data", args.rows)
        started = time.perf_counter()
        report = validate_file(source, Path(tmp) / "out", ValidateConfig(min_accept_fraction=0.0))
        seconds = time.perf_counter() - started
    result = {
        "rows": args.rows, "seconds": round(seconds, 2), "rows_per_second": round(args.rows / seconds),
        "accepted": report["accepted"], "rejected": report["rejected"],
        "top_reasons": {k: v for k, v in report["by_expectation"].items() if v},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
