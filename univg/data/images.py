"""Image IO shared by every stage: resolve a record's image paths and open them as RGB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image


class ImageError(ValueError):
    """An image that is missing or cannot be decoded; the message names the file."""


def resolve_images(paths: Sequence[str], base_dir: str | Path) -> list[Path]:
    """Record image paths are relative to the JSONL file's folder unless an image root is given."""
    base = Path(base_dir)
    return [Path(p) if Path(p).is_absolute() else base / p for p in paths]


def open_rgb(path: str | Path) -> Image.Image:
    """Open one image fully decoded in RGB, or raise ImageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises many types for truncated or corrupt files
        raise ImageError(f"image not decodable: {path} ({type(error).__name__}: {error})") from None


def load_record_images(record: dict, base_dir: str | Path) -> list[Image.Image]:
    return [open_rgb(p) for p in resolve_images(record["images"], base_dir)]


def rebase_images(record: dict, from_dir: str | Path, to_dir: str | Path) -> dict:
    """Copy of `record` whose relative image paths point at the same files from `to_dir`.

    Every JSONL a stage writes keeps its image paths relative to its own folder, so each file is
    usable on its own (no --image-root needed between pipeline stages).
    """
    import os

    rebased = []
    for rel in record["images"]:
        if Path(rel).is_absolute():
            rebased.append(rel)
        else:
            target = (Path(from_dir) / rel).resolve()
            rebased.append(os.path.relpath(target, Path(to_dir).resolve()))
    return {**record, "images": rebased}
