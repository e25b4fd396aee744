"""Serve a grounding model over HTTP: an OpenAI-compatible endpoint, a grounding endpoint, and
health and Prometheus metrics, with requests from many clients batched into one generation.

    univg serve --model models:/univg@champion [--host 127.0.0.1] [--port 8080] [--image-root DIR]

Routes:
- POST /v1/chat/completions: OpenAI's chat completions (images as data: URLs in `image_url`
  content parts); the messages reach the model as sent. Decoding is greedy: `temperature` and
  `top_p` are accepted and ignored, `n` copies are identical, `stream` is refused.
- POST /v1/ground: {"images": [...], "question": "...", "answer_format"?, "draw"?} -> the parsed
  answer (univg.predict.read_answer), with the target image and its box as a PNG when `draw`.
  POST /predict is the same route under its first name.
- GET /health (no key needed), GET /metrics (Prometheus text: requests, latency, batch sizes,
  queue depth).

The model loads once. A worker thread takes queued requests and runs up to `max_batch` of them
together, waiting at most `batch_window_ms` for a batch to fill; greedy decoding with left padding
makes each answer the same as if it had run alone. When `max_queue` requests wait already, a new
one is answered 503 with Retry-After. Limits on the body, images per request and pixels per image
answer 4xx with a message. With UNIVG_API_KEY set, every route but /health needs
`Authorization: Bearer <key>` (compared in constant time). It binds to 127.0.0.1 unless told.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hmac
import json
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# FastAPI reads handler annotations by name, so Request must be importable from this module.
from fastapi import Request

from univg.predict import (  # noqa: F401  (UnivgPyfuncModel: models logged before it moved name it here)
    ImageLimits,
    InputError,
    Predictor,
    UnivgPyfuncModel,
    decode_image,
    draw_answer,
    encode_png,
    read_answer,
)

API_KEY_ENV = "UNIVG_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 16  # requests generated together
    batch_window_ms: float = 2.0  # wait for a batch to fill (requests also pile up during a generation)
    max_queue: int = 64  # waiting requests before 503
    max_images: int = 8  # per request
    max_body_bytes: int = 32 << 20
    max_new_tokens: int = 256  # also the cap on a request's max_tokens
    limits: ImageLimits = field(default_factory=ImageLimits)
    api_key: str | None = None  # None: read UNIVG_API_KEY when the app is made


class Overloaded(RuntimeError):
    """The queue is full: answered 503 with Retry-After."""


# ----------------------------------------------------------------------------- metrics
class Metrics:
    """Counters and recent latencies, rendered in Prometheus' text format."""

    BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

    def __init__(self, window: int = 2048) -> None:
        self._lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.latencies: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=window))
        self.latency_sum: collections.Counter[str] = collections.Counter()
        self.batches: collections.Counter[int] = collections.Counter()
        self.batched_requests = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latencies[route].append(seconds)
            self.latency_sum[route] += seconds

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches[size] += 1
            self.batched_requests += size

    def render(self, queue_depth: int) -> str:
        with self._lock:
            lines = ["# HELP univg_requests_total HTTP requests by route and status.",
                     "# TYPE univg_requests_total counter"]
            lines += [f'univg_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in sorted(self.requests.items())]
            lines += ["# HELP univg_request_latency_seconds Request latency over the most recent requests.",
                      "# TYPE univg_request_latency_seconds summary"]
            for route, values in sorted(self.latencies.items()):
                ordered = sorted(values)
                for q in (0.5, 0.95, 0.99):
                    value = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
                    lines.append(f'univg_request_latency_seconds{{route="{route}",quantile="{q}"}} {value:.6f}')
                count = sum(n for (r, _), n in self.requests.items() if r == route)
                lines.append(f'univg_request_latency_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
                lines.append(f'univg_request_latency_seconds_count{{route="{route}"}} {count}')
            lines += ["# HELP univg_batch_size Requests generated together.", "# TYPE univg_batch_size histogram"]
            total = 0
            for bound in self.BATCH_BUCKETS:
                total = sum(n for size, n in self.batches.items() if size <= bound)
                lines.append(f'univg_batch_size_bucket{{le="{bound}"}} {total}')
            lines.append(f'univg_batch_size_bucket{{le="+Inf"}} {sum(self.batches.values())}')
            lines.append(f"univg_batch_size_sum {self.batched_requests}")
            lines.append(f"univg_batch_size_count {sum(self.batches.values())}")
            lines += ["# HELP univg_queue_depth Requests waiting for the model.", "# TYPE univg_queue_depth gauge",
                      f"univg_queue_depth {queue_depth}"]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- batching
@dataclass
class Job:
    conversation: list[dict[str, Any]]
    images: list[Any]
    max_new_tokens: int
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class Batcher:
    """One worker thread owns the model; handlers queue jobs and wait on their futures."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, metrics: Metrics) -> None:
        self.predictor, self.settings, self.metrics = predictor, settings, metrics
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=settings.max_queue)
        self._thread = threading.Thread(target=self._work, name="univg-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> concurrent.futures.Future:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"{self.settings.max_queue} requests are already waiting") from None
        return job.future

    def _collect(self) -> list[Job]:
        batch = [self.queue.get()]
        deadline = time.monotonic() + self.settings.batch_window_ms / 1000
        while len(batch) < self.settings.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while True:
            batch = self._collect()
            # one generate() call per token budget: a shorter budget must not be run longer
            for budget in sorted({job.max_new_tokens for job in batch}):
                jobs = [job for job in batch if job.max_new_tokens == budget]
                self.metrics.batch(len(jobs))
                try:
                    results = self.predictor.generate([(j.conversation, j.images) for j in jobs], budget)
                except Exception as error:  # the handlers answer 500 with the message
                    for job in jobs:
                        job.future.set_exception(error)
                else:
                    for job, result in zip(jobs, results, strict=True):
                        job.future.set_result(result)


# ----------------------------------------------------------------------------- requests
def parse_body(raw: bytes, settings: ServeSettings) -> dict[str, Any]:
    if len(raw) > settings.max_body_bytes:
        raise InputError(f"request body of {len(raw)} bytes is over the limit of {settings.max_body_bytes}", 413)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"request body is not valid JSON: {error}", 400) from None
    if not isinstance(body, dict):
        raise InputError(f"request body must be a JSON object, got {type(body).__name__}", 400)
    return body


def _images(items: Any, settings: ServeSettings) -> list[Any]:
    if not isinstance(items, list) or not items:
        raise InputError("'images' must be a non-empty list")
    if len(items) > settings.max_images:
        raise InputError(f"{len(items)} images is over this server's limit of {settings.max_images}", 413)
    return [decode_image(item, settings.limits, f"images[{k}]") for k, item in enumerate(items)]


def _budget(value: Any, settings: ServeSettings, name: str) -> int:
    if value is None:
        return settings.max_new_tokens
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"'{name}' must be a positive integer, got {value!r}")
    return min(value, settings.max_new_tokens)


def ground_job(body: dict[str, Any], predictor: Predictor, settings: ServeSettings) -> tuple[Job, list[Any]]:
    images = _images(body.get("images"), settings)
    answer_format = body.get("answer_format")
    if answer_format is not None and not isinstance(answer_format, str):
        raise InputError("'answer_format' must be a string")
    conversation = predictor.conversation(len(images), body.get("question"), answer_format)
    return Job(conversation, images, _budget(body.get("max_new_tokens"), settings, "max_new_tokens")), images


def chat_jobs(body: dict[str, Any], settings: ServeSettings) -> list[Job]:
    """OpenAI chat messages -> the model's conversation (images decoded, placeholders in place)."""
    if body.get("stream"):
        raise InputError("streaming is not supported: send stream=false", 400)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("'messages' must be a non-empty list")
    conversation, images = [], []
    for m, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise InputError(f"messages[{m}] must be an object with role system, user or assistant")
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise InputError(f"messages[{m}].content must be a string or a list of content parts")
        converted = []
        for p, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                converted.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
                if not isinstance(url, str) or not url:
                    raise InputError(f"messages[{m}].content[{p}].image_url.url is missing")
                if url.startswith(("http://", "https://")):
                    raise InputError(f"messages[{m}].content[{p}]: image URLs are not fetched; send a data: URL")
                images.append(decode_image(url, settings.limits, f"messages[{m}].content[{p}]"))
                converted.append({"type": "image"})
            else:
                raise InputError(f"messages[{m}].content[{p}]: unsupported content part {kind!r}")
        conversation.append({"role": message["role"], "content": converted})
        if len(images) > settings.max_images:
            raise InputError(f"more than {settings.max_images} images: over this server's limit", 413)
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
        raise InputError(f"'n' must be an integer from 1 to 8, got {n!r}")
    budget = _budget(body.get("max_completion_tokens", body.get("max_tokens")), settings, "max_tokens")
    return [Job(conversation, images, budget) for _ in range(n)]


def chat_response(model: str, results: list[Any], budget: int) -> dict[str, Any]:
    choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                "finish_reason": "length" if r.completion_tokens >= budget else "stop"}
               for i, r in enumerate(results)]
    prompt = results[0].prompt_tokens
    completion = sum(r.completion_tokens for r in results)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


