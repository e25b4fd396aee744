"""Scene building blocks for mig-synth: objects on a grid layout, attribute sampling, views.

Layout keeps the data learnable by a tiny model: each image is a g x g grid (g=2 while an image
holds at most 4 objects, else 3) aligned with Qwen2-VL's 28-px merged tokens; an object sits in
its own cell with a small jitter, at one of three discrete sizes, so objects never overlap and
stay fully inside the image. Views (shifted, mirrored) and motion move objects off the grid.
All randomness comes from the Context's `rng`, so a sample is a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from univg.data.draw import PALETTE, SHAPES, Obj, norm_box

COLOURS: tuple[str, ...] = tuple(PALETTE)
SIZES: tuple[str, ...] = ("small", "medium", "large")
SIZE_FRACTION = {"small": 0.46, "medium": 0.61, "large": 0.75}  # of a cell's side
STRIPED_SHARE = 0.25
MIN_GAP_FRACTION = 0.05  # of the image side, between neighbouring objects
MAX_JITTER_FRACTION = 0.036  # of the image side: small, so (cell, size) nearly fixes the box
SHIFT_FRACTION = 0.1  # largest global shift of a "shifted" view


@dataclass
class Frame:
    objects: list[Obj]
    marks: list[tuple[str, int]] = field(default_factory=list)
    view: str = "original"


@dataclass
class Sample:
    frames: list[Frame]
    question: str
    target: tuple[int, int]  # (1-based image, 0-based object)
    reference: tuple[int, int] | None
    facts: dict[str, Any]


def pick(rng: np.random.Generator, options: Sequence) -> Any:
    return options[int(rng.integers(len(options)))]


def scene_object(obj: Obj, size: int) -> dict[str, Any]:
    return {"shape": obj.shape, "colour": obj.colour, "texture": obj.texture, "size": obj.size,
            "box": norm_box(obj, size, size)}


class Context:
    """Per-sample knobs and helpers: image size, limits, and the sample's random stream."""

    def __init__(self, rng: np.random.Generator, size: int, max_images: int, distractors: int):
        self.rng, self.size, self.max_images, self.distractors = rng, size, max_images, distractors

    # ---------------------------------------------------------------- counts and layout
    def n_images(self, low: int, high: int) -> int:
        high = min(high, self.max_images)
        return int(self.rng.integers(min(low, high), high + 1))

    def grid(self, objects_per_image: int) -> int:
        return 2 if objects_per_image <= 4 else 3

    def cells(self, grid: int, count: int) -> list[int]:
        if count > grid * grid:
            raise ValueError(f"{count} objects do not fit a {grid}x{grid} layout")
        return [int(c) for c in self.rng.permutation(grid * grid)[:count]]

    def side(self, grid: int, size: str) -> int:
        return round(SIZE_FRACTION[size] * self.size / grid)

    def place(self, grid: int, cell: int, shape: str, colour: str, size: str | None = None,
              texture: str | None = None) -> Obj:
        """An object centred in `cell` with a jitter that keeps the minimum gap to neighbours."""
        rng, cell_px = self.rng, self.size / grid
        size = size or pick(rng, SIZES)
        texture = texture or ("striped" if rng.random() < STRIPED_SHARE else "solid")
        side = self.side(grid, size)
        room = int((cell_px - side - MIN_GAP_FRACTION * self.size) // 2)
        jitter = max(0, min(round(MAX_JITTER_FRACTION * self.size), room))
        row, col = divmod(cell, grid)
        x = round((col + 0.5) * cell_px - side / 2) + int(rng.integers(-jitter, jitter + 1))
        y = round((row + 0.5) * cell_px - side / 2) + int(rng.integers(-jitter, jitter + 1))
        return Obj(shape, colour, texture, size, x, y, side)

    def position_name(self, grid: int, cell: int) -> str:
        row, col = divmod(cell, grid)
        rows = ("top", "bottom") if grid == 2 else ("top", "middle", "bottom")
        cols = ("left", "right") if grid == 2 else ("left", "centre", "right")
        name = f"{rows[row]}-{cols[col]}"
        return "centre" if name == "middle-centre" else name

    # ---------------------------------------------------------------- attributes
    def pair(self, avoid: set[tuple[str, str]] = frozenset(), shape: str | None = None,
             colour: str | None = None, not_shape: str | None = None,
             not_colour: str | None = None) -> tuple[str, str]:
        """A random (shape, colour) outside `avoid`, optionally pinned or excluded per attribute."""
        options = [(s, c) for s in SHAPES for c in COLOURS
                   if (s, c) not in avoid and shape in (None, s) and colour in (None, c)
                   and s != not_shape and c != not_colour]
        if not options:
            raise ValueError("no (shape, colour) pair satisfies the constraints")
        return pick(self.rng, options)

    def near_miss(self, like: tuple[str, str], avoid: set[tuple[str, str]]) -> tuple[str, str]:
        """Shares the colour or the shape of `like`, never both: forces binding the two."""
        if self.rng.random() < 0.5:
            return self.pair(avoid | {like}, colour=like[1], not_shape=like[0])
        return self.pair(avoid | {like}, shape=like[0], not_colour=like[1])

    def fresh_pairs(self, count: int, avoid: set[tuple[str, str]],
                    near: tuple[str, str] | None = None, near_share: float = 0.0) -> list[tuple[str, str]]:
        """`count` distinct pairs outside `avoid`; the first is a near miss of `near` with prob."""
        pairs: list[tuple[str, str]] = []
        taken = set(avoid)
        for index in range(count):
            if index == 0 and near is not None and self.rng.random() < near_share:
                chosen = self.near_miss(near, taken)
            else:
                chosen = self.pair(taken)
            pairs.append(chosen)
            taken.add(chosen)
        return pairs

    def fill(self, grid: int, pairs: Sequence[tuple[str, str]], cells: Sequence[int] | None = None,
             sizes: Sequence[str | None] | None = None, textures: Sequence[str | None] | None = None) -> list[Obj]:
        cells = list(cells) if cells is not None else self.cells(grid, len(pairs))
        sizes = sizes or [None] * len(pairs)
        textures = textures or [None] * len(pairs)
        return [self.place(grid, cell, s, c, size, tex)
                for (s, c), cell, size, tex in zip(pairs, cells, sizes, textures, strict=True)]

    # ---------------------------------------------------------------- views
    def shifted_view(self, objects: list[Obj], wobble: int = 1) -> tuple[list[Obj], list[int]]:
        """The same objects seen from a slightly moved camera: one global shift plus a 1-px wobble."""
        rng, size = self.rng, self.size
        limit = round(SHIFT_FRACTION * size)
        lo_x = -min(o.x for o in objects) + 1 + wobble
        hi_x = size - 1 - wobble - max(o.x + o.side for o in objects)
        lo_y = -min(o.y for o in objects) + 1 + wobble
        hi_y = size - 1 - wobble - max(o.y + o.side for o in objects)
        ranges = [(max(lo_x, -limit), min(hi_x, limit)), (max(lo_y, -limit), min(hi_y, limit))]
        shift = [0, 0]
        for _ in range(8):  # prefer a visible shift; a crowded image may allow none
            shift = [int(rng.integers(lo, hi + 1)) if lo <= hi else 0 for lo, hi in ranges]
            if shift != [0, 0]:
                break
        moved = [replace(o, x=o.x + shift[0] + int(rng.integers(-wobble, wobble + 1)),
                         y=o.y + shift[1] + int(rng.integers(-wobble, wobble + 1))) for o in objects]
        return moved, shift

    def mirrored_view(self, objects: list[Obj]) -> list[Obj]:
        return [replace(o, x=self.size - o.x - o.side) for o in objects]


def say(rng: np.random.Generator, templates: Sequence[str], **values: Any) -> str:
    return pick(rng, templates).format(**values)
