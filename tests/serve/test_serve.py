"""Serving: a real uvicorn process on loopback (OpenAI-compatible chat, grounding, limits, auth,
batching), `univg predict`, and the MLflow pyfunc wrapper."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
from PIL import Image

from univg.answers import parse_answer
from univg.predict import ImageLimits, InputError, Predictor, decode_image, encode_png

API_KEY = "test-key-123"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-images")
    Image.new("RGB", (112, 112), (220, 30, 30)).save(root / "red.png")
    outside = tmp_path_factory.mktemp("outside")
    Image.new("RGB", (112, 112), (0, 0, 0)).save(outside / "secret.png")
    (root / "link.png").symlink_to(outside / "secret.png")
    return root


@pytest.fixture(scope="module")
def server(tiny_model_dir, image_root):
    """`univg serve` in its own process, with a key, a small batch window and small limits."""
    port = _free_port()
    command = [sys.executable, "-m", "univg.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
               "--image-root", str(image_root), "--max-images", "3", "--max-pixels", str(300 * 300),
               "--max-new-tokens", "12", "--max-batch", "8", "--batch-window-ms", "50", "--max-body-mb", "2"]
    env = {**os.environ, "UNIVG_API_KEY": API_KEY}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("prediction server did not come up in 120 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def post(url: str, path: str, body, key: str | None = API_KEY, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes | str):
        return httpx.post(f"{url}{path}", content=body, headers={**headers, "Content-Type": "application/json"},
                          timeout=60, **kwargs)
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60, **kwargs)


def data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + encode_png(image)


@pytest.mark.integration
def test_health_is_open_and_everything_else_needs_the_key(server, images):
    health = httpx.get(f"{server}/health", timeout=5).json()
    assert health["status"] == "ok" and health["answer_format"] == "indexed"
    body = {"images": [encode_png(images[0])], "question": "Find the red circle."}
    assert post(server, "/v1/ground", body, key=None).status_code == 401
    wrong = post(server, "/v1/ground", body, key="test-key-124")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server}/metrics", timeout=5).status_code == 401
    assert post(server, "/v1/ground", body).status_code == 200


@pytest.mark.integration
def test_ground_answers_with_the_one_parser_and_draws_the_box(server, images):
    body = {"images": [encode_png(im) for im in images], "question": "Find the red circle in image 1.", "draw": True}
    answer = post(server, "/v1/ground", body).json()
    parsed = parse_answer(answer["response"], allow_untagged=True)
    assert answer["box"] == (list(parsed.box) if parsed else None)
    assert answer["answer_format"] == "indexed"
    if answer["png"] is not None:
        assert Image.open(io.BytesIO(base64.b64decode(answer["png"]))).size[0] >= 112
    # the first route name still answers, with the same (greedy) answer
    assert post(server, "/predict", body).json()["response"] == answer["response"]
    # a file inside the image root works like base64
    by_path = post(server, "/v1/ground", {**body, "images": ["red.png", encode_png(images[1])]}).json()
    assert by_path["response"] == answer["response"]


@pytest.mark.integration
@pytest.mark.parametrize("make_body, status, fragment", [
    (lambda im: b"{not json", 400, "not valid JSON"),
    (lambda im: b"[1, 2]", 400, "JSON object"),
    (lambda im: {"images": [base64.b64encode(b"plain text, not an image").decode()], "question": "x"}, 422,
     "not a readable image"),
    (lambda im: {"images": [encode_png(Image.new("RGB", (400, 400)))], "question": "x"}, 413, "over the limit"),
    (lambda im: {"images": [encode_png(im)] * 4, "question": "x"}, 413, "4 images"),
    (lambda im: {"images": [], "question": "x"}, 422, "non-empty list"),
    (lambda im: {"images": [encode_png(im)], "question": " "}, 422, "question is empty"),
    (lambda im: {"images": [encode_png(im)], "question": "x", "answer_format": "yaml"}, 422, "unknown answer format"),
    (lambda im: {"images": ["../outside/secret.png"], "question": "x"}, 403, "outside the allowed image root"),
    (lambda im: {"images": ["/etc/hostname"], "question": "x"}, 403, "outside the allowed image root"),
    (lambda im: {"images": ["link.png"], "question": "x"}, 403, "outside the allowed image root"),
    (lambda im: {"images": ["missing.png"], "question": "x"}, 404, "no such file"),
])
def test_bad_requests_get_a_4xx_with_a_reason(server, images, make_body, status, fragment):
    response = post(server, "/v1/ground", make_body(images[0]))
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


@pytest.mark.integration
def test_body_over_the_limit_is_413(server):
    response = post(server, "/v1/ground", b"{" + b" " * (3 << 20) + b"}")
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]


@pytest.mark.integration
def test_openai_client_talks_to_the_server(server, images):
    openai = pytest.importorskip("openai")

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY)
    content = [{"type": "image_url", "image_url": {"url": data_url(images[0])}},
               {"type": "text", "text": "Find the red circle."}]
    completion = client.chat.completions.create(model="univg", messages=[{"role": "user", "content": content}],
                                                max_tokens=6)
    assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
    assert isinstance(completion.choices[0].message.content, str)
    usage = completion.usage
    assert usage.prompt_tokens > 16 and 1 <= usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="nope").chat.completions.create(
            model="univg", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="data: URL"):
        client.chat.completions.create(model="univg", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}])


@pytest.mark.integration
def test_the_projects_openai_teacher_talks_to_the_server(server, tmp_path, monkeypatch):
    """The CoT teacher of this project, pointed at the server, gets well-formed candidates back."""
    from univg.config import OpenAITeacherConfig
    from univg.cot.openai_teacher import OpenAITeacher

    monkeypatch.setenv("UNIVG_TEST_KEY", API_KEY)
    for k, colour in enumerate(((220, 30, 30), (30, 30, 220))):
        Image.new("RGB", (112, 112), colour).save(tmp_path / f"{k}.png")
    records = [{"id": f"r{k}", "task": "diff", "images": ["0.png", "1.png"], "question": "Find the blue square.",
                "target_image": 2, "box": [100, 100, 400, 400], "source": "test"} for k in range(2)]
    base = tmp_path
    cfg = OpenAITeacherConfig(base_url=f"{server}/v1", model="univg", api_key_env="UNIVG_TEST_KEY", max_tokens=16,
                              max_retries=0, timeout_s=60)
    outcomes = OpenAITeacher(cfg, num_candidates=2).run(records, base)
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert not outcome.failure, outcome.failure
        assert len(outcome.candidates) == 2  # n=2: one request, two (greedy, so equal) choices


@pytest.mark.integration
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, images):
    colours = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (200, 200, 30), (200, 30, 200), (30, 200, 200)]
    bodies = [{"images": [encode_png(Image.new("RGB", (112, 112), c))], "question": f"Find shape {k} in image 1."}
              for k, c in enumerate(colours * 2)]
    alone = [post(server, "/v1/ground", body).json()["response"] for body in bodies]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda body: post(server, "/v1/ground", body).json()["response"], bodies))
    assert together == alone  # each answer is its own request's, as if it had run alone
    metrics = httpx.get(f"{server}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5).text
    count = int(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("univg_batch_size_count")))
    requests = int(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("univg_batch_size_sum")))
    assert count < requests  # some requests shared a generate() call
    assert 'univg_requests_total{route="/v1/ground",status="200"}' in metrics and "univg_queue_depth" in metrics


def test_predict_command_prints_the_answer_and_draws_it(tiny_model_dir, images, tmp_path):
    from typer.testing import CliRunner

    from univg.cli import app

    paths = []
    for k, image in enumerate(images):
        paths += ["--image", str(tmp_path / f"{k}.png")]
        image.save(tmp_path / f"{k}.png")
    out = tmp_path / "drawn.png"
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_model_dir), *paths, "--query",
                                      "Find the red circle in image 1.", "--out", str(out), "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output[result.output.index("{"):])
    assert {"response", "reasoning", "box", "box_pixels", "image_index"} <= set(answer)
    assert out.is_file() == (answer.get("drawn") == str(out))
    missing = CliRunner().invoke(app, ["predict", "--model", str(tiny_model_dir), "--image", str(tmp_path / "nope.png"),
                                       "--query", "x"])
    assert missing.exit_code != 0 and "no such file" in missing.output and "Traceback" not in missing.output


def test_decode_image_limits(tmp_path, images):
    path = tmp_path / "a.png"
    images[0].save(path)
    allowed = ImageLimits(image_root=tmp_path)
    assert decode_image("a.png", allowed).size == (112, 112)
    assert decode_image("data:image/png;base64," + encode_png(images[1])).getpixel((0, 0)) == (30, 30, 220)
    with pytest.raises(InputError, match="file paths are refused"):
        decode_image(str(path))
    with pytest.raises(InputError, match="over the limit"):
        decode_image(encode_png(images[0]), ImageLimits(max_pixels=100))


def test_pyfunc_model_predicts_like_the_predictor(tiny_model_dir, images, tmp_path, mlflow_uri):
    import mlflow

    from univg.config import Params
    from univg.tracking import log_model_checkpoint, stage_run

    params = Params()
    params.tracking.uri = mlflow_uri
    with stage_run("grpo", params):
        uri = log_model_checkpoint(tiny_model_dir, name="model")
    loaded = mlflow.pyfunc.load_model(uri)
    frame = pd.DataFrame({"images": [[encode_png(im) for im in images]], "question": ["Find the red circle in image 2."]})
    responses = loaded.predict(frame)
    expected = Predictor(tiny_model_dir).predict(images, "Find the red circle in image 2.")["response"]
    assert list(responses) == [expected]


class _BlockingPredictor:
    """Stands in for the model in the batching unit test: generate() waits until released."""

    def __init__(self):
        import threading

        self.release, self.calls = threading.Event(), []

    def generate(self, conversations, max_new_tokens=None):
        from univg.models.generation import Generation

        self.release.wait(10)
        self.calls.append(len(conversations))
        return [Generation(f"reply {c[0][0]['content']}", 3, 1) for c in conversations]


def test_a_full_queue_is_refused_and_waiting_jobs_run_as_one_batch():
    from univg.serve import Batcher, Job, Metrics, Overloaded, ServeSettings

    predictor = _BlockingPredictor()
    batcher = Batcher(predictor, ServeSettings(max_batch=8, max_queue=3, batch_window_ms=0), Metrics())
    first = batcher.submit(Job([{"content": "a"}], [], 4))
    time.sleep(0.2)  # the worker has taken the first job and is blocked in generate()
    waiting = [batcher.submit(Job([{"content": name}], [], 4)) for name in "bcd"]
    with pytest.raises(Overloaded, match="3 requests are already waiting"):
        batcher.submit(Job([{"content": "e"}], [], 4))
    predictor.release.set()
    assert first.result(10).text == "reply a"
    assert [f.result(10).text for f in waiting] == ["reply b", "reply c", "reply d"]
    assert predictor.calls == [1, 3]  # the three that waited shared one generate() call