# ----------------------------------------------------------------------------- the app
def create_app(model_ref: str | Path, settings: ServeSettings | None = None, device: str = "auto",
               family: str = "auto") -> Any:
    """The FastAPI app; the model loads now (on `device`), so /health answering means ready to predict."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse

    settings = settings or ServeSettings()
    api_key = settings.api_key if settings.api_key is not None else os.environ.get(API_KEY_ENV) or None
    predictor = Predictor(model_ref, max_new_tokens=settings.max_new_tokens, device=device, family=family)
    metrics = Metrics()
    batcher = Batcher(predictor, settings, metrics)
    app = FastAPI(title="univg", description="Multi-image visual grounding (UniVG-R1), OpenAI-compatible.")

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        kind = "invalid_request_error" if status < 500 else ("overloaded" if status == 503 else "server_error")
        return JSONResponse({"detail": message, "error": {"message": message, "type": kind, "code": status}},
                            status_code=status, headers=headers)

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        route = request.url.path
        if api_key and route != "/health":
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                response = error(401, "missing or wrong API key (Authorization: Bearer <key>)",
                                 {"WWW-Authenticate": "Bearer"})
                metrics.request(route, 401, time.perf_counter() - started)
                return response
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            response = error(413, f"request body of {declared} bytes is over the limit of {settings.max_body_bytes}")
        else:
            response = await call_next(request)
        metrics.request(route, response.status_code, time.perf_counter() - started)
        return response

    async def run(jobs: list[Job]) -> list[Any]:
        futures = [batcher.submit(job) for job in jobs]
        return await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))

    async def answer(request: Request, handle, invalid: int = 422) -> Any:  # noqa: ANN001
        """Run a route's handler; an invalid request gets `invalid` (OpenAI's routes use 400)."""
        try:
            return await handle(parse_body(await request.body(), settings))
        except InputError as problem:
            return error(invalid if problem.status == 422 else problem.status, str(problem))
        except Overloaded as problem:
            return error(503, f"server busy: {problem}; retry shortly", {"Retry-After": "1"})
        except Exception as problem:  # a model failure: say so, keep serving
            return error(500, f"generation failed: {type(problem).__name__}: {problem}")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.model_ref, "answer_format": predictor.answer_format,
                "family": predictor.family.name, "device": str(predictor.model.device),
                "queue_depth": batcher.queue.qsize()}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.render(batcher.queue.qsize())

    async def ground(body: dict[str, Any]) -> dict[str, Any]:
        job, images = ground_job(body, predictor, settings)
        result = (await run([job]))[0]
        out = predictor.read_answer(result.text, images)
        out["answer_format"] = body.get("answer_format") or predictor.answer_format
        if body.get("draw"):
            drawn = draw_answer(images, out)
            out["png"] = encode_png(drawn) if drawn is not None else None
        return out

    @app.post("/v1/ground")
    async def ground_route(request: Request) -> Any:
        return await answer(request, ground)

    @app.post("/predict")
    async def predict_route(request: Request) -> Any:
        return await answer(request, ground)

    @app.post("/v1/chat/completions")
    async def chat_route(request: Request) -> Any:
        async def chat(body: dict[str, Any]) -> dict[str, Any]:
            jobs = chat_jobs(body, settings)
            return chat_response(str(body.get("model") or predictor.model_ref), await run(jobs), jobs[0].max_new_tokens)

        return await answer(request, chat, invalid=400)

    return app


def serve(model_ref: str | Path, host: str = "127.0.0.1", port: int = 8080, settings: ServeSettings | None = None,
          device: str = "auto", family: str = "auto") -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model_ref, settings, device, family), host=host, port=port, log_level="info")
