"""The HTML report: charts, drawn samples (GT green, prediction red), reasoning, bad images survive."""

from __future__ import annotations

import re

from PIL import Image

from univg.data.benchmarks import load_benchmark
from univg.eval.report import GT_COLOR, PRED_COLOR, pick_samples, reasoning_text, write_report
from univg.eval.scoring import score_records

PREDICTIONS = {
    0: {"index": 0, "response": "<think>The shared <object> is the square.</think>"
                                "<answer>Image-2: (150,250),(550,650)</answer>"},
    1: {"index": 1, "response": "<answer>Image-1: (0,0),(250,500)</answer>"},
    2: {"index": 2, "response": "Image-1: (250,250),(750,550)"},  # names image 1: drawn there
    3: {"index": 3, "response": "", "error": "image not decodable: corrupt.png"},
}


def build(tmp_path, fixtures, max_samples=24):
    # images unchecked at load: the report's own placeholder for a corrupt image is under test
    bench = load_benchmark("mig-synth", fixtures / "mig_synth.jsonl", check_images=False)
    metrics, scores = score_records(bench, PREDICTIONS, n_bootstrap=100)
    return write_report(tmp_path / "report", bench, scores, metrics, "test report", max_samples), scores


def has_color(path, color) -> bool:
    return color in {rgb for _, rgb in Image.open(path).convert("RGB").getcolors(1 << 16)}


def test_report_exists_and_references_its_images(tmp_path, fixtures):
    page, _ = build(tmp_path, fixtures)
    html = page.read_text()
    sources = re.findall(r"<img src='([^']+)'", html)
    assert "per_task.png" in sources and "iou_hist.png" in sources
    assert len([s for s in sources if s.startswith("samples/")]) == 9  # 4 drawable samples, 2+3+2+2 images
    for source in sources:
        assert (page.parent / source).is_file(), source
    assert "The shared &lt;object&gt; is the square." in html  # reasoning shown, escaped
    assert "image not decodable" in html and "bootstrap 95% intervals: acc@0.3 [" in html


def test_boxes_are_drawn_in_their_colours_on_the_right_images(tmp_path, fixtures):
    page, _ = build(tmp_path, fixtures)
    samples = page.parent / "samples"
    assert has_color(samples / "00000_2.png", GT_COLOR) and has_color(samples / "00000_2.png", PRED_COLOR)
    assert not has_color(samples / "00000_1.png", PRED_COLOR)
    # sample 2 targets image 2 but its answer named image 1: the red box goes there
    assert has_color(samples / "00002_1.png", PRED_COLOR) and not has_color(samples / "00002_2.png", PRED_COLOR)
    assert has_color(samples / "00002_2.png", GT_COLOR)


def test_corrupt_image_becomes_a_placeholder(tmp_path, fixtures):
    page, _ = build(tmp_path, fixtures)
    placeholder = Image.open(page.parent / "samples" / "00003_2.png")
    assert placeholder.getpixel((200, 100)) == (150, 150, 150)


def test_sample_selection_is_bounded_and_spans_tasks(tmp_path, fixtures):
    _, scores = build(tmp_path, fixtures)
    picked = pick_samples(scores, 2)
    assert len(picked) == 2 and {s.task for s in picked} == {"common_object", "diff"}
    assert all(s.status != "quarantined" for s in pick_samples(scores, 100))


def test_reasoning_text():
    assert reasoning_text("<think> a b </think><answer>x</answer>") == "a b"
    assert reasoning_text("<think>cut off") == "cut off"
    assert reasoning_text("plain") == "plain"
