"""The `openai` teacher: any OpenAI-compatible chat-completions endpoint (vLLM, hosted Qwen-VL, OpenAI).

Prompting follows UniVG-R1: the teacher sees the images (as data URLs), the question and the
ground-truth answer, is told to assume it does not know the answer, and explains step by step how
it would find it. `num_candidates` chains are asked for (the `n` parameter, topped up with more
requests when an endpoint returns fewer choices); a judge model picks the best when configured,
else the rule score does (teachers.select_best).

Production concerns, each on purpose:
  - the API key comes from the environment variable named in params and is only ever put in the
    Authorization header; any error text that might echo it is scrubbed before it is stored;
  - at most `max_concurrency` requests are in flight (one worker per slot);
  - 408, 429, 5xx, timeouts and connection errors are retried with exponential backoff (Retry-After
    wins when the server sends it); other 4xx fail the row at once;
  - every finished row is appended to a JSONL cache (flushed per row) keyed by the record content
    and the teacher settings, so a crash or Ctrl-C never pays for a finished row twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import re
import threading
from pathlib import Path
from typing import Any

from univg.answers import completion_text, format_box, parse_answer
from univg.cot.teachers import Candidate, RowOutcome, Teacher, Usage, select_best
from univg.data.images import ImageError, ImagePolicy, check_size, resolve_images
from univg.data.naming import last_named_image

PROMPT_VERSION = 1
MAX_BACKOFF_S = 60.0

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>.*?(?:</answer>|$)", re.DOTALL)
_TAG = re.compile(r"</?\w+>")


class RequestFailed(Exception):
    """A request that failed for good; `reason` is short and safe to store."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------- prompts
def teacher_prompt(record: dict[str, Any], answer_format: str = "indexed") -> str:
    t = int(record["target_image"])
    x1, y1, x2, y2 = record["box"]
    reply = f"<think>your reasoning</think><answer>{format_box(record['box'], t, answer_format)}</answer>"
    return (
        f"Question: {record['question']}\n"
        f"The answer is in image {t}, bounding box ({x1},{y1}),({x2},{y2}) "
        "(x1,y1),(x2,y2) in 0-1000 coordinates relative to that image.\n"
        "Assume you do not know the answer. Explain step by step, as if you were finding it yourself, "
        "how you would locate the target: what each relevant image shows, what differs or matches, and "
        f"why the target is in image {t}. Be brief (1-3 sentences), give no coordinates in the reasoning, "
        f"and end the reasoning by naming image {t}.\n"
        f"Reply exactly as: {reply}"
    )


def judge_prompt(record: dict[str, Any], chains: list[str]) -> str:
    listed = "\n".join(f"{k}. {chain}" for k, chain in enumerate(chains, start=1))
    return (
        f"Question: {record['question']}\n"
        f"The correct answer is in image {record['target_image']}, box {format_box(record['box'], None, 'univg-r1')}.\n"
        f"Here are {len(chains)} candidate explanations of how to find it:\n{listed}\n"
        "Which explanation is the most faithful, correct and concise? Reply with its number only."
    )


def image_data_url(path: Path) -> str:
    """The file as a data URL; raises ValueError naming the file when it is missing or not an image."""
    from PIL import Image

    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            check_size(image, path)  # the same limits as every other image opener, from the header
            fmt = (image.format or "PNG").lower()
            image.verify()
    except ImageError:
        raise
    except Exception as error:  # PIL raises many types for corrupt files
        raise ImageError(f"image not decodable: {path} ({type(error).__name__})") from None
    mime = {"jpg": "jpeg", "mpo": "jpeg"}.get(fmt, fmt)
    return f"data:image/{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_messages(record: dict[str, Any], base_dir: Path, answer_format: str,
                   policy: ImagePolicy | None = None) -> list[dict[str, Any]]:
    paths = resolve_images(record["images"], base_dir, policy or ImagePolicy(root=Path(base_dir)))
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_url(p)}} for p in paths]
    content.append({"type": "text", "text": teacher_prompt(record, answer_format)})
    system = "You explain multi-image visual grounding step by step, faithfully and briefly."
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def parse_candidate(content: Any) -> Candidate | None:
    """A chain (no tags) and the answer the teacher wrote, from one choice's message content."""
    text = completion_text(content)
    think = _THINK.search(text)
    chain = think.group(1) if think else _ANSWER.sub(" ", text)
    chain = re.sub(r"\s+", " ", _TAG.sub(" ", chain)).strip()
    if not chain:
        return None
    answer = parse_answer(text)
    return Candidate(chain, list(answer.box) if answer else None, answer.image_index if answer else None)


