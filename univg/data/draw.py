"""Rendering for mig-synth: bold flat shapes on a light-grey canvas, plus the marks tasks draw.

Everything here is a pure function of its arguments (no randomness), so the same scene always
gives the same pixels and the same PNG bytes. Geometry is in pixels; `norm_box` converts an
object's tight box (the extent of its drawn pixels, not of its layout square) to 0..1000.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from univg.schema import pixels_to_norm

BACKGROUND = (228, 228, 228)
MARK_COLOUR = (20, 20, 20)

# Saturated and far apart in hue, so a 14-px patch embedding can tell them apart easily.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "orange": (247, 138, 16),
    "yellow": (232, 200, 0),
    "green": (34, 158, 56),
    "cyan": (0, 188, 212),
    "blue": (36, 76, 222),
    "purple": (148, 52, 190),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "diamond", "cross")
TEXTURES: tuple[str, ...] = ("solid", "striped")

# Stripes alternate the colour with a pale tint of it: the object keeps its hue at any scale.
_STRIPE_TINT = 0.55


@dataclass(frozen=True)
class Obj:
    """One drawn object: appearance plus its layout square (top-left x, y and side, pixels)."""

    shape: str
    colour: str
    texture: str
    size: str  # "small" | "medium" | "large" (the layout's size class)
    x: int
    y: int
    side: int

    @property
    def pair(self) -> tuple[str, str]:
        return (self.shape, self.colour)


def _shape_polygons(shape: str, x: int, y: int, s: int) -> list[tuple[str, list]]:
    """The drawing primitives of a shape inscribed in the square [x, x+s) x [y, y+s)."""
    x2, y2 = x + s - 1, y + s - 1  # PIL coordinates are inclusive
    mx, my = x + (s - 1) / 2, y + (s - 1) / 2
    if shape == "square":
        return [("rect", [x, y, x2, y2])]
    if shape == "circle":
        return [("ellipse", [x, y, x2, y2])]
    if shape == "triangle":
        return [("poly", [(mx, y), (x2, y2), (x, y2)])]
    if shape == "diamond":
        return [("poly", [(mx, y), (x2, my), (mx, y2), (x, my)])]
    if shape == "cross":
        arm = max(2, round(s / 3))
        a1 = x + (s - arm) // 2
        b1 = y + (s - arm) // 2
        return [("rect", [a1, y, a1 + arm - 1, y2]), ("rect", [x, b1, x2, b1 + arm - 1])]
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


@lru_cache(maxsize=4096)
def _mask_bytes(shape: str, x: int, y: int, side: int, width: int, height: int) -> bytes:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for kind, coords in _shape_polygons(shape, x, y, side):
        if kind == "rect":
            draw.rectangle(coords, fill=255)
        elif kind == "ellipse":
            draw.ellipse(coords, fill=255)
        else:
            draw.polygon(coords, fill=255)
    return canvas.tobytes()


def object_mask(obj: Obj, width: int, height: int) -> np.ndarray:
    """Boolean (H, W) mask of the pixels the object covers."""
    raw = _mask_bytes(obj.shape, obj.x, obj.y, obj.side, width, height)
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width) > 0


def pixel_box(obj: Obj, width: int, height: int) -> tuple[int, int, int, int]:
    """Tight box of the drawn pixels as (left, top, right, bottom), right/bottom exclusive."""
    mask = object_mask(obj, width, height)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"object {obj} draws no pixels inside a {width}x{height} image")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def norm_box(obj: Obj, width: int, height: int) -> list[int]:
    """Tight box in the record's 0..1000 integer space."""
    return pixels_to_norm(pixel_box(obj, width, height), width, height)


def _stripe_pattern(width: int, height: int) -> np.ndarray:
    period = max(4, round(width / 18))
    ys, xs = np.mgrid[0:height, 0:width]
    return ((xs + ys) // (period // 2)) % 2 == 1


def _tint(rgb: tuple[int, int, int]) -> np.ndarray:
    colour = np.array(rgb, dtype=np.float64)
    return np.round(colour * (1 - _STRIPE_TINT) + 255 * _STRIPE_TINT).astype(np.uint8)


def background(width: int, height: int, position_cue: float = 0.0) -> np.ndarray:
    """Light-grey canvas; with position_cue > 0, red rises left->right and blue top->bottom.

    Qwen2-VL's vision tower has only rotary (relative) positions, so a model trained from scratch
    has no absolute "where" signal; a faint gradient gives every patch its coordinates in its
    pixels. Real pretrained models do not need it: `data.position_cue: 0` turns it off.
    """
    pixels = np.empty((height, width, 3), dtype=np.float64)
    pixels[:] = BACKGROUND
    if position_cue > 0:
        xs = (np.arange(width) + 0.5) / width - 0.5
        ys = (np.arange(height) + 0.5) / height - 0.5
        pixels[:, :, 0] += position_cue * 48 * xs[None, :]
        pixels[:, :, 2] += position_cue * 48 * ys[:, None]
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def render(
    objects: list[Obj],
    marks: list[tuple[str, int]],
    width: int,
    height: int,
    specks: list[tuple[int, int, int, int]] = (),
    position_cue: float = 0.0,
) -> Image.Image:
    """Draw one image: clutter specks (x, y, side, grey) first, then objects, then marks.

    A mark is ("box", i): a frame around object i a few pixels outside its tight box, or
    ("dot", i): a black disc at the centre of object i's layout square.
    """
    pixels = background(width, height, position_cue)
    for sx, sy, side, grey in specks:
        pixels[sy : sy + side, sx : sx + side] = grey
    stripes = _stripe_pattern(width, height)
    for obj in objects:
        mask = object_mask(obj, width, height)
        pixels[mask] = PALETTE[obj.colour]
        if obj.texture == "striped":
            pixels[mask & stripes] = _tint(PALETTE[obj.colour])
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for kind, index in marks:
        obj = objects[index]
        if kind == "box":
            margin, line = max(2, round(width / 40)), max(1, round(width / 56))
            left, top, right, bottom = pixel_box(obj, width, height)
            frame = [max(0, left - margin), max(0, top - margin),
                     min(width - 1, right - 1 + margin), min(height - 1, bottom - 1 + margin)]
            draw.rectangle(frame, outline=MARK_COLOUR, width=line)
        elif kind == "dot":
            radius = max(2, round(width / 30))
            cx, cy = obj.x + (obj.side - 1) / 2, obj.y + (obj.side - 1) / 2
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=MARK_COLOUR)
        else:
            raise ValueError(f"unknown mark kind {kind!r}")
    return image
