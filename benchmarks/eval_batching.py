"""Batched evaluation vs a one-sample-at-a-time loop, on the tiny model, in one run (target >= 5x).

Builds in a temporary folder a mig-synth test split and the tiny Qwen2-VL at params.yaml's sizes
(or uses --model), then generates answers for the same records twice with the evaluation code
(`univg.eval.inference.generate_predictions`): once in batches (left padding, sorted by prompt
length) and once one sample at a time, as the released evaluation scripts do. Both runs use the
same greedy settings and thread count; it prints samples/s for each, the speed-up, and how many
answers are identical (left padding makes batching change speed, not results).

    OMP_NUM_THREADS=1 python benchmarks/eval_batching.py    # 80 records, params.yaml's eval batch/tokens
    python benchmarks/eval_batching.py --per-task 16 --batch-size 32 --max-new-tokens 64
    python benchmarks/eval_batching.py --model models/sft --annotations data/mig-synth/test.jsonl

An untrained tiny model rarely stops early, so every answer runs to --max-new-tokens; a trained
model's answers vary in length and the batched run then idles on finished rows (smaller gain).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=8, help="test records per mig-synth task (10 tasks)")
    parser.add_argument("--batch-size", type=int, default=None, help="prompts per batch (default: eval.batch_size)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="budget per answer (default: eval.max_new_tokens)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each mode, interleaved; the fastest counts")
    parser.add_argument("--model", type=Path, default=None, help="a checkpoint folder (default: build the tiny model)")
    parser.add_argument("--annotations", type=Path, default=None, help="a mig-synth file (default: generate one)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (data and model sizes)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    return parser.parse_args(argv)


def build_inputs(params, per_task: int, scratch: Path) -> tuple[Path, Path]:
    """(test split file, tiny model folder) in `scratch`."""
    from univg.data.synth import generate_dataset
    from univg.models.tiny import build_tiny_model, corpus_from_records

    data_cfg = params.data.model_copy(update={"train_per_task": 1, "val_per_task": 0, "test_per_task": per_task})
    generate_dataset(data_cfg, scratch / "data", progress=False)
    test_file = scratch / "data" / "test.jsonl"
    build_tiny_model(params.model, corpus_from_records([test_file]), scratch / "base")
    return test_file, scratch / "base"


def timed_run(generate, bench, batch_size: int) -> tuple[list[dict], float]:
    from univg.eval.inference import generate_predictions

    started = time.perf_counter()
    rows = generate_predictions(generate, bench, "indexed", batch_size=batch_size, progress=False)
    return rows, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from univg.config import load_params
    from univg.data.benchmarks import load_benchmark
    from univg.eval.inference import model_generate
    from univg.models.loading import load_model_and_processor

    params = load_params(args.params)
    batch_size = args.batch_size or params.eval.batch_size
    max_new_tokens = args.max_new_tokens or params.eval.max_new_tokens
    with tempfile.TemporaryDirectory(prefix="eval-batching-") as scratch:
        # --- inputs
        annotations, model_dir = args.annotations, args.model
        if annotations is None or model_dir is None:
            built_annotations, built_model = build_inputs(params, args.per_task, Path(scratch))
            annotations, model_dir = annotations or built_annotations, model_dir or built_model
        bench = load_benchmark("mig-synth", annotations)
        model, processor = load_model_and_processor(str(model_dir), padding_side="left")
        generate = model_generate(model, processor, max_new_tokens)
        # --- warm-up (first-call costs belong to neither mode), then interleaved timed runs: the
        # machine is shared, so the fastest of each mode is the figure least disturbed by others
        timed_run(generate, bench.head(2), 2)
        batched_times, single_times = [], []
        for _ in range(args.repeats):
            batched, seconds = timed_run(generate, bench, batch_size)
            batched_times.append(seconds)
            single, seconds = timed_run(generate, bench, 1)
            single_times.append(seconds)
    n = len(bench.samples)
    batched_s, single_s = min(batched_times), min(single_times)
    result = {
        "records": n,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "batched_seconds": round(batched_s, 3),
        "single_seconds": round(single_s, 3),
        "batched_samples_per_second": round(n / batched_s, 3),
        "single_samples_per_second": round(n / single_s, 3),
        "speedup": round(single_s / batched_s, 2),
        "identical_answers": sum(a["response"] == b["response"] for a, b in zip(batched, single, strict=True)),
    }
    print(json.dumps(result, indent=2))
    print(f"batched is {result['speedup']}x faster than one at a time (target >= 5x)", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
