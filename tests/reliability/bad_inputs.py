"""Builders of bad input (imported as `bad_inputs`): broken, odd and hostile images, and rows.

Each image kind is a real file of its kind: a PNG cut in half, a PNG whose header claims
100000 x 100000 pixels (a decompression bomb in 1 kB), a CMYK JPEG, a 16-bit greyscale PNG.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

GOOD_SIZE = (64, 48)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def header_only_png(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with one tiny IDAT: what a bomb looks like
    to a reader that trusts the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def make_images(folder: Path, outside: Path) -> dict[str, str]:
    """Write every image kind into `folder` (the data root) and one file into `outside` (beyond it).
    Returns {kind: path as a record names it, relative to `folder`}."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    good = Image.new("RGB", GOOD_SIZE, (200, 30, 30))
    good.save(folder / "good.png")
    good.save(folder / "good2.png")
    whole = png_bytes(good)
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "corrupt.png").write_bytes(os.urandom(512))
    Image.new("CMYK", GOOD_SIZE, (0, 200, 200, 0)).save(folder / "cmyk.jpg", format="JPEG")
    Image.new("I;16", GOOD_SIZE, 40000).save(folder / "sixteen.png")
    palette = Image.new("P", GOOD_SIZE, 0)  # colour 0 is the transparent one
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] * 64)
    palette.save(folder / "palette.png", transparency=0)
    Image.new("RGBA", GOOD_SIZE, (0, 0, 255, 0)).save(folder / "alpha.png")
    Image.new("L", GOOD_SIZE, 128).save(folder / "grey.png")
    (folder / "bomb.png").write_bytes(header_only_png(100_000, 100_000))
    (folder / "huge.png").write_bytes(header_only_png(8_000, 8_000))
    Image.new("RGB", (1, 1)).save(folder / "one_pixel.png")
    Image.new("RGB", (1000, 4)).save(folder / "narrow.png")
    good.save(outside / "secret.png")
    (folder / "link_out.png").symlink_to(outside / "secret.png")
    rel_outside = os.path.relpath(outside / "secret.png", folder)
    return {
        "good": "good.png", "good2": "good2.png", "zero": "zero.png", "truncated": "truncated.png",
        "corrupt": "corrupt.png", "cmyk": "cmyk.jpg", "sixteen": "sixteen.png", "palette": "palette.png",
        "alpha": "alpha.png", "grey": "grey.png", "bomb": "bomb.png", "huge": "huge.png",
        "one_pixel": "one_pixel.png", "narrow": "narrow.png", "missing": "nope.png", "symlink_out": "link_out.png",
        "dotdot": rel_outside, "absolute": str(outside / "secret.png"),
        "far_absolute": "/etc/hostname",  # outside every root a test uses (training's is the folder above)
    }


def mig_bench_row(**changes) -> dict:
    """A MIG-Bench row (the benchmark's own field layout) with `changes` applied."""
    row = {"task": "common_object", "images": ["good.png", "good2.png"],
           "question": "These images share one object. Locate it in the second image.",
           "answer": [0.1, 0.2, 0.5, 0.6], "additional_info": "", "need_format": True}
    row.update(changes)
    return row


def univg_r1_row(**changes) -> dict:
    row = {"id": "u0", "images": ["good.png", "good2.png"], "question": "Find the red square.",
           "answer": "<answer>(100,200),(500,600)</answer>", "target_image": 2}
    row.update(changes)
    return row


def synth_row(**changes) -> dict:
    row = {"id": "s0", "task": "diff", "images": ["good.png", "good2.png"], "question": "Locate it.",
           "target_image": 2, "box": [100, 100, 300, 300], "source": "test"}
    row.update(changes)
    return row


def reasoning_row(**changes) -> dict:
    row = {"image": "good.png", "instruction": "the thing you would eat", "box": [4, 2, 20, 10], "task": "lisa_val"}
    row.update(changes)
    return row


def write_json_list(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows))
    return path


def write_jsonl_rows(path: Path, rows: list) -> Path:
    """Rows as JSONL; a `bytes` item is written as that raw line (malformed JSON, non-UTF-8)."""
    with open(path, "wb") as handle:
        for row in rows:
            handle.write(row if isinstance(row, bytes) else json.dumps(row).encode())
            handle.write(b"\n")
    return path
