"""Predict: one model behind a Python API, an MLflow pyfunc wrapper, and an HTTP server.

- `Predictor` loads a model once (a folder, a hub id, or models:/univg@champion) and answers
  one question over one or more images with the project's prompt, greedy decoding and the one
  answer parser.
- `UnivgPyfuncModel` is what `univg.tracking.log_model_checkpoint` logs: MLflow users can
  `mlflow.pyfunc.load_model(uri).predict(frame)` without knowing about this package's internals.
- `create_app` / `serve`: FastAPI with GET /health and POST /predict.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from PIL import Image
from pydantic import BaseModel, Field

from univg.answers import DEFAULT_FORMAT, AnswerFormat, parse_answer
from univg.prompts import user_message


class InputError(ValueError):
    """A request the model cannot answer (bad image, empty question); the message says which part."""


# ----------------------------------------------------------------------------- inputs
def decode_image(item: str, allow_paths: bool = True) -> Image.Image:
    """An image given as base64 PNG/JPEG (optionally a data: URL) or, if allowed, a file path."""
    if not isinstance(item, str) or not item:
        raise InputError("each image must be a non-empty string (base64 or a path)")
    payload = item.split(",", 1)[1] if item.startswith("data:") else item
    try:
        raw = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            return image.convert("RGB")
    except (binascii.Error, ValueError, OSError):
        pass  # not base64 image bytes: maybe a path
    if not allow_paths:
        raise InputError(f"image is not valid base64 image data: {item[:40]!r}")
    from univg.data.images import ImageError, open_rgb

    try:
        return open_rgb(item)
    except ImageError as error:
        raise InputError(f"{error} (and not valid base64 image data either)") from None


def encode_png(image: Image.Image) -> str:
    """base64 PNG of an image: the wire format /predict accepts."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# ----------------------------------------------------------------------------- the predictor
class Predictor:
    """A loaded model answering grounding questions with greedy decoding."""

    def __init__(self, model_ref: str | Path, max_new_tokens: int = 128) -> None:
        from univg.models.loading import load_model_and_processor, trained_answer_format

        self.model_ref = str(model_ref)
        self.model, self.processor = load_model_and_processor(self.model_ref, padding_side="left")
        # Ask in the format the model was trained to answer in, unless a request says otherwise.
        self.answer_format = trained_answer_format(self.model_ref) or DEFAULT_FORMAT
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        # One generation at a time: the server's worker threads share one model, and parallel
        # generate() calls only fight over the same cores (and GPU memory).
        self._lock = threading.Lock()

    def predict(
        self, images: Sequence[Image.Image], question: str, answer_format: str | None = None
    ) -> dict[str, Any]:
        """{"response", "box" ([x1,y1,x2,y2] in 0..1000 of the target image, or None), "image_index"}."""
        from univg.models.loading import generate_texts

        if not images:
            raise InputError("at least one image is needed")
        if not question or not question.strip():
            raise InputError("the question is empty")
        try:
            message = user_message(len(images), question.strip(), answer_format or self.answer_format)
        except ValueError as error:
            raise InputError(str(error)) from None
        with self._lock:
            response = generate_texts(self.model, self.processor, [[message]], [list(images)],
                                      max_new_tokens=self.max_new_tokens, do_sample=False)[0]
        parsed = parse_answer(response, allow_untagged=True)
        return {
            "response": response,
            "box": list(parsed.box) if parsed else None,
            "image_index": parsed.image_index if parsed else None,
        }


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
            images = [decode_image(item) for item in _as_list(row["images"])]
            answer_format = row.get("answer_format") or (params or {}).get("answer_format")
            responses.append(self.predictor.predict(images, str(row["question"]), answer_format)["response"])
        return responses


def _as_list(images: Any) -> list[str]:
    if isinstance(images, str):
        return [images]
    return [str(item) for item in images]


# ----------------------------------------------------------------------------- HTTP
class PredictRequest(BaseModel):
    images: list[str] = Field(min_length=1, description="base64 PNG/JPEG images (or server paths), in order.")
    question: str = Field(min_length=1, description="What to find; the question names the target image.")
    answer_format: AnswerFormat | None = Field(
        None, description="'indexed' answers `Image-k: (x1,y1),(x2,y2)`; 'univg-r1' the box only; "
        "null: the format the model was trained on.")


class PredictResponse(BaseModel):
    response: str = Field(description="The model's full text: <think>...</think><answer>...</answer>.")
    box: list[int] | None = Field(description="[x1, y1, x2, y2] in 0..1000 of the target image; null if none.")
    image_index: int | None = Field(description="1-based image the answer names (indexed format), or null.")


def create_app(model_ref: str | Path, *, allow_paths: bool = True, max_new_tokens: int = 128) -> Any:
    """The FastAPI app; the model loads now, so /health answering means ready to predict.

    `allow_paths=False` accepts base64 images only (a server reachable by others should not
    read files named by its callers).
    """
    from fastapi import FastAPI, HTTPException

    predictor = Predictor(model_ref, max_new_tokens=max_new_tokens)
    app = FastAPI(title="univg", description="Multi-image visual grounding (UniVG-R1).")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": predictor.model_ref}

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> dict[str, Any]:
        try:
            images = [decode_image(item, allow_paths) for item in request.images]
            return predictor.predict(images, request.question, request.answer_format)
        except InputError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None

    return app


def serve(model_ref: str | Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the prediction server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model_ref), host=host, port=port, log_level="info")
