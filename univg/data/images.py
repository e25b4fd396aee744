"""Image IO shared by every stage: find a record's images inside its data root, check them, open
them as RGB.

The rules, the same at every entry point (import, CoT, datasets, eval, serve):
- a path is resolved against the records file's folder (or the image root the user names) and
  must stay inside the data root after symlinks are followed: `../`, absolute paths and links that
  leave it are refused, unless the user allows it (`allow_outside_root`);
- the size is read from the header before any pixel is decoded: more than `MAX_IMAGE_PIXELS`
  (a decompression bomb, or just huge), a side under `MIN_IMAGE_SIDE`, or an aspect ratio over
  `MAX_ASPECT_RATIO` (Qwen2-VL's smart_resize refuses those) is an error naming the file;
- every mode becomes RGB the same way: transparency over white, 16-bit and float greyscale
  scaled to 8 bits (PIL's plain convert would clip them to white), palette and CMYK converted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from univg.config import DataConfig
from univg.errors import UserError
from univg.schema import atomic_path

MAX_IMAGE_PIXELS = 4096 * 4096
MIN_IMAGE_SIDE = 4
MAX_ASPECT_RATIO = 200


class ImageError(UserError, ValueError):
    """An image that is missing, unreadable, out of limits or outside the data root; the message names it."""


class ImageTooLarge(ImageError):
    """More pixels than the limit (a server answers 413)."""


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may be read from and how large they may be."""

    root: Path | None = None  # None: the folder each records file sits in
    allow_outside_root: bool = False
    max_pixels: int = MAX_IMAGE_PIXELS
    also_inside: tuple[Path, ...] = ()  # further allowed roots: the image folder data was imported from

    def allows(self, real: Path, base: Path) -> bool:
        roots = [Path(self.root or base), *self.also_inside]
        return self.allow_outside_root or any(real.is_relative_to(Path(r).resolve()) for r in roots)


def data_root_for(records_file: str | Path, image_root: str | Path | None = None,
                  data_root: str | Path | None = "data") -> Path:
    """The root the images of a file written by a pipeline stage must stay in.

    Stages write beside each other and point across (data/cot/train.jsonl names
    ../mig-synth/images/...), so the root is: the image root the user names; else the project's
    data folder when the file lies inside it; else the folder above the file's own. Files that
    come from outside (imports, benchmarks) get the stricter root of `load_benchmark`: their own
    folder or the image root."""
    if image_root:
        return Path(image_root).resolve()
    folder = Path(records_file).resolve().parent
    if data_root and folder.is_relative_to(Path(data_root).resolve()):
        return Path(data_root).resolve()
    return folder.parent


def stage_policy(records_file: str | Path, image_root: str | Path | None, data: DataConfig) -> ImagePolicy:
    """The policy of a pipeline stage reading `records_file`: its data root (data_root_for), plus the
    folder the data was imported from (imported records point back at their images, wherever the
    user keeps them), and the user's data.allow_outside_root."""
    imported = data.image_root or (str(Path(data.import_path).parent) if data.source != "synth" and data.import_path else "")
    return ImagePolicy(root=data_root_for(records_file, image_root), allow_outside_root=data.allow_outside_root,
                       also_inside=(Path(imported).resolve(),) if imported else ())


def resolve_image(path: str, base_dir: str | Path, policy: ImagePolicy = ImagePolicy()) -> Path:
    """`path` (relative to `base_dir`) as a real path inside the policy's root, or ImageError."""
    base = Path(base_dir)
    root = Path(policy.root or base).resolve()
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ImageError(f"image path must be a non-empty string: {path!r}")
    real = (base / path).resolve()  # follows symlinks, so a link cannot leave the root unseen
    if Path(path).is_absolute() and not policy.allows(real, root):
        # release files name absolute paths of their authors' machines: --path-map rewrites them
        raise ImageError(f"absolute image path refused: {path} is outside the data root {root} (rewrite its "
                         "prefix with --path-map OLD=NEW, or allow it with -S data.allow_outside_root=true)")
    if not policy.allows(real, root):
        raise ImageError(f"image path leaves the data root {root}: {path} (name the root with --image-root, "
                         "or allow it with -S data.allow_outside_root=true)")
    return real


