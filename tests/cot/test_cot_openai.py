"""The openai teacher against a real chat-completions server on loopback (tests/cot/fake_openai.py)."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cot_helpers import good_record, read_jsonl, write_lines

from univg.cot.generate import failed_path, generate_cot
from univg.data.naming import last_named_image

SECRET = "sk-test-DO-NOT-LEAK-1234567890"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("UNIVG_TEST_KEY", SECRET)


@pytest.fixture
def records(images) -> Path:
    rows = [good_record(id=f"r{i}", question=f"Question {i}: what changed? Locate it in image 2.",
                        images=["img/a.png", "img/b.png", "img/c.png"][: 2 + i % 2], cot=None)
            for i in range(4)]
    for row in rows:
        row.pop("cot")
    return write_lines(images / "records.jsonl", rows)


def _run(openai_cfg, records, out, model="chain", limit=None, **settings):
    return generate_cot(records, out, openai_cfg(model, **settings), limit=limit)


def test_chains_selection_and_token_tally(openai_cfg, records, tmp_path, fake_openai):
    stats = _run(openai_cfg, records, tmp_path / "cot" / "train.jsonl")
    rows = read_jsonl(tmp_path / "cot" / "train.jsonl")
    assert (stats["rows"], stats["written"], stats["failures"], stats["candidates"]) == (4, 4, 0, 12)
    for row in rows:
        assert "<" not in row["cot"] and last_named_image(row["cot"]) == 2
        info = row["meta"]["cot"]
        assert info["teacher"] == "openai:chain" and info["candidates"] == 3 and len(info["scores"]) == 3
        assert info["answer_box"] == row["box"] and info["answer_image"] == 2
        assert (tmp_path / "cot" / row["images"][0]).is_file()  # paths rebased to the output folder
    assert all(r["body"]["n"] == 3 for r in fake_openai.requests)
    images_sent = sum(len(read_jsonl(records)[i]["images"]) for i in range(4))
    assert stats["prompt_tokens"] == 4 * 50 + 100 * images_sent  # the server's usage, summed
    assert stats["completion_tokens"] == 4 * 3 * 20
    assert stats["cost"] == pytest.approx((stats["prompt_tokens"] * 0.5 + stats["completion_tokens"] * 1.5) / 1000)
    assert stats["requests"] == len(fake_openai.requests) == 4
    assert failed_path(tmp_path / "cot" / "train.jsonl").read_text() == ""


def test_images_go_as_data_urls_and_the_key_as_bearer(openai_cfg, records, tmp_path, fake_openai, images):
    _run(openai_cfg, records, tmp_path / "out.jsonl", limit=1)
    (request,) = fake_openai.requests
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    user = request["body"]["messages"][-1]["content"]
    urls = [part["image_url"]["url"] for part in user if part["type"] == "image_url"]
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    assert base64.b64decode(urls[0].split(",", 1)[1]) == (images / "img" / "a.png").read_bytes()
    text = user[-1]["text"]
    assert "Question 0" in text and "(100,120),(300,340)" in text and "do not know the answer" in text


def test_the_key_is_never_written(openai_cfg, records, tmp_path, fake_openai, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _run(openai_cfg, records, tmp_path / "ok.jsonl")
    _run(openai_cfg, records, tmp_path / "rejected.jsonl", model="reject")  # the server echoes the header
    assert "Bearer ***" in failed_path(tmp_path / "rejected.jsonl").read_text()
    written = [p.read_text() for p in tmp_path.rglob("*.jsonl")]
    captured = capsys.readouterr()
    for text in [*written, caplog.text, captured.out, captured.err]:
        assert SECRET not in text


def test_requests_in_flight_are_bounded(openai_cfg, records, tmp_path, fake_openai):
    stats = _run(openai_cfg, records, tmp_path / "out.jsonl", model="chain+slow0.2", max_concurrency=2)
    assert stats["written"] == 4
    assert fake_openai.max_in_flight == 2  # parallel, but never more than configured


def test_429_and_500_are_retried_until_success(openai_cfg, records, tmp_path, fake_openai):
    stats = _run(openai_cfg, records, tmp_path / "out.jsonl", model="chain+429x2+500x1")
    assert stats["written"] == 4 and stats["failures"] == 0
    assert stats["retries"] == 4 * 3
    assert set(Counter(fake_openai.questions()).values()) == {4}  # 3 errors, then the answer


def test_exhausted_retries_land_in_failed_with_reasons(openai_cfg, records, tmp_path, fake_openai):
    out = tmp_path / "cot" / "out.jsonl"
    stats = _run(openai_cfg, records, out, model="fail", max_retries=2)
    assert (stats["written"], stats["failures"]) == (0, 4)
    assert out.read_text() == ""
    failed = read_jsonl(failed_path(out))
    assert [f["id"] for f in failed] == ["r0", "r1", "r2", "r3"]
    assert all(f["reasons"] == ["http_503 after 3 attempts"] for f in failed)
    assert all((out.parent / f["images"][0]).is_file() for f in failed)
    assert set(Counter(fake_openai.questions()).values()) == {3}


def test_client_errors_are_not_retried(openai_cfg, records, tmp_path, fake_openai):
    stats = _run(openai_cfg, records, tmp_path / "out.jsonl", model="reject")
    assert stats["failures"] == 4 and stats["requests"] == 4 == len(fake_openai.requests)
    assert read_jsonl(failed_path(tmp_path / "out.jsonl"))[0]["reasons"][0].startswith("http_400")


def test_timeouts_are_retried_then_reported(openai_cfg, records, tmp_path, fake_openai):
    stats = _run(openai_cfg, records, tmp_path / "out.jsonl", model="slow1.0", limit=1, max_retries=1, timeout_s=0.25)
    assert stats["failures"] == 1
    assert read_jsonl(failed_path(tmp_path / "out.jsonl"))[0]["reasons"] == ["timeout after 2 attempts"]
    assert len(fake_openai.requests) == 2


def test_endpoint_that_ignores_n_is_topped_up(openai_cfg, records, tmp_path, fake_openai):
    stats = _run(openai_cfg, records, tmp_path / "out.jsonl", model="chain+one", limit=2)
    assert stats["candidates"] == 6 and len(fake_openai.requests) == 6
    first_row = [r["body"]["n"] for r in fake_openai.requests if r["question"].startswith("Question 0")]
    assert first_row == [3, 2, 1]


def test_judge_picks_among_faithful_candidates(openai_cfg, records, tmp_path, fake_openai):
    _run(openai_cfg, records, tmp_path / "out.jsonl", model="chain+wrongfirst", judge_model="judge2")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert all(r["meta"]["cot"]["selected"] == 2 and r["meta"]["cot"]["selected_by"] == "judge" for r in rows)
    assert all(last_named_image(r["cot"]) == 2 for r in rows)
    judge_calls = [r for r in fake_openai.requests if r["body"]["model"] == "judge2"]
    assert len(judge_calls) == 4 and "1." in judge_calls[0]["body"]["messages"][0]["content"]
    # A judge answer that is not a candidate number: the rule score decides.
    _run(openai_cfg, records, tmp_path / "out2.jsonl", model="chain+wrongfirst", judge_model="judge9")
    assert all(r["meta"]["cot"]["selected_by"] == "rule" and r["meta"]["cot"]["selected"] == 1
               for r in read_jsonl(tmp_path / "out2.jsonl"))


def test_resumed_run_serves_finished_rows_from_the_cache(openai_cfg, records, tmp_path, fake_openai):
    first = _run(openai_cfg, records, tmp_path / "out.jsonl", limit=2)
    assert first["written"] == 2 and len(fake_openai.requests) == 2
    fake_openai.reset()
    second = _run(openai_cfg, records, tmp_path / "out.jsonl")
    assert second["cache_hits"] == 2 and second["written"] == 4
    assert fake_openai.questions() and not any(q.startswith(("Question 0", "Question 1")) for q in fake_openai.questions())
    assert second["prompt_tokens"] < first["prompt_tokens"] * 3  # only the new rows were paid for
    fake_openai.reset()
    third = _run(openai_cfg, records, tmp_path / "out.jsonl", temperature=0.2)  # other settings: other keys
    assert third["cache_hits"] == 0 and len(fake_openai.requests) == 4


def test_interrupted_run_resumes_without_redoing_finished_rows(openai_cfg, records, tmp_path, fake_openai):
    """Ctrl-C (SIGINT) in the middle of a real run, then a rerun: finished rows are not requested again."""
    cfg = openai_cfg("chain+slow1.5", max_concurrency=1)  # slow enough that SIGINT lands mid-run on a loaded machine
    out = tmp_path / "out.jsonl"
    script = (
        # A background job starts with SIGINT ignored; restore Python's Ctrl-C handler as a terminal would.
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from pathlib import Path; from univg.config import CotConfig; "
        "from univg.cot.generate import generate_cot; "
        f"generate_cot(Path({str(records)!r}), Path({str(out)!r}), CotConfig.model_validate_json({cfg.model_dump_json()!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "UNIVG_TEST_KEY": SECRET},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = Path(cfg.cache_dir) / "openai-chains.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0, err.decode()[-500:]
    assert not out.exists()  # interrupted before the output was written
    finished = {entry["id"] for entry in map(json.loads, cache.read_text().splitlines())}
    assert 2 <= len(finished) < 4
    fake_openai.reset()
    stats = generate_cot(records, out, cfg)
    assert stats["cache_hits"] == len(finished) and stats["written"] == 4
    asked = {q.split(":")[0] for q in fake_openai.questions()}
    assert not asked & {f"Question {r[1:]}" for r in finished}
    assert len(fake_openai.requests) == 4 - len(finished)


def test_unreadable_image_fails_the_row_without_a_request(openai_cfg, images, tmp_path, fake_openai):
    source = write_lines(images / "bad.jsonl", [good_record(images=["img/a.png", "img/broken.png"])])
    stats = generate_cot(source, tmp_path / "out.jsonl", openai_cfg())
    assert stats["failures"] == 1 and fake_openai.requests == []
    assert read_jsonl(failed_path(tmp_path / "out.jsonl"))[0]["reasons"][0].startswith("image_unreadable")


def test_malformed_and_empty_responses_cost_one_row_each(openai_cfg, records, tmp_path, fake_openai):
    _run(openai_cfg, records, tmp_path / "g.jsonl", model="garbage", limit=1)
    assert read_jsonl(failed_path(tmp_path / "g.jsonl"))[0]["reasons"][0].startswith("teacher_error: AttributeError")
    _run(openai_cfg, records, tmp_path / "e.jsonl", model="empty", limit=1)
    assert read_jsonl(failed_path(tmp_path / "e.jsonl"))[0]["reasons"][0].startswith("empty_response")


def test_a_torn_cache_line_is_ignored(openai_cfg, records, tmp_path, fake_openai):
    cfg = openai_cfg()
    generate_cot(records, tmp_path / "out.jsonl", cfg, limit=2)
    cache = Path(cfg.cache_dir) / "openai-chains.jsonl"
    with open(cache, "a") as handle:
        handle.write('{"key": "abc", "candidates": [{"te')  # a kill in the middle of a write
    fake_openai.reset()
    stats = generate_cot(records, tmp_path / "out.jsonl", cfg)
    assert stats["cache_hits"] == 2 and stats["written"] == 4 and len(fake_openai.requests) == 2
    assert generate_cot(records, tmp_path / "out.jsonl", cfg)["cache_hits"] == 4  # new entries not glued on