# ----------------------------------------------------------------------------- cache
class ChainCache:
    """Append-only JSONL of finished rows; a torn last line (crash mid-write) is ignored on load."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path and path.exists():
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        self.entries[entry["key"]] = entry
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
        self._handle = None

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        entry = {"key": key, **entry}
        self.entries[key] = entry
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _ends_mid_line(self.path)
            self._handle = open(self.path, "a", encoding="utf-8")
            if torn:  # end the half-written line, or the next entry would be glued to it
                self._handle.write("\n")
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()  # one row at a time: a kill loses at most the row being written

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _ends_mid_line(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


# ----------------------------------------------------------------------------- teacher
class OpenAITeacher(Teacher):
    def __init__(self, cfg: Any, num_candidates: int = 3, answer_format: str = "indexed", cache_path: Path | None = None,
                 image_policy: ImagePolicy | None = None):
        self.cfg = cfg
        self.image_policy = image_policy  # where the images sent to the teacher may come from
        self.n = num_candidates
        self.answer_format = answer_format
        self.cache_path = cache_path
        self.name = f"openai:{cfg.model}"
        self._key = os.environ.get(cfg.api_key_env, "")

    def cache_key(self, record: dict[str, Any]) -> str:
        wanted = {
            "v": PROMPT_VERSION, "base_url": self.cfg.base_url, "model": self.cfg.model, "judge": self.cfg.judge_model,
            "n": self.n, "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens,
            "format": self.answer_format, "record": [record.get(k) for k in ("id", "question", "images", "target_image", "box")],
        }
        return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()

    def run(self, records, base_dir, progress=None) -> list[RowOutcome]:
        cache = ChainCache(self.cache_path)
        outcomes: list[RowOutcome | None] = [None] * len(records)
        todo = []
        for index, record in enumerate(records):
            key = self.cache_key(record)
            try:
                outcomes[index] = _from_cache(index, cache.get(key))
            except (KeyError, TypeError, ValueError, IndexError):  # a miss, or an entry we cannot use
                todo.append((index, key))
                continue
            if progress:
                progress(1)
        try:
            if todo:
                _run_coroutine(self._run_all(records, todo, Path(base_dir), cache, outcomes, progress))
        finally:
            cache.close()
        return outcomes  # type: ignore[return-value]

    async def _run_all(self, records, todo, base_dir, cache, outcomes, progress) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        queue: asyncio.Queue = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)
        limits = httpx.Limits(max_connections=self.cfg.max_concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout_s, limits=limits) as client:

            async def worker() -> None:
                while not queue.empty():
                    index, key = queue.get_nowait()
                    try:
                        outcome = await self._row(client, index, records[index], base_dir)
                    except Exception as error:  # a malformed response must cost one row, not the run
                        reason = f"teacher_error: {type(error).__name__}: {self._scrub(str(error))[:200]}"
                        outcome = RowOutcome(index, failure=[reason])
                    outcomes[index] = outcome
                    if not outcome.failure:
                        cache.put(key, _to_cache(records[index], outcome))
                    if progress:
                        progress(1)

            await asyncio.gather(*(worker() for _ in range(min(self.cfg.max_concurrency, len(todo)))))

    async def _row(self, client, index: int, record: dict[str, Any], base_dir: Path) -> RowOutcome:
        usage = Usage()
        try:
            messages = build_messages(record, base_dir, self.answer_format, self.image_policy)
        except ValueError as error:
            return RowOutcome(index, usage=usage, failure=[f"image_unreadable: {error}"])
        candidates: list[Candidate] = []
        failure: list[str] = []
        for _ in range(self.n):  # top up when an endpoint ignores `n`; at most n rounds
            payload = {"model": self.cfg.model, "messages": messages, "n": self.n - len(candidates),
                       "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
            try:
                data = await self._post(client, payload, usage)
            except RequestFailed as error:
                failure = [error.reason]
                break
            parsed = [parse_candidate((c.get("message") or {}).get("content")) for c in data.get("choices") or []]
            candidates.extend(c for c in parsed if c is not None)
            if len(candidates) >= self.n:
                break
        if not candidates:
            return RowOutcome(index, usage=usage, failure=failure or ["empty_response: no usable chain in any choice"])
        candidates = candidates[: self.n]
        pick, extra = None, {}
        faithful = [c.text for c in candidates if last_named_image(c.text) == record["target_image"]]
        if self.cfg.judge_model and len(faithful) >= 2:
            try:
                pick = await self._judge(client, record, faithful, usage)
            except RequestFailed as error:
                extra["judge_error"] = error.reason
        chosen, scores = select_best(record, candidates, judge=(lambda _r, _c: pick) if pick is not None else None)
        return RowOutcome(index, candidates, chosen, scores, "judge" if pick is not None else "rule", usage, extra=extra)

    async def _judge(self, client, record: dict[str, Any], chains: list[str], usage: Usage) -> int | None:
        payload = {"model": self.cfg.judge_model, "temperature": 0, "max_tokens": 8,
                   "messages": [{"role": "user", "content": judge_prompt(record, chains)}]}
        data = await self._post(client, payload, usage)
        choices = data.get("choices") or [{}]
        number = re.search(r"\d+", completion_text((choices[0].get("message") or {}).get("content")))
        pick = int(number.group()) - 1 if number else -1
        return pick if 0 <= pick < len(chains) else None

    async def _post(self, client, payload: dict[str, Any], usage: Usage) -> dict[str, Any]:
        """POST with retries on 429/5xx/timeouts; returns the parsed JSON body or raises RequestFailed."""
        import httpx

        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        attempts = self.cfg.max_retries + 1
        for attempt in range(attempts):
            usage.requests += 1
            wait = None
            try:
                response = await client.post(url, json=payload)
            except httpx.TimeoutException:
                reason = "timeout"
            except httpx.TransportError as error:
                reason = f"connection_error ({type(error).__name__})"
            else:
                if response.status_code == 200:
                    return self._body(response, usage)
                reason = f"http_{response.status_code}"
                if not _retryable(response.status_code):
                    raise RequestFailed(f"{reason}: {self._scrub(response.text[:200])}")
                wait = _retry_after(response.headers.get("retry-after"))
            if attempt + 1 == attempts:
                raise RequestFailed(f"{reason} after {attempts} attempts")
            usage.retries += 1
            backoff = self.cfg.backoff_s * 2**attempt * (1 + 0.25 * random.random())
            await asyncio.sleep(min(MAX_BACKOFF_S, wait if wait is not None else backoff))
        raise RequestFailed("no attempt made")  # only reached with max_retries < 0, which config forbids

    def _body(self, response, usage: Usage) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise RequestFailed("bad_response: not JSON") from None
        if not isinstance(data, dict):
            raise RequestFailed("bad_response: not a JSON object")
        tokens = data.get("usage") or {}
        usage.prompt_tokens += int(tokens.get("prompt_tokens") or 0)
        usage.completion_tokens += int(tokens.get("completion_tokens") or 0)
        return data

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.cfg.price_per_1k_prompt_tokens
                + usage.completion_tokens * self.cfg.price_per_1k_completion_tokens) / 1000


def _retryable(status: int) -> bool:
    """Rate limits, request timeouts and server errors pass; other client errors never will."""
    return status in (408, 429) or status >= 500


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _to_cache(record: dict[str, Any], outcome: RowOutcome) -> dict[str, Any]:
    return {
        "id": record.get("id"),
        "candidates": [{"text": c.text, "answer_box": c.answer_box, "answer_image": c.answer_image} for c in outcome.candidates],
        "chosen": outcome.chosen, "scores": outcome.scores, "selected_by": outcome.selected_by,
        "usage": {"prompt_tokens": outcome.usage.prompt_tokens, "completion_tokens": outcome.usage.completion_tokens},
        "extra": outcome.extra,
    }


def _from_cache(index: int, entry: dict[str, Any] | None) -> RowOutcome:
    if entry is None:
        raise KeyError("not cached")
    candidates = [Candidate(c["text"], c.get("answer_box"), c.get("answer_image")) for c in entry["candidates"]]
    chosen = int(entry["chosen"])
    if not 0 <= chosen < len(candidates):
        raise IndexError(f"cached pick {chosen} of {len(candidates)}")
    return RowOutcome(index, candidates, chosen, list(entry["scores"]), entry.get("selected_by", "rule"),
                      cached=True, extra=dict(entry.get("extra") or {}))


def _run_coroutine(coro) -> None:
    """asyncio.run, also from a thread that already runs an event loop (notebooks, async hosts)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