def resolve_images(paths: Sequence[str], base_dir: str | Path, policy: ImagePolicy = ImagePolicy()) -> list[Path]:
    return [resolve_image(p, base_dir, policy) for p in paths]


def check_size(image: Image.Image, where: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image by its header size, before its pixels are decoded."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image too large: {where} is {width}x{height} = {width * height} pixels, "
                            f"over the limit of {max_pixels}")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageError(f"image too small: {where} is {width}x{height} (each side needs >= {MIN_IMAGE_SIDE} px)")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError(f"image too narrow: {where} is {width}x{height} (aspect ratio over {MAX_ASPECT_RATIO})")


def to_rgb(image: Image.Image) -> Image.Image:
    """The image in RGB, whatever its mode (see the module docstring)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        high = 65535.0 if image.mode.startswith("I;16") or (image.getextrema()[1] or 0) > 255 else 255.0
        image = image.convert("F").point(lambda value: value * 255.0 / high).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _read(path: str | Path, max_pixels: int, read: Callable[[Image.Image], Any], failure: str) -> Any:
    """`read(image)` of a file that exists and passes the header's size rules, or ImageError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            check_size(image, path, max_pixels)
            return read(image)
    except ImageError:
        raise
    except Exception as error:  # PIL raises many types for truncated, corrupt or foreign files
        raise ImageError(f"image not {failure}: {path} ({type(error).__name__}: {error})") from None


def header_size(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of an image from its header, size rules checked; pixels are not decoded."""
    return _read(path, max_pixels, lambda image: image.size, "readable")


def open_rgb(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open one image fully decoded in RGB, or raise ImageError naming the file and the problem."""
    return _read(path, max_pixels, to_rgb, "decodable")


def pixel_digest(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> str:
    """sha256 of an image's size and RGB pixels: the same picture saved twice (another file name,
    another PNG compression, metadata stripped) has the same digest; a lossy re-encode does not."""
    import hashlib

    image = open_rgb(path, max_pixels)
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def image_problems(paths: Sequence[str], base_dir: str | Path, policy: ImagePolicy = ImagePolicy()) -> list[str]:
    """Every image of a record that cannot be used, each named with its problem (empty: all good)."""
    problems = []
    for path in paths:
        resolved = None
        try:
            resolved = resolve_image(path, base_dir, policy)
            open_rgb(resolved, policy.max_pixels)
        except ImageError as error:  # named as the record names it, which is what the user can find
            problems.append(str(error).replace(str(resolved), str(path)) if resolved else str(error))
    return problems


def load_record_images(record: dict, base_dir: str | Path, policy: ImagePolicy = ImagePolicy()) -> list[Image.Image]:
    return [open_rgb(p, policy.max_pixels) for p in resolve_images(record["images"], base_dir, policy)]


def save_png(image: Image.Image, path: str | Path) -> None:
    """Save under a temporary name, then rename: a killed writer never leaves half a PNG."""
    with atomic_path(path) as partial:
        image.save(partial, format="PNG")


def rebase_images(record: dict, from_dir: str | Path, to_dir: str | Path) -> dict:
    """Copy of `record` whose relative image paths point at the same files from `to_dir`.

    Every JSONL a stage writes keeps its image paths relative to its own folder, so each file is
    usable on its own (no --image-root needed between pipeline stages).
    """
    rebased = []
    for rel in record["images"]:
        if Path(rel).is_absolute():
            rebased.append(rel)
        else:
            target = (Path(from_dir) / rel).resolve()
            rebased.append(os.path.relpath(target, Path(to_dir).resolve()))
    return {**record, "images": rebased}
