"""What each generation setting gives the evaluation of a trained model, on CPU, in one run.

The baseline is the evaluation as it runs (univg.eval.inference): batched greedy decoding with a
KV cache, left padding, batches sorted by prompt length, the model's own end-of-turn token
stopping each answer, SDPA attention. Each variant changes one thing and is timed on the same
records, interleaved with the baseline (the fastest of --repeats counts for each):

  no_stop_token     every answer runs to max_new_tokens (what a generation loop without the model's
                    end-of-turn token costs)
  file_order        batches in file order instead of sorted by prompt length
  eager_attention   the model loaded with attn_implementation="eager" instead of "sdpa"
  batch_<n>         other batch sizes

Answers of the variants are compared with the baseline's (left padding and greedy decoding keep
them identical up to float noise). torch.compile is not a variant: on CPU every new batch shape
recompiles (see docs/performance.md).

    python benchmarks/eval_speed.py                        # models/grpo/final on 10 records per task
    python benchmarks/eval_speed.py --model models/sft/final --per-task 4 --repeats 1

It needs a trained checkpoint (an untrained model never stops early, so stop tokens and
scheduling show nothing); the default is the pipeline's GRPO model, built by `make run`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "grpo" / "final", help="a trained checkpoint")
    parser.add_argument("--annotations", type=Path, default=REPO / "data" / "mig-synth" / "test.jsonl",
                        help="mig-synth test records")
    parser.add_argument("--per-task", type=int, default=10, help="records per task (10 tasks)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each variant; the fastest counts")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[16, 64], help="batch sizes to try besides eval's")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml", help="params file (eval settings)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    return parser.parse_args(argv)


def balanced(samples: list, per_task: int) -> list:
    """The first `per_task` samples of each task, in file order."""
    taken: dict[str, int] = {}
    chosen = []
    for sample in samples:
        task = sample.record.get("task", "")
        if taken.get(task, 0) < per_task:
            taken[task] = taken.get(task, 0) + 1
            chosen.append(sample)
    return chosen


def run_variant(model, processor, bench, batches, answer_format: str, max_new_tokens: int,
                **generate_kwargs) -> tuple[dict[int, str], float, int]:
    """(answers by index, seconds, new tokens generated) for one batch schedule."""
    from univg.eval.inference import load_sample
    from univg.models.generation import generate

    answers, tokens = {}, 0
    started = time.perf_counter()
    for batch in batches:
        loaded = [load_sample(sample, bench.base_dir, answer_format, bench.policy) for sample in batch]
        replies = generate(model, processor, [m for m, _ in loaded], [i for _, i in loaded],
                           max_new_tokens=max_new_tokens, **generate_kwargs)
        for sample, reply in zip(batch, replies, strict=True):
            answers[sample.index] = reply.text
            tokens += reply.completion_tokens
    return answers, time.perf_counter() - started, tokens


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from univg.config import load_params
    from univg.data.benchmarks import load_benchmark
    from univg.eval.inference import batches_by_length
    from univg.models.loading import load_model_and_processor

    if not (args.model / "config.json").is_file():
        sys.exit(f"error: no trained checkpoint at {args.model}; run `make run` first or pass --model")
    params = load_params(args.params)
    batch_size, max_new_tokens, answer_format = params.eval.batch_size, params.eval.max_new_tokens, "indexed"
    bench = load_benchmark("mig-synth", args.annotations)
    samples = balanced(bench.samples, args.per_task)
    sdpa, processor = load_model_and_processor(str(args.model), padding_side="left")
    eager, _ = load_model_and_processor(str(args.model), padding_side="left", attn_implementation="eager")

    def sorted_batches(size: int) -> list:
        return batches_by_length(samples, bench.base_dir, size, bench.policy)

    file_order = [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
    variants = {
        "baseline": (sdpa, sorted_batches(batch_size), {}),
        "no_stop_token": (sdpa, sorted_batches(batch_size), {"min_new_tokens": max_new_tokens}),
        "file_order": (sdpa, file_order, {}),
        "eager_attention": (eager, sorted_batches(batch_size), {}),
        **{f"batch_{n}": (sdpa, sorted_batches(n), {}) for n in args.batch_sizes if n != batch_size},
    }
    run_variant(sdpa, processor, bench, [samples[:2]], answer_format, 8)  # warm-up: one-off costs
    timings: dict[str, list[float]] = {name: [] for name in variants}
    answers, tokens = {}, {}
    for _ in range(args.repeats):
        for name, (model, batches, kwargs) in variants.items():
            answers[name], seconds, tokens[name] = run_variant(model, processor, bench, batches, answer_format,
                                                              max_new_tokens, **kwargs)
            timings[name].append(seconds)
    base = min(timings["baseline"])
    rows = {name: {"seconds": round(min(times), 3), "samples_per_second": round(len(samples) / min(times), 3),
                   "new_tokens": tokens[name], "speed_vs_baseline": round(base / min(times), 3),
                   "identical_answers": sum(answers[name][i] == answers["baseline"][i] for i in answers["baseline"])}
            for name, times in timings.items()}
    result = {"model": str(args.model), "records": len(samples), "batch_size": batch_size,
              "max_new_tokens": max_new_tokens, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
              "variants": rows}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
