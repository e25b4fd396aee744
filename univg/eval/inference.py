"""Batched greedy generation over a benchmark -> prediction rows (the scoring contract's shape).

- Prompts are the training prompts (univg.prompts.user_message), so a model is evaluated on
  exactly what it learned; the answer format picks the instruction.
- Samples are sorted by an estimate of their prompt length (image area from the file headers
  plus question length) before batching, longest first: a batch then wastes little on left
  padding, and an out-of-memory surfaces in the first batch rather than the last.
- Left padding and greedy decoding make a sample's answer independent of its batch (up to float
  noise), so batching changes speed, not results.
- A sample whose image is missing or corrupt becomes {"index": i, "response": "", "error": ...}
  (a miss when scored); a batch that fails as a whole is retried one sample at a time, so one bad
  sample cannot take its batch down. Quarantined rows get an error row too: every row of the
  annotation file has exactly one prediction row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from univg.data.benchmarks import BenchmarkSample, LoadedBenchmark
from univg.data.images import ImageError, ImagePolicy, open_rgb, resolve_images
from univg.models.family import FAMILIES, ModelFamily, PixelLimits
from univg.prompts import user_message

log = logging.getLogger(__name__)
_PATCH_AREA = 28 * 28  # one merged Qwen2-VL visual token covers 28x28 pixels
_MIN_AREA = 56 * 56  # Qwen2-VL's default min_pixels: small images are scaled up to it
GenerateFn = Callable[[Sequence[Sequence[dict]], Sequence[Sequence[Any]]], list[str]]


def prompt_cost(sample: BenchmarkSample, base_dir: Path, policy: ImagePolicy = ImagePolicy()) -> float:
    """Rough prompt length in tokens: visual tokens from the image headers plus question words."""
    from PIL import Image

    tokens = len(sample.record["question"]) / 4
    try:
        paths = resolve_images(sample.record["images"], base_dir, policy)
    except ImageError:  # refused: it fails later, at load time, as an error row
        paths = []
    for path in paths:
        try:
            with Image.open(path) as image:  # reads the header only
                tokens += 2 + max(image.width * image.height, _MIN_AREA) / _PATCH_AREA  # + vision start/end
        except Exception:  # unreadable: it fails later, at load time, as an error row
            continue
    return tokens


def batches_by_length(samples: list[BenchmarkSample], base_dir: Path, batch_size: int,
                      policy: ImagePolicy = ImagePolicy()) -> list[list[BenchmarkSample]]:
    ordered = sorted(samples, key=lambda s: (-prompt_cost(s, base_dir, policy), s.index))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def load_sample(sample: BenchmarkSample, base_dir: Path, answer_format: str, policy: ImagePolicy = ImagePolicy(),
                family: ModelFamily = FAMILIES["qwen2_vl"], limits: PixelLimits | None = None,
                ) -> tuple[list[dict], list[Any]]:
    """(messages, images) of one sample, asked in the model family's box convention; ImageError when
    an image is missing, corrupt or refused."""
    images = [open_rgb(p, policy.max_pixels) for p in resolve_images(sample.record["images"], base_dir, policy)]
    question = family.question_for_model(sample.record["question"], [image.size for image in images], limits)
    return [user_message(len(images), question, answer_format, family.prompt_note)], images


def error_row(index: int, message: str) -> dict[str, Any]:
    return {"index": index, "response": "", "error": message}


def _generate_batch(generate: GenerateFn, batch: list[tuple[int, list[dict], list[Any]]]) -> list[dict[str, Any]]:
    try:
        texts = generate([m for _, m, _ in batch], [i for _, _, i in batch])
        return [{"index": index, "response": text} for (index, _, _), text in zip(batch, texts, strict=True)]
    except Exception as error:  # e.g. one sample the processor rejects: retry alone
        if len(batch) == 1:
            log.warning("generation failed for sample %d: %s", batch[0][0], error)
            return [error_row(batch[0][0], f"generation failed: {type(error).__name__}: {error}"[:500])]
        return [row for item in batch for row in _generate_batch(generate, [item])]


def generate_predictions(
    generate: GenerateFn,
    benchmark: LoadedBenchmark,
    answer_format: str,
    batch_size: int = 16,
    progress: bool = True,
    family: ModelFamily = FAMILIES["qwen2_vl"],
    limits: PixelLimits | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
    """One prediction row per row of the benchmark file, sorted by index.

    `generate(batch_messages, batch_images) -> texts` does the model work (see `model_generate`);
    keeping it a parameter lets the same loop drive a local model, a server or a test double.
    `shard` (rank, world): this process takes every world-th batch of the one-process batch order,
    starting at its rank, so each batch (and so each answer) is exactly the one-process run's; the
    ranks' rows together are one row per record (quarantined rows come from rank 0).
    """
    rank, world = shard
    rows = [error_row(q["index"], "quarantined: " + "; ".join(q["reasons"])) for q in benchmark.quarantined
            if rank == 0]
    attempted = 0
    batches = batches_by_length(benchmark.samples, benchmark.base_dir, batch_size, benchmark.policy)[rank::world]
    bar = tqdm(total=sum(map(len, batches)), desc=f"eval {benchmark.name}" + (f" [{rank}/{world}]" if world > 1 else ""),
               unit="sample", disable=not progress)
    for batch in batches:
        ready = []
        for sample in batch:
            try:
                ready.append((sample.index, *load_sample(sample, benchmark.base_dir, answer_format, benchmark.policy,
                                                         family, limits)))
            except ImageError as error:
                rows.append(error_row(sample.index, str(error)))
        if ready:
            attempted += len(ready)
            rows.extend(_generate_batch(generate, ready))
        bar.update(len(batch))
    bar.close()
    failed = [r for r in rows if str(r.get("error", "")).startswith("generation failed")]
    if attempted and len(failed) == attempted:
        # Not a bad sample but a broken model or processor: stop instead of scoring all zeros.
        raise RuntimeError(f"generation failed for every sample; first: {failed[0]['error']}")
    return sorted(rows, key=lambda r: r["index"])


def model_generate(model, processor, max_new_tokens: int = 128) -> GenerateFn:
    """A GenerateFn doing greedy decoding with left padding on a loaded model."""
    from univg.models.generation import generate_texts

    def generate(batch_messages: Sequence[Sequence[dict]], batch_images: Sequence[Sequence[Any]]) -> list[str]:
        return generate_texts(model, processor, batch_messages, batch_images, max_new_tokens=max_new_tokens,
                              do_sample=False)

    return generate
