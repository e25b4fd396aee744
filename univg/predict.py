"""Predict: one model answering grounding questions, for people (`univg predict`), for code
(`Predictor`), for MLflow (`UnivgPyfuncModel`) and for the HTTP server (univg.serve).

- Images arrive as PIL images, base64 / data: URLs, or file paths. Paths are read only inside an
  image root the operator names (symlinks resolved first, so a link cannot leave it), and every
  image's pixel count is checked from its header before it is decoded.
- The prompt is the project's own (univg.prompts), in the answer format the model was trained on
  (its univg_train.json) unless the caller names one; decoding is greedy.
- An answer is the raw text, the reasoning inside <think>, and the box the one parser reads, in
  0..1000 of the target image and in that image's pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from PIL import Image

from univg.answers import DEFAULT_FORMAT, check_format, parse_answer
from univg.data.images import ImageError, ImageTooLarge, check_size, to_rgb
from univg.errors import UserError
from univg.models.family import FAMILIES, ModelFamily, PixelLimits, family_of, limits_of
from univg.prompts import user_message
from univg.schema import norm_to_pixels

DEFAULT_MAX_PIXELS = 4096 * 4096  # per image, checked from the header before decoding
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


class InputError(UserError, ValueError):
    """A request the model cannot answer; the message says which part. `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    """What an image given by a caller may be: how large, and where on disk it may be read from."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    image_root: Path | None = None  # None: file paths are refused; base64 / data: URLs only


# ----------------------------------------------------------------------------- inputs
def decode_image(item: Any, limits: ImageLimits = ImageLimits(), where: str = "image") -> Image.Image:
    """An RGB image from a PIL image, base64 (optionally a data: URL) or a path inside the image root."""
    if isinstance(item, Image.Image):
        return to_rgb(_checked(item, limits, where))
    if not isinstance(item, str) or not item:
        raise InputError(f"{where}: expected a non-empty string (base64, a data: URL or a path)")
    if item.startswith("data:"):
        return _from_bytes(_base64(item.split(",", 1)[-1], where), limits, where)
    try:
        raw = base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        return _from_path(item, limits, where)  # not base64 ('.' and '/' are not in its alphabet)
    try:
        return _from_bytes(raw, limits, where)
    except InputError as error:
        # a file name made only of base64 letters ("scan01") is still a path, where paths are allowed
        if error.status == 422 and limits.image_root is not None and len(item) < 256 \
                and (Path(limits.image_root) / item).is_file():
            return _from_path(item, limits, where)
        raise


def _base64(payload: str, where: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where}: the data: URL does not hold valid base64") from None


def _from_bytes(raw: bytes, limits: ImageLimits, where: str) -> Image.Image:
    return _open(io.BytesIO(raw), limits, where, "not a readable image")


def _from_path(item: str, limits: ImageLimits, where: str) -> Image.Image:
    if limits.image_root is None:
        raise InputError(f"{where}: file paths are refused by this server (send base64 or a data: URL; "
                         "an operator may allow a folder with --image-root)", status=403)
    root = Path(limits.image_root).resolve()
    path = (root / item).resolve()  # an absolute `item` replaces root; resolve() follows symlinks
    if not path.is_relative_to(root):
        raise InputError(f"{where}: {item!r} is outside the allowed image root", status=403)
    if not path.is_file():
        raise InputError(f"{where}: no such file under the image root: {item!r}", status=404)
    return _open(path, limits, where, f"{item!r} is not a readable image")


def _open(source: Any, limits: ImageLimits, where: str, unreadable: str) -> Image.Image:
    """Decode after checking the size in the header (PIL reads pixels only on convert)."""
    try:
        with Image.open(source) as image:
            _checked(image, limits, where)
            return to_rgb(image)
    except InputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{where}: {unreadable} ({type(error).__name__}: {error})") from None


def _checked(image: Image.Image, limits: ImageLimits, where: str) -> Image.Image:
    """The size rules of univg.data.images, from the header; too large is HTTP 413, other sizes 422."""
    try:
        check_size(image, where, max_pixels=limits.max_pixels)
    except ImageError as error:
        raise InputError(str(error), status=413 if isinstance(error, ImageTooLarge) else 422) from None
    return image


def encode_png(image: Image.Image) -> str:
    """base64 PNG of an image: the wire format the server accepts."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# ----------------------------------------------------------------------------- answers
def read_answer(text: str, images: Sequence[Image.Image], family: ModelFamily = FAMILIES["qwen2_vl"],
                limits: PixelLimits | None = None) -> dict[str, Any]:
    """{response, reasoning, box (0..1000), box_pixels, box_model, image_index, target_image} of one reply.

    The target image is the one the answer names (indexed format), or the only image. `box_model`
    is the box as the model wrote it (its family's convention, univg.models.family); `box` is that
    box in 0..1000 of the target image, `box_pixels` in its pixels. With several images and no
    index, box_pixels is null, and so is box for a family that writes pixels (the image is unknown).
    """
    parsed = parse_answer(text, allow_untagged=True)
    think = _THINK.search(text)
    index = parsed.image_index if parsed else None
    target = index if index is not None else (1 if len(images) == 1 else None)
    box = pixels = None
    if parsed and target is not None and 1 <= target <= len(images):
        width, height = images[target - 1].size
        box = [round(v) for v in family.to_norm1000(parsed.box, (width, height), limits)]
        pixels = [round(v, 1) for v in norm_to_pixels(box, width, height)]
    elif parsed and not family.pixel_boxes:
        box = list(parsed.box)
    return {
        "response": text,
        "reasoning": think.group(1).strip() if think else None,
        "box": box,
        "box_pixels": pixels,
        "box_model": list(parsed.box) if parsed else None,
        "image_index": index,
        "target_image": target,
    }


def draw_answer(images: Sequence[Image.Image], answer: dict[str, Any]) -> Image.Image | None:
    """The target image with the answer's box drawn (enlarged when small), or None without one."""
    from univg.train.callbacks import draw_boxes

    target = answer.get("target_image")
    if answer.get("box") is None or target is None or not 1 <= target <= len(images):
        return None
    image = images[target - 1]
    scale = max(1, 448 // max(image.size))
    return draw_boxes(image, answer["box"], None, f"Image-{target} {answer['box']}", scale=scale)


# ----------------------------------------------------------------------------- the predictor
class Predictor:
    """A loaded model (on the GPU when there is one) answering grounding questions, greedily."""

    def __init__(self, model_ref: str | Path, max_new_tokens: int = 256, device: str = "auto",
                 family: str = "auto") -> None:
        from univg.models.loading import load_model_and_processor, trained_answer_format

        self.model_ref = str(model_ref)
        self.model, self.processor = load_model_and_processor(self.model_ref, padding_side="left", device=device)
        self.model.eval()
        self.family = family_of(self.model, family)  # how the model writes boxes
        self.limits = limits_of(self.processor, self.family)
        self.max_new_tokens = max_new_tokens
        # Ask in the format the model was trained to answer in, unless a request says otherwise.
        self.answer_format = trained_answer_format(self.model_ref) or DEFAULT_FORMAT

    def conversation(self, n_images: int, question: str, answer_format: str | None = None) -> list[dict[str, Any]]:
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty")
        try:
            return [user_message(n_images, question.strip(), check_format(answer_format or self.answer_format),
                                 self.family.prompt_note)]
        except ValueError as error:
            raise InputError(str(error)) from None

    def generate(self, conversations: Sequence[tuple[list[dict[str, Any]], list[Image.Image]]],
                 max_new_tokens: int | None = None) -> list[Any]:
        """One batched greedy generation; a list of univg.models.loading.Generation."""
        from univg.models.generation import generate

        return generate(self.model, self.processor, [c for c, _ in conversations], [i for _, i in conversations],
                        max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False)

    def predict(self, images: Sequence[Any], question: str, answer_format: str | None = None) -> dict[str, Any]:
        """Answer one question over `images` (PIL images, or anything decode_image takes)."""
        if not images:
            raise InputError("at least one image is needed")
        decoded = [decode_image(item, where=f"image {k}") for k, item in enumerate(images, start=1)]
        reply = self.generate([(self.conversation(len(decoded), question, answer_format), decoded)])[0]
        return self.read_answer(reply.text, decoded)

    def read_answer(self, text: str, images: Sequence[Image.Image]) -> dict[str, Any]:
        """`read_answer` in this model's box convention."""
        return read_answer(text, images, self.family, self.limits)


# ----------------------------------------------------------------------------- MLflow pyfunc
class UnivgPyfuncModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: predict(DataFrame[images, question, (answer_format)]) -> list of responses."""

    def load_context(self, context: Any) -> None:
        self.predictor = Predictor(context.artifacts["checkpoint"])

    # No type hints on predict: MLflow would turn them into a (wrong) input schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        rows = model_input.to_dict(orient="records") if hasattr(model_input, "to_dict") else list(model_input)
        responses = []
        for row in rows:
            images = [row["images"]] if isinstance(row["images"], str) else list(row["images"])
            answer_format = row.get("answer_format") or (params or {}).get("answer_format")
            responses.append(self.predictor.predict(images, str(row["question"]), answer_format)["response"])
        return responses
