"""Serving: a real uvicorn server on loopback answering over HTTP, and the MLflow pyfunc wrapper."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pandas as pd
import pytest

from univg.answers import parse_answer
from univg.serve import InputError, Predictor, decode_image, encode_png


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """`univg.serve.serve` in its own process on a free loopback port; killed afterwards."""
    import time

    port = _free_port()
    code = f"from univg.serve import serve; serve({str(tiny_model_dir)!r}, '127.0.0.1', {port})"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("prediction server did not come up in 90 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.integration
def test_health_and_predict_over_http(server, images, tiny_model_dir, tmp_path):
    health = httpx.get(f"{server}/health", timeout=5).json()
    assert health == {"status": "ok", "model": str(tiny_model_dir)}

    request = {"images": [encode_png(im) for im in images], "question": "Find the red circle in image 1."}
    response = httpx.post(f"{server}/predict", json=request, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"response", "box", "image_index"} and isinstance(body["response"], str)
    parsed = parse_answer(body["response"], allow_untagged=True)  # the server used the one parser
    assert body["box"] == (list(parsed.box) if parsed else None)

    # a path works as well as base64, and gives the same (greedy) answer
    path = tmp_path / "red.png"
    images[0].save(path)
    by_path = httpx.post(f"{server}/predict", json={**request, "images": [str(path), request["images"][1]]},
                         timeout=60).json()
    assert by_path == body


@pytest.mark.integration
@pytest.mark.parametrize("request_body, fragment", [
    ({"images": ["bm90IGFuIGltYWdl"], "question": "x"}, "image not found"),  # base64 of "not an image"
    ({"images": [], "question": "Find it."}, "images"),
    ({"images": ["AAAA"], "question": ""}, "question"),
    ({"images": ["AAAA"], "question": "Find it.", "answer_format": "yaml"}, "answer_format"),
])
def test_bad_requests_are_422_with_a_reason(server, images, request_body, fragment):
    if request_body["images"] == ["AAAA"]:
        request_body = {**request_body, "images": [encode_png(images[0])]}
    response = httpx.post(f"{server}/predict", json=request_body, timeout=30)
    assert response.status_code == 422
    assert fragment in response.text


def test_decode_image_refuses_paths_when_asked(tmp_path, images):
    path = tmp_path / "a.png"
    images[0].save(path)
    assert decode_image(str(path)).size == (112, 112)
    assert decode_image("data:image/png;base64," + encode_png(images[1])).getpixel((0, 0)) == (30, 30, 220)
    with pytest.raises(InputError, match="not valid base64"):
        decode_image(str(path), allow_paths=False)


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
