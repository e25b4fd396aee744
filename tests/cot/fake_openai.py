"""A real HTTP server on loopback that speaks the chat-completions protocol, for the teacher tests.

Behaviour is chosen by the request's `model`, as '+'-joined tokens (default: well-behaved):
  429x<k> / 500x<k>   the next k attempts for each question answer 429 (Retry-After: 0) / 500,
                      in token order (429x2+500x1: 429, 429, 500, then the answer)
  fail                every attempt answers 503
  reject              every attempt answers 400 (not retryable), echoing the Authorization header
  slow<s>             sleep s seconds before answering (timeouts, interrupt tests)
  one                 ignore `n`: always a single choice (the client must top up)
  wrongfirst          choice 0 concludes with the wrong image
  badbox              every answer box is far from the ground truth
  judge<k>            a judge: answers "<k>" (1-based pick)
  garbage / empty     200 with choices that are not objects / whose content is blank
Chains are deterministic: built from the target image and box stated in the prompt. Every
request is recorded (headers, body) so tests can count them and inspect what was sent, and the
most requests ever in flight at once is kept (max_in_flight).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TARGET = re.compile(r"The answer is in image (\d+), bounding box \((\d+),(\d+)\),\((\d+),(\d+)\)")
_QUESTION = re.compile(r"Question: (.*)")


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.attempts: dict[tuple[str, str], int] = {}
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.attempts.clear()
            self.in_flight = self.max_in_flight = 0

    def questions(self, model_prefix: str = "") -> list[str]:
        """The question of every recorded request (in arrival order), optionally for one model."""
        return [r["question"] for r in self.requests if r["body"].get("model", "").startswith(model_prefix)]

    # -- behaviour
    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        model = str(body.get("model", ""))
        tokens = model.split("+")
        text = _prompt_text(body)
        question = (_QUESTION.search(text) or re.search(r"(.*)", text)).group(1)
        with self.lock:
            key = (model, question)
            self.attempts[key] = attempt = self.attempts.get(key, 0) + 1
        for token in tokens:
            if token.startswith("slow"):
                time.sleep(float(token[4:]))
        errors_before = 0  # error tokens apply in order: "429x2+500x1" = 429, 429, 500, then success
        for token in tokens:
            for code in ("429", "500"):
                if token.startswith(f"{code}x"):
                    errors_before += int(token[4:])
                    if attempt <= errors_before:
                        return int(code), {"Retry-After": "0"}, {"error": {"message": f"fake {code}"}}
            if token == "fail":
                return 503, {}, {"error": {"message": "fake overload"}}
        if "garbage" in tokens:
            return 200, {}, {"choices": ["not a choice object"]}
        if "empty" in tokens:
            return 200, {}, _completion(model, ["", "   "], prompt_tokens=10)
        judge = next((t for t in tokens if t.startswith("judge")), None)
        if judge:
            return 200, {}, _completion(model, [judge[5:] or "1"], prompt_tokens=30)
        found = _TARGET.search(text)
        if not found:
            return 400, {}, {"error": {"message": "prompt states no answer"}}
        target, box = int(found.group(1)), [int(v) for v in found.groups()[1:]]
        n = 1 if "one" in tokens else int(body.get("n") or 1)
        contents = [_chain(i, target, box, tokens) for i in range(n)]
        images = sum(1 for part in _user_parts(body) if part.get("type") == "image_url")
        return 200, {}, _completion(model, contents, prompt_tokens=50 + 100 * images)


def _chain(i: int, target: int, box: list[int], tokens: list[str]) -> str:
    named = target + 1 if ("wrongfirst" in tokens and i == 0) else target
    if "badbox" in tokens:
        box = [0, 0, 10, 10]
    openers = ["Image 1 shows the scene.", "Looking at every image in turn.", "Comparing the images."]
    return (f"<think>{openers[i % 3]} The object asked for is clearly visible in image {named}.</think>"
            f"<answer>Image-{named}: ({box[0]},{box[1]}),({box[2]},{box[3]})</answer>")


def _completion(model: str, contents: list[str], prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
                    for i, c in enumerate(contents)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 20 * len(contents),
                  "total_tokens": prompt_tokens + 20 * len(contents)},
    }


def _user_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, dict))
        elif isinstance(content, str):
            parts.append({"type": "text", "text": content})
    return parts


def _prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(p.get("text", "") for p in _user_parts(body) if p.get("type") == "text")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.fake.lock:
            self.fake.requests.append({
                "path": self.path, "headers": dict(self.headers), "body": body,
                "question": (_QUESTION.search(_prompt_text(body)) or re.search(r"(.*)", _prompt_text(body))).group(1),
            })
        if self.path != "/v1/chat/completions":
            status, headers, payload = 404, {}, {"error": {"message": "not found"}}
        elif "reject" in str(body.get("model", "")).split("+"):
            status, headers, payload = 400, {}, {"error": {"message": f"bad key {self.headers.get('Authorization')}"}}
        else:
            with self.fake.lock:
                self.fake.in_flight += 1
                self.fake.max_in_flight = max(self.fake.max_in_flight, self.fake.in_flight)
            try:
                status, headers, payload = self.fake.respond(body)
            finally:
                with self.fake.lock:
                    self.fake.in_flight -= 1
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer


if __name__ == "__main__":  # run by hand: python tests/cot/fake_openai.py
    fake = FakeOpenAI().start()
    print(fake.base_url, flush=True)
    fake.thread.join()
