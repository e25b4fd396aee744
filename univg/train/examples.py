"""Grounding records -> training examples for TRL (shared by SFT and GRPO), images opened per batch.

An example is conversational, in TRL's prompt/completion form:
  prompt       [user turn: one {"type": "image"} per image, then question + instruction (+ the
               model family's note on its box convention)]
  completion   [assistant turn: <think>cot</think><answer>...</answer>]   (SFT only)
  images       the image paths, resolved inside the data root and size-checked from their headers
               when the examples are built; `lazy_dataset` opens them (RGB, univg.data.images)
               only when a batch asks for the row, so memory stays flat however many records
  image_sizes  [[w, h], ...] from the headers (token counts need them before any pixel is read)
  box          the ground truth as the model family writes it (univg.models.family): 0..1000 for
               Qwen2-VL and Qwen3-VL, pixels of the resized target image for Qwen2.5-VL. The SFT
               target is written with it and the GRPO rewards compare the model's answer with it.
  box_extent   [W, H]: how far the model's x and y run across the target image (1000 or pixels),
               so pictures can draw `box` on the image
  target_image, task, id   passed through (the GRPO rewards receive every column as kwargs)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from univg.answers import format_completion
from univg.data.images import ImageError, ImagePolicy, data_root_for, header_size, open_rgb, resolve_images
from univg.models.family import FAMILIES, ModelFamily, PixelLimits
from univg.prompts import assistant_message, user_message
from univg.schema import RecordError, read_records


@dataclass(frozen=True)
class TrainingRecords:
    """A record file read strictly (a bad line has already stopped with file:line and reasons)."""

    path: Path
    records: list[dict[str, Any]]
    base_dir: Path
    policy: ImagePolicy


def read_training_records(path: str | Path, image_root: str | Path | None = None, limit: int | None = None,
                          policy: ImagePolicy | None = None) -> TrainingRecords:
    """Images must satisfy `policy` (default: inside the file's data root, univg.data.images)."""
    path = Path(path)
    records = read_records(path)
    return TrainingRecords(path, records[:limit] if limit is not None else records,
                           Path(image_root) if image_root else path.parent,
                           policy or ImagePolicy(root=data_root_for(path, image_root)))


def record_to_example(record: dict[str, Any], base_dir: str | Path, answer_format: str = "indexed",
                      with_completion: bool = True, policy: ImagePolicy = ImagePolicy(),
                      family: ModelFamily = FAMILIES["qwen2_vl"], limits: PixelLimits | None = None) -> dict[str, Any]:
    paths = resolve_images(record["images"], base_dir, policy)
    sizes = [list(header_size(p, policy.max_pixels)) for p in paths]
    target = int(record["target_image"])
    box = family.to_model(record["box"], sizes[target - 1], limits)
    example = {
        "prompt": [user_message(len(paths), family.question_for_model(record["question"], sizes, limits), answer_format,
                                family.prompt_note)],
        "images": [str(p) for p in paths],
        "image_sizes": sizes,
        "box": box,
        "box_extent": list(family.extent(sizes[target - 1], limits)),
        "target_image": target,
        "task": record["task"],
        "id": record["id"],
    }
    if with_completion:
        if not record.get("cot"):
            raise RecordError(f"record {record['id']!r} has no 'cot': SFT needs validated CoT data")
        example["completion"] = [assistant_message(format_completion(record["cot"], box, target, answer_format))]
    return example


def build_examples(data: TrainingRecords, answer_format: str = "indexed", with_completion: bool = True,
                   family: ModelFamily = FAMILIES["qwen2_vl"], limits: PixelLimits | None = None) -> list[dict[str, Any]]:
    examples = []
    for number, record in enumerate(data.records, start=1):
        try:
            examples.append(record_to_example(record, data.base_dir, answer_format, with_completion, data.policy,
                                              family, limits))
        except ImageError as error:
            raise ImageError(f"{data.path}:{number} (id {record['id']!r}): {error}") from None
    return examples


def load_examples(path: str | Path, image_root: str | Path | None = None, answer_format: str = "indexed",
                  with_completion: bool = True, limit: int | None = None, policy: ImagePolicy | None = None,
                  family: ModelFamily = FAMILIES["qwen2_vl"], limits: PixelLimits | None = None) -> list[dict[str, Any]]:
    """Read a record file strictly and build its examples (image paths, not pixels)."""
    return build_examples(read_training_records(path, image_root, limit, policy), answer_format, with_completion,
                          family, limits)


# ----------------------------------------------------------------------------- pixels, per batch
def open_example(example: dict[str, Any]) -> dict[str, Any]:
    """A copy of the example with its images opened (RGB); paths already hold PIL images unchanged."""
    return {**example, "images": [open_rgb(p) if isinstance(p, str | Path) else p for p in example["images"]]}


def _open_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if "images" not in batch:  # a column read (dataset["box"]) needs no pixels
        return batch
    return {**batch, "images": [[open_rgb(p) for p in paths] for paths in batch["images"]]}


def lazy_dataset(examples: list[dict[str, Any]]):
    """A datasets.Dataset of the examples whose rows open their images when read (row or batch)."""
    from datasets import Dataset

    return Dataset.from_list(examples).with_transform(_open_batch)
