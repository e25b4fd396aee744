"""Peak memory of building the SFT and GRPO training datasets, at 1k and 20k records.

    python benchmarks/dataset_memory.py [--sizes 1000 20000] [--images 200]

Each measurement runs in a fresh process and reports its peak RSS (ru_maxrss) over the same
process that only imports the libraries. Two ways of building, side by side:
  lazy   (univg.train.examples): records -> examples holding image paths and header sizes, in a
         datasets.Dataset whose rows open their images only when a batch reads them;
  eager  (the baseline: how univg built datasets before): every image decoded into the examples
         when the dataset is built, then the whole list handed to datasets.
The target is flat: the lazy figure at 20k records close to its figure at 1k, where the eager one
grows with the record count. Records reuse `--images` distinct image files (three per record, 448x448
PNGs), so disk use stays small while every record still names its own images.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_records(folder: Path, count: int, distinct_images: int) -> Path:
    from PIL import Image, ImageDraw

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for k in range(distinct_images):
        path = folder / "images" / f"i{k}.png"
        if not path.exists():
            image = Image.new("RGB", (448, 448), (230, 230, 230))
            ImageDraw.Draw(image).rectangle([40 + k % 200, 60, 300, 320], fill=(200, 30 + k % 200, 40))
            image.save(path)
    path = folder / f"train_{count}.jsonl"
    with open(path, "w") as handle:
        for i in range(count):
            images = [f"images/i{(i * 3 + j) % distinct_images}.png" for j in range(3)]
            handle.write(json.dumps({"id": f"r{i}", "task": "common_object", "images": images,
                                     "question": "Which image shows the red square? Locate it.", "target_image": 2,
                                     "box": [100, 150, 600, 700], "source": "bench",
                                     "cot": "Image 1 has no red square; image 2 has one in its centre."}) + "\n")
    return path


def measure_one(mode: str, records_file: str) -> dict:
    """Runs in the child: build both datasets the given way, read a few rows, report peak RSS."""
    import datasets  # noqa: F401  (imported before the baseline reading, like the libraries in training)
    import torch  # noqa: F401

    from univg.train.examples import build_examples, lazy_dataset, open_example, read_training_records

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    records = read_training_records(records_file)
    built = {}
    for stage, with_completion in (("sft", True), ("grpo", False)):
        examples = build_examples(records, with_completion=with_completion)
        if mode == "lazy":
            dataset = lazy_dataset(examples)
        else:
            from datasets import Dataset

            dataset = Dataset.from_list([open_example(e) for e in examples])
        rows = [dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // 8))]  # what batches do
        assert all(len(r["images"]) == 3 and hasattr(r["images"][0], "size") for r in rows)
        built[stage] = len(dataset)
        del dataset, examples
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "records": built["sft"], "peak_mib": peak_kib / 1024, "baseline_mib": baseline_kib / 1024,
            "growth_mib": (peak_kib - baseline_kib) / 1024, "seconds": time.perf_counter() - started}


def run_child(mode: str, records_file: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(records_file)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--images", type=int, default=200, help="Distinct image files the records reuse.")
    parser.add_argument("--eager-max", type=int, default=1000,
                        help="Largest record count the eager baseline is run at (it needs ~2.4 GiB per 1k records).")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(*args.child)))
        return

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            records_file = write_records(Path(scratch), size, args.images)
            for mode in ("lazy", "eager") if size <= args.eager_max else ("lazy",):
                result = run_child(mode, records_file)
                results.append(result)
                print(f"{mode:5s} {size:6d} records: peak RSS {result['peak_mib']:7.0f} MiB "
                      f"(+{result['growth_mib']:6.0f} MiB over the imports), {result['seconds']:5.1f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    small, large = min(args.sizes), max(args.sizes)
    lazy = {r["records"]: max(r["growth_mib"], 1.0) for r in results if r["mode"] == "lazy"}
    eager = {r["records"]: r["growth_mib"] for r in results if r["mode"] == "eager"}
    print(f"\nlazy growth, {large} vs {small} records: x{lazy[large] / lazy[small]:.2f} (records x{large / small:.0f}; "
          f"flat is x1)")
    for size, mib in sorted(eager.items()):
        print(f"eager / lazy growth at {size} records: x{mib / lazy[size]:.1f}; eager at {large} records, "
              f"extrapolated: ~{mib * large / size / 1024:.0f} GiB")

if __name__ == "__main__":
    main()
