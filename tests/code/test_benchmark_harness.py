"""The arithmetic behind `make bench`: FLOP counting by parameter group, the step timer's window, the table.

Nothing here times anything; it checks that the figures are computed from the right quantities.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their siblings by name

hardware = pytest.importorskip("hardware")
bench_common = pytest.importorskip("bench_common")
run_all = pytest.importorskip("run_all")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    from univg.config import Params
    from univg.models.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny") / "base"
    build_tiny_model(Params().model, ["a red circle", "a blue square"], folder)
    return AutoModelForImageTextToText.from_pretrained(folder)


def test_parameter_groups_cover_every_matmul_weight_once(tiny_model):
    groups = hardware.parameter_groups(tiny_model)
    embedding = tiny_model.get_input_embeddings().weight.numel()
    assert sum(groups.values()) == sum(p.numel() for p in tiny_model.parameters()) - embedding
    assert groups["head"] == tiny_model.get_output_embeddings().weight.numel()
    assert groups["merger"] == sum(p.numel() for p in tiny_model.model.visual.merger.parameters())
    assert groups["vision"] + groups["merger"] == sum(p.numel() for p in tiny_model.model.visual.parameters())


def test_vision_flops_follow_patches_and_text_flops_follow_tokens(tiny_model):
    groups = hardware.parameter_groups(tiny_model)
    one = hardware.sample_flops(tiny_model, tokens=100, image_patches=[64])
    assert one["vision"] == 6 * groups["vision"] * 64
    assert one["merger"] == 6 * groups["merger"] * 64 / 4  # 2x2 merge
    assert one["text"] == 6 * groups["text"] * 100 and one["head"] == 6 * groups["head"] * 100
    two_images = hardware.sample_flops(tiny_model, tokens=100, image_patches=[64, 64])
    assert two_images["vision"] == 2 * one["vision"] and two_images["text"] == one["text"]
    # each image attends over its own patches: two images of 64 cost less than one of 128
    assert two_images["attention"] < hardware.sample_flops(tiny_model, 100, [128])["attention"]


def _step(timer, method, step, **extra):
    getattr(timer, method)(None, SimpleNamespace(global_step=step), None, **extra)


def test_step_timer_counts_from_step_end_to_step_end_and_drops_the_first(monkeypatch):
    clock = iter([0.0, 5.0, 6.0, 8.0, 11.0])  # train begin, then the ends of steps 1..4
    monkeypatch.setattr(bench_common.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(bench_common.time, "process_time", lambda: 0.0)
    timer = bench_common.StepTimer()
    _step(timer, "on_train_begin", 0)
    for step in range(1, 5):
        _step(timer, "on_step_end", step)
        if step in (1, 4):
            _step(timer, "on_log", step, logs={"num_tokens": 100.0 * step})
    assert timer.wall == [1.0, 2.0, 3.0]  # step 1 (5 s of start-up) is not a steady step
    steps, wall, _, tokens = timer.window()
    assert (steps, wall, tokens) == (3, 6.0, 300.0)


def test_step_timer_window_needs_two_logs():
    timer = bench_common.StepTimer()
    _step(timer, "on_step_end", 1)
    _step(timer, "on_log", 1, logs={"num_tokens": 5.0})
    with pytest.raises(ValueError, match="two logged steps"):
        timer.window()


def test_the_table_reads_the_last_json_a_script_printed_and_shows_skips_and_errors():
    printed = "{'loss': 1.0}\nnoise\n" + '{"a": {"b": 1}}\n{"median_s": 1.5, "target_s": 3.0}\n'
    assert run_all.last_json(printed) == {"median_s": 1.5, "target_s": 3.0}
    rows = run_all._noop(run_all.last_json(printed))
    text = run_all.table([{"name": "dvc_noop", "rows": rows, "load_average_1min": 0.5},
                          {"name": "flow_overhead", "skipped": "pipeline not up to date"},
                          {"name": "serve_load", "error": "boom"}])
    assert "| no-op dvc repro (s, median) | 1.5 | 3.0 | 0.5 | <= 3 s | 0.5 |" in text
    assert "pipeline not up to date" in text and "error: boom" in text
