"""Model families: how each Qwen VL generation writes a box, in one place.

    family       a box in the model's own text                        resize factor
    qwen2_vl     0..1000 of the image                                  28 (patch 14 x merge 2)
    qwen2_5_vl   absolute pixels of the image as its processor          28
                 resized it (smart_resize: sides multiples of 28, area
                 within min_pixels..max_pixels)
    qwen3_vl     0..1000 of the image                                  32 (patch 16 x merge 2)

Records, ground truth, metrics and API responses stay in 0..1000 of the target image (the
contract). The family converts at the model's edge only: `to_model` when a box goes into the
model's text (SFT targets, and the ground truth the GRPO rewards compare with), `to_norm1000` when
an answer comes out (scoring, serving). IoU does not change when both axes are scaled, so a reward
computed in the model's space is the reward in 0..1000, up to integer rounding.

The family comes from the checkpoint's `config.model_type` (`family_of`), or from params
(`model.family`) when a user knows better. The pixel limits that decide Qwen2.5-VL's resized size
are read from the processor actually used (`limits_of`), after any max_pixels cap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from univg.data.naming import last_named_image
from univg.errors import UserError
from univg.schema import COORD_MAX

FamilyName = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
FAMILY_NAMES: tuple[str, ...] = get_args(FamilyName)


class UnknownFamily(UserError, ValueError):
    """A checkpoint whose architecture has no box convention here (or a misspelt family name)."""


@dataclass(frozen=True)
class PixelLimits:
    """The processor's resize rule: area within [min_pixels, max_pixels], sides multiples of factor."""

    min_pixels: int
    max_pixels: int
    factor: int

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image of this size after the processor's smart_resize."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        new_height, new_width = smart_resize(height, width, factor=self.factor,
                                             min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return int(new_width), int(new_height)


@dataclass(frozen=True)
class ModelFamily:
    name: str
    coords: str  # the scorer's name for this convention (univg.eval.scoring): norm1000 | qwen25
    limits: PixelLimits  # the released checkpoints' processor defaults (used when no processor is at hand)
    prompt_note: str  # said after the answer instruction, so the model is asked in its own convention

    @property
    def pixel_boxes(self) -> bool:
        return self.coords == "qwen25"

    def extent(self, image_size: Sequence[int] | None, limits: PixelLimits | None) -> tuple[int, int]:
        """How far the model's x and y run across the image: 1000, or the resized image's pixels."""
        if not self.pixel_boxes:
            return COORD_MAX, COORD_MAX
        if image_size is None:
            raise ValueError(f"{self.name} writes boxes in pixels: the image size is needed to convert them")
        return (limits or self.limits).resized(int(image_size[0]), int(image_size[1]))

    def to_model(self, box: Sequence[float], image_size: Sequence[int] | None,
                 limits: PixelLimits | None = None) -> list[int]:
        """A 0..1000 box of an image of `image_size` (w, h) -> integers as this family writes them."""
        width, height = self.extent(image_size, limits)
        x1, y1, x2, y2 = box
        return [round(x1 * width / COORD_MAX), round(y1 * height / COORD_MAX),
                round(x2 * width / COORD_MAX), round(y2 * height / COORD_MAX)]

    def to_norm1000(self, box: Sequence[float], image_size: Sequence[int] | None,
                    limits: PixelLimits | None = None) -> list[float]:
        """A box as this family writes it -> 0..1000 floats of the image (not rounded, not clipped)."""
        width, height = self.extent(image_size, limits)
        x1, y1, x2, y2 = box
        return [x1 * COORD_MAX / width, y1 * COORD_MAX / height, x2 * COORD_MAX / width, y2 * COORD_MAX / height]


    def question_for_model(self, question: str, image_sizes: Sequence[Sequence[int]],
                           limits: PixelLimits | None = None) -> str:
        """The question with the boxes it quotes (`<|box_start|>(x1,y1),(x2,y2)<|box_end|>`, 0..1000,
        as MIG-Bench's multi_view and object_tracking questions mark the reference) in this family's
        convention. A quoted box belongs to the image named last before it ("in the first image"),
        else to the first image."""
        if not self.pixel_boxes or "<|box_start|>" not in question:
            return question

        def convert(match: re.Match[str]) -> str:
            named = last_named_image(question[: match.start()])
            size = image_sizes[named - 1] if named and 1 <= named <= len(image_sizes) else image_sizes[0]
            x1, y1, x2, y2 = self.to_model([int(v) for v in match.groups()], size, limits)
            return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"

        return _QUOTED_BOX.sub(convert, question)


_QUOTED_BOX = re.compile(r"<\|box_start\|>\((\d+),\s*(\d+)\),\s*\((\d+),\s*(\d+)\)<\|box_end\|>")

FAMILIES: dict[str, ModelFamily] = {
    "qwen2_vl": ModelFamily("qwen2_vl", "norm1000", PixelLimits(56 * 56, 28 * 28 * 16384, 28), ""),
    "qwen2_5_vl": ModelFamily("qwen2_5_vl", "qwen25", PixelLimits(56 * 56, 28 * 28 * 16384, 28),
                              " Coordinates are absolute pixels of the image."),
    "qwen3_vl": ModelFamily("qwen3_vl", "norm1000", PixelLimits(65536, 16777216, 32), ""),
}
# transformers' config.model_type -> family (the MoE variants write boxes as their dense siblings)
MODEL_TYPES: dict[str, str] = {"qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl",
                               "qwen3_vl_moe": "qwen3_vl"}


def family_named(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise UnknownFamily(f"unknown model family {name!r}; choose from {list(FAMILIES)} (or 'auto')")
    return FAMILIES[name]


def family_of_config(config: Any, override: str = "auto") -> ModelFamily:
    """The family of a transformers config (or of anything with `.config`), unless `override` names one."""
    if override != "auto":
        return family_named(override)
    config = getattr(config, "config", config)
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_TYPES:
        raise UnknownFamily(
            f"model_type {model_type!r} has no box convention in univg (known: {sorted(MODEL_TYPES)}); "
            "set model.family to the family whose boxes it writes"
        )
    return FAMILIES[MODEL_TYPES[model_type]]


def family_of(model: Any, override: str = "auto") -> ModelFamily:
    """The family of a loaded model (a PEFT wrapper passes its base's config through)."""
    return family_of_config(model, override)


def limits_of(processor: Any, family: ModelFamily | None = None) -> PixelLimits:
    """The resize rule of the processor's image processor; the family's defaults where it says nothing."""
    defaults = (family or FAMILIES["qwen2_vl"]).limits
    images = getattr(processor, "image_processor", processor)
    size = getattr(images, "size", None) or {}
    get = size.get if hasattr(size, "get") else (lambda key, default=None: getattr(size, key, default))
    min_pixels = get("shortest_edge") or getattr(images, "min_pixels", None) or defaults.min_pixels
    max_pixels = get("longest_edge") or getattr(images, "max_pixels", None) or defaults.max_pixels
    patch, merge = getattr(images, "patch_size", None), getattr(images, "merge_size", None)
    factor = int(patch) * int(merge) if patch and merge else defaults.factor
    return replace(defaults, min_pixels=int(min_pixels), max_pixels=int(max_pixels), factor=factor)
