"""Scoring contract: every parsing rule through `score_file`, misses, n, per-task arithmetic, coords."""

from __future__ import annotations

import json

import pytest
from eval_helpers import synth_record, write_lines

from univg.eval.scoring import score_file, to_norm1000


def score_one(tmp_path, response, answer_format=None, record=None, benchmark="mig-synth", annotations=None):
    """Score a single prediction against one record (target Image-2, box (100,100),(300,300))."""
    annotations = annotations or write_lines(tmp_path / "ann.jsonl", [record or synth_record(0)])
    predictions = write_lines(tmp_path / "pred.jsonl", [{"index": 0, "response": response}])
    return score_file(benchmark, annotations, predictions, tmp_path / "out.json", answer_format=answer_format,
                      n_bootstrap=0)


# ----------------------------------------------------------------------------- parsing rules
@pytest.mark.parametrize(
    ("response", "answer_format", "expected_iou"),
    [
        ("<think>t</think><answer>Image-2: (100,100),(300,300)</answer>", "indexed", 1.0),
        ("<think>t</think><answer>Image-2: (100, 100), (300, 300)</answer>", "indexed", 1.0),  # spaces after commas
        ("The object is Image-2: (100,100),(300,300)", "indexed", 1.0),  # tag-less text of a base model
        ("(100,100),(300,300)", "univg-r1", 1.0),  # tag-less, no index, index not scored
        ("<think>it is Image-2: (100,100),(300,300)</think> done", "indexed", 0.0),  # tag-less: think removed
        ("<think>t</think><answer>Image-2: (100,100),(300,300)", "indexed", 0.0),  # unclosed answer -> miss
        ("<think>Image-2: (100,100),(300,300)</think><answer>Image-2: (0,0),(10,10)</answer>", "indexed", 0.0),
        ("<think>(100,100),(300,300)</think><answer>no box here</answer>", "univg-r1", 0.0),
        ("<answer>Image-2: (100,100),(200,300)</answer><answer>Image-2: (100,100),(300,300)</answer>", "indexed", 0.5),
        ("<answer>Image-1: (100,100),(300,300)</answer>", "indexed", 0.0),  # wrong image index
        ("<answer>(100,100),(300,300)</answer>", "indexed", 0.0),  # missing image index
        ("<answer>Image-1: (100,100),(300,300)</answer>", "univg-r1", 1.0),  # index ignored
        ("<answer>Image-2: (300,300),(100,100)</answer>", "indexed", 0.0),  # inverted predicted box
    ],
)
def test_parsing_rules_through_scoring(tmp_path, response, answer_format, expected_iou):
    metrics = score_one(tmp_path, response, answer_format)
    assert metrics["miou"] == pytest.approx(expected_iou)
    assert metrics["acc@0.5"] == (1.0 if expected_iou >= 0.5 else 0.0)


def test_wrong_index_keeps_box_iou_for_diagnosis(tmp_path):
    metrics = score_one(tmp_path, "<answer>Image-1: (100,100),(300,300)</answer>", "indexed")
    row = json.loads((tmp_path / "out.per_sample.jsonl").read_text())
    assert (row["status"], row["iou"], row["box_iou"], row["pred_image"]) == ("wrong_image", 0.0, 1.0, 1)
    assert metrics["index_acc"] == 0.0 and metrics["parsed"] == 1.0


def test_chat_message_response_is_accepted(tmp_path):
    message = [{"role": "assistant", "content": "<answer>Image-2: (100,100),(300,300)</answer>"}]
    assert score_one(tmp_path, message)["acc@0.7"] == 1.0


def test_mig_bench_ignores_the_image_index_even_in_indexed_mode(tmp_path):
    row = {"task": "diff", "images": ["a.png", "b.png"], "question": "Find it in the second image.",
           "answer": [0.1, 0.1, 0.3, 0.3], "additional_info": "", "need_format": True}
    annotations = tmp_path / "bench.json"
    annotations.write_text(json.dumps([row]))
    for fmt in ("indexed", "univg-r1", None):
        metrics = score_one(tmp_path, "<answer>Image-1: (100,100),(300,300)</answer>", fmt, benchmark="mig-bench",
                            annotations=annotations)
        assert metrics["acc@0.5"] == 1.0 and metrics["image_index_scored"] is False


def test_default_answer_format_per_benchmark(tmp_path):
    # mig-synth defaults to indexed: a bare box is a miss; index_acc is reported.
    metrics = score_one(tmp_path, "<answer>(100,100),(300,300)</answer>")
    assert metrics["answer_format"] == "indexed" and metrics["acc@0.5"] == 0.0 and "index_acc" in metrics


# ----------------------------------------------------------------------------- counting
def test_hand_computed_example(tmp_path, fixtures):
    """mig_synth.jsonl: s0,s1 common_object; s2,s3,bad(quarantined) diff; one malformed line (no task)."""
    predictions = write_lines(tmp_path / "pred.jsonl", [
        {"index": 0, "response": "<think>x</think><answer>Image-2: (100,200),(500,600)</answer>"},  # IoU 1
        {"index": 1, "response": "<answer>Image-1: (0,0),(250,500)</answer>"},  # IoU 0.5
        {"index": 2, "response": "Image-2: (250,250),(750,550)"},  # untagged, IoU 0.6
        {"index": 3, "response": "", "error": "image not decodable: corrupt.png"},
        {"index": 4, "response": "<answer>Image-1: (100,100),(500,500)</answer>"},  # quarantined row
        # index 5 (malformed annotation line) has no prediction at all
    ])
    metrics = score_file("mig-synth", fixtures / "mig_synth.jsonl", predictions, tmp_path / "m.json", n_bootstrap=200)
    assert metrics["n"] == 6
    assert metrics["acc@0.3"] == pytest.approx(3 / 6)
    assert metrics["acc@0.5"] == pytest.approx(3 / 6)
    assert metrics["acc@0.7"] == pytest.approx(1 / 6)
    assert metrics["miou"] == pytest.approx(2.1 / 6)
    assert metrics["per_task"]["common_object"] == pytest.approx(
        {"acc@0.3": 1.0, "acc@0.5": 1.0, "acc@0.7": 0.5, "miou": 0.75, "n": 2})
    assert metrics["per_task"]["diff"] == pytest.approx(
        {"acc@0.3": 1 / 3, "acc@0.5": 1 / 3, "acc@0.7": 0.0, "miou": 0.2, "n": 3})
    assert metrics["avg"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert (metrics["errors"], metrics["quarantined"], metrics["missing"]) == (1, 2, 0)
    assert metrics["index_acc"] == pytest.approx(3 / 6)
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 6
    assert len((tmp_path / "m.per_sample.jsonl").read_text().splitlines()) == 6


def test_missing_predictions_are_misses_and_n_counts_all_records(tmp_path):
    records = [synth_record(i, task="a" if i < 3 else "b") for i in range(5)]
    annotations = write_lines(tmp_path / "ann.jsonl", records)
    predictions = write_lines(tmp_path / "pred.jsonl", [
        {"index": 0, "response": "<answer>Image-2: (100,100),(300,300)</answer>"},
        {"index": 4, "response": "<answer>Image-2: (100,100),(300,300)</answer>"},
    ])
    metrics = score_file("mig-synth", annotations, predictions, n_bootstrap=0)
    assert metrics["n"] == 5 and metrics["missing"] == 3
    assert metrics["acc@0.5"] == pytest.approx(2 / 5)
    assert metrics["per_task"]["a"]["acc@0.5"] == pytest.approx(1 / 3)
    assert metrics["per_task"]["b"]["acc@0.5"] == pytest.approx(1 / 2)
    assert metrics["avg"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_bad_prediction_lines_are_reported_not_dropped_silently(tmp_path):
    annotations = write_lines(tmp_path / "ann.jsonl", [synth_record(0), synth_record(1)])
    predictions = write_lines(tmp_path / "pred.jsonl", [
        "{not json",
        {"index": 7, "response": "x"},
        {"response": "no index"},
        {"index": 0, "response": "<answer>Image-2: (100,100),(300,300)</answer>"},
        {"index": 0, "response": "<answer>Image-2: (0,0),(1,1)</answer>"},
    ])
    metrics = score_file("mig-synth", annotations, predictions, n_bootstrap=0)
    assert metrics["prediction_problems"]["count"] == 4
    assert metrics["acc@0.5"] == 0.5  # the first prediction for index 0 is scored


def test_missing_files_raise_clear_errors(tmp_path):
    annotations = write_lines(tmp_path / "ann.jsonl", [synth_record(0)])
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        score_file("mig-synth", annotations, tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="annotation file not found"):
        score_file("mig-synth", tmp_path / "nope.jsonl", annotations)
    with pytest.raises(ValueError, match="unknown benchmark"):
        score_file("no-such-bench", annotations, annotations)


# ----------------------------------------------------------------------------- coordinates
def test_mig_bench_unit_floats_and_revised_ints_score_alike(tmp_path, fixtures):
    responses = ["(100,200),(500,600)", "(250,250),(750,1000)", "(0,0),(500,500)", "(300,300),(600,600)",
                 "(100,100),(200,200)"]
    predictions = write_lines(tmp_path / "p.jsonl", [{"index": i, "response": r} for i, r in enumerate(responses)])
    original = score_file("mig-bench", fixtures / "mig_bench.json", predictions, n_bootstrap=0)
    assert original["n"] == 6 and original["quarantined"] == 1  # the row with no answer
    assert original["acc@0.7"] == pytest.approx(5 / 6)  # 1.02 was clamped to 1000
    revised_predictions = write_lines(tmp_path / "r.jsonl", [{"index": i, "response": r} for i, r in
                                                             enumerate(responses[:2] + ["(1,1),(2,2)"])])
    revised = score_file("mig-bench", fixtures / "mig_bench_revised.json", revised_predictions, n_bootstrap=0)
    assert revised["miou"] == pytest.approx(1.0)


def test_unit_answers_are_scaled_not_rounded(tmp_path):
    row = {"task": "diff", "images": ["a.png"], "question": "q", "answer": [0.1234, 0.1, 0.5, 0.5]}
    annotations = tmp_path / "b.json"
    annotations.write_text(json.dumps([row]))
    metrics = score_one(tmp_path, "(123,100),(500,500)", benchmark="mig-bench", annotations=annotations)
    expected = (500 - 123.4) * 400 / ((500 - 123) * 400)
    assert metrics["miou"] == pytest.approx(expected, abs=1e-9)


def test_pixel_coords_use_the_target_image_size(tmp_path, fixtures):
    # s0's target image b.png is 30x30 pixels: (3,6),(15,18) pixels == (100,200),(500,600) in 0..1000.
    predictions = write_lines(tmp_path / "p.jsonl", [{"index": 0, "response": "Image-2: (3,6),(15,18)"}])
    metrics = score_file("mig-synth", fixtures / "mig_synth.jsonl", predictions, coords="pixels", n_bootstrap=0)
    assert metrics["per_task"]["common_object"]["miou"] == pytest.approx(0.5)  # s0 hit (1.0), s1 missing


def test_qwen25_absolute_pixels_of_the_resized_image(tmp_path):
    # A 1000x500 image: Qwen2.5-VL resizes it to 1008x504 (multiples of 28), and answers in those pixels.
    record = synth_record(0, box=(250, 250, 750, 750), target=1, meta={"image_size": [1000, 500]})
    annotations = write_lines(tmp_path / "ann.jsonl", [record])
    response = "<answer>(252,126),(756,378)</answer>"
    assert score_one(tmp_path, response, "univg-r1", annotations=annotations)["miou"] < 0.5  # read as 0..1000
    predictions = write_lines(tmp_path / "pred.jsonl", [{"index": 0, "response": response}])
    as_pixels = score_file("mig-synth", annotations, predictions, coords="pixels", answer_format="univg-r1",
                           n_bootstrap=0)
    assert as_pixels["miou"] < 0.99
    qwen25 = score_file("mig-synth", annotations, predictions, coords="qwen25", answer_format="univg-r1",
                        n_bootstrap=0)
    assert qwen25["miou"] == pytest.approx(1.0)


def test_to_norm1000_conversions():
    assert to_norm1000([10, 20, 30, 40], "norm1000") == [10.0, 20.0, 30.0, 40.0]
    assert to_norm1000([50, 25, 100, 50], "pixels", (200, 100)) == [250.0, 250.0, 500.0, 500.0]
    # smart_resize(224, 224) keeps 224x224 (already multiples of 28 and within limits)
    assert to_norm1000([112, 56, 224, 224], "qwen25", (224, 224)) == [500.0, 250.0, 1000.0, 1000.0]
    with pytest.raises(ValueError):
        to_norm1000([1, 2, 3, 4], "pixels")


def test_unreadable_size_for_pixel_coords_is_an_error_not_a_crash(tmp_path):
    annotations = write_lines(tmp_path / "ann.jsonl", [synth_record(0, images=["gone1.png", "gone2.png"])])
    predictions = write_lines(tmp_path / "pred.jsonl", [{"index": 0, "response": "Image-2: (1,1),(5,5)"}])
    metrics = score_file("mig-synth", annotations, predictions, coords="pixels", n_bootstrap=0)
    assert metrics["errors"] == 1 and metrics["acc@0.3"] == 0.0


# ----------------------------------------------------------------------------- intervals
def test_ci95_brackets_the_point_estimates(tmp_path):
    records = [synth_record(i, task=("a", "b")[i % 2]) for i in range(40)]
    annotations = write_lines(tmp_path / "ann.jsonl", records)
    good, bad = "<answer>Image-2: (100,100),(300,300)</answer>", "<answer>Image-2: (0,0),(50,50)</answer>"
    predictions = write_lines(tmp_path / "p.jsonl", [{"index": i, "response": good if i % 3 else bad}
                                                     for i in range(40)])
    metrics = score_file("mig-synth", annotations, predictions, n_bootstrap=500)
    for key in ("acc@0.3", "acc@0.5", "acc@0.7", "miou", "avg"):
        lo, hi = metrics["ci95"][key]
        assert lo <= metrics[key] <= hi and lo < hi


def test_coords_aliases_and_unit_predictions_are_refused(tmp_path):
    record = synth_record(0, box=(250, 250, 750, 750), target=1, meta={"image_size": [1000, 500]})
    annotations = write_lines(tmp_path / "ann.jsonl", [record])
    predictions = write_lines(tmp_path / "pred.jsonl", [{"index": 0, "response": "(252,126),(756,378)"}])
    metrics = score_file("mig-synth", annotations, predictions, coords="qwen25-abs", answer_format="univg-r1",
                         n_bootstrap=0)
    assert metrics["miou"] == pytest.approx(1.0) and metrics["coords"] == "qwen25"
    with pytest.raises(ValueError, match="integer boxes only"):
        score_file("mig-synth", annotations, predictions, coords="unit")
    with pytest.raises(ValueError, match="unknown coords"):
        score_file("mig-synth", annotations, predictions, coords="furlongs")


def test_per_sample_rows_pair_across_models(tmp_path, fixtures):
    """Every row has a unique id (quarantined ones too): the promotion gate pairs models by id."""
    from univg.registry import read_hits

    predictions = write_lines(tmp_path / "p.jsonl", [{"index": 0, "response": "Image-2: (100,200),(500,600)"}])
    score_file("mig-synth", fixtures / "mig_synth.jsonl", predictions, tmp_path / "m.json", n_bootstrap=0)
    rows = [json.loads(line) for line in (tmp_path / "m.per_sample.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows) == 6
    assert all({"index", "id", "task", "iou", "hit@0.5", "status"} <= set(r) for r in rows)
    hits = read_hits(tmp_path / "m.per_sample.jsonl")
    assert sum(hits.values()) == 1.0 and len(hits) == 6


def test_quarantined_rows_are_json_ready(tmp_path, fixtures):
    from univg.data.benchmarks import load_benchmark
    from univg.schema import write_jsonl

    loaded = load_benchmark("mig-synth", fixtures / "mig_synth.jsonl")  # row 3's image is corrupt
    assert write_jsonl(tmp_path / "q.jsonl", loaded.quarantined) == 3
    assert [json.loads(line)["index"] for line in (tmp_path / "q.jsonl").read_text().splitlines()] == [3, 4, 5]


# ----------------------------------------------------------------------------- pinned by mutation testing
def _bench(tmp_path, rows, name="mig-synth"):
    from univg.data.benchmarks import load_benchmark

    return load_benchmark(name, write_lines(tmp_path / "bench.jsonl", rows), check_images=False)


def test_prediction_problems_name_each_line_exactly(tmp_path):
    from univg.eval.scoring import read_predictions

    path = write_lines(tmp_path / "p.jsonl", [
        "{broken", [1], {"response": "x"}, {"index": -1}, {"index": 2}, {"index": 0, "response": "a"},
        {"index": 0, "response": "b"}, {"index": 1}, {"index": 1, "error": "boom"}])
    rows, problems = read_predictions(path, total=2)
    assert problems[0].startswith("p.jsonl:1: malformed JSON")
    assert problems[1:] == ["p.jsonl:2: no integer 'index'", "p.jsonl:3: no integer 'index'",
                            "p.jsonl:4: index -1 outside 0..1", "p.jsonl:5: index 2 outside 0..1",
                            "p.jsonl:7: duplicate index 0 (the first one is scored)",
                            "p.jsonl:8: no 'response' (scored as an empty answer)",
                            "p.jsonl:9: duplicate index 1 (the first one is scored)"]
    assert rows == {0: {"index": 0, "response": "a"}, 1: {"index": 1}}
    error_only = write_lines(tmp_path / "e.jsonl", [{"index": 0, "error": "boom"}])
    assert read_predictions(error_only, total=1)[1] == []  # an error row needs no response


def test_each_status_and_what_a_row_keeps(tmp_path):
    from univg.eval.scoring import score_records

    rows = [synth_record(i) for i in range(4)] + [{"id": "bad", "task": "diff", "box": [5, 5, 1, 1]}]
    predictions = {0: {"index": 0, "response": "<answer>Image-2: (100,100),(300,300)</answer>"},
                   1: {"index": 1}, 2: {"index": 2, "error": "boom"},
                   4: {"index": 4, "response": "late"}}
    metrics, scores = score_records(_bench(tmp_path, rows), predictions, n_bootstrap=0)
    assert [s.status for s in scores] == ["scored", "no_box", "error", "missing", "quarantined"]
    assert scores[1].response == "" and scores[2].error == "boom"
    assert scores[4].response == "late" and scores[4].id == "row-4" and "; " in scores[4].error
    assert (metrics["errors"], metrics["missing"], metrics["quarantined"]) == (1, 1, 1)
    assert metrics["benchmark"] == "mig-synth" and metrics["coords"] == "norm1000"
    assert metrics["answer_format"] == "indexed" and metrics["image_index_scored"] is True
    r1, _ = score_records(_bench(tmp_path, rows), predictions, answer_format="univg-r1", n_bootstrap=0)
    assert r1["image_index_scored"] is False


def test_an_iou_of_exactly_one_half_is_a_hit_everywhere(tmp_path):
    from univg.eval.scoring import score_records

    predictions = {0: {"index": 0, "response": "<answer>Image-2: (100,100),(200,300)</answer>"}}
    metrics, scores = score_records(_bench(tmp_path, [synth_record(0)]), predictions, n_bootstrap=10)
    assert scores[0].iou == pytest.approx(0.5) and scores[0].hit(0.5) and scores[0].to_row()["hit@0.5"]
    assert metrics["acc@0.5"] == 1.0 and metrics["ci95"]["acc@0.5"] == [1.0, 1.0]


def test_defaults_and_seed_reach_the_intervals(tmp_path):
    from univg.eval.scoring import bootstrap_block, score_records, score_samples
    from univg.eval.stats import bootstrap_ci, stratified_bootstrap_mean_of_means

    rows = [synth_record(i, task=("diff" if i % 2 else "common_object")) for i in range(12)]
    predictions = {i: {"index": i, "response": f"<answer>Image-2: (100,100),(300,{300 - 15 * i})</answer>"}
                   for i in range(12)}  # IoUs from 1.0 down: continuous, so every seed moves the interval
    bench = _bench(tmp_path, rows)
    default, scores = score_records(bench, predictions)
    assert default == score_records(bench, predictions, coords="norm1000", n_bootstrap=1000, seed=0)[0]
    assert default["ci95"] != score_records(bench, predictions, seed=1)[0]["ci95"]
    assert [s.to_row() for s in score_samples(bench, predictions)] == [s.to_row() for s in scores]
    hits = [s.iou for s in scores]
    block = bootstrap_block(scores, 200, 7)
    assert block["miou"] == list(bootstrap_ci(hits, 200, 7))
    assert block["acc@0.7"] == list(bootstrap_ci([h >= 0.7 for h in hits], 200, 7))
    groups = {"common_object": [float(s.hit()) for s in scores if s.task == "common_object"],
              "diff": [float(s.hit()) for s in scores if s.task == "diff"]}
    assert block["avg"] == list(stratified_bootstrap_mean_of_means(groups, 200, 7))
    assert "ci95" in score_records(bench, predictions, n_bootstrap=1)[0]


def test_summarize_edges():
    from univg.eval.scoring import SampleScore, summarize

    with pytest.raises(ValueError, match="nothing to score"):
        summarize([])
    assert summarize([SampleScore(0, "row-0", None, "quarantined")], n_bootstrap=0)["avg"] == 0.0


def test_score_file_writes_readable_json_in_a_new_folder_and_caps_examples(tmp_path):
    annotations = write_lines(tmp_path / "ann.jsonl", [synth_record(0)])
    predictions = write_lines(tmp_path / "p.jsonl", ["{broken"] * 25)
    out = tmp_path / "new" / "deeper" / "metrics.json"
    metrics = score_file("mig-synth", annotations, predictions, out, n_bootstrap=0)
    assert metrics["prediction_problems"]["count"] == 25 and len(metrics["prediction_problems"]["examples"]) == 20
    assert out.read_text().startswith('{\n  "') and json.loads(out.read_text()) == metrics


def test_pixel_boxes_read_the_image_size_under_the_image_root(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (200, 100)).save(images / "b.png")
    Image.new("RGB", (200, 100)).save(images / "a.png")
    annotations = write_lines(tmp_path / "ann" / "a.jsonl", [synth_record(0)])  # images a.png, b.png
    predictions = write_lines(tmp_path / "p.jsonl", [{"index": 0, "response": "<answer>Image-2: (20,10),(60,30)</answer>"}])
    metrics = score_file("mig-synth", annotations, predictions, image_root=images, coords="pixels", n_bootstrap=0)
    assert metrics["miou"] == pytest.approx(1.0)


def test_pixel_sizes_from_meta_need_no_folder():
    from univg.data.benchmarks import BenchmarkSample
    from univg.eval.scoring import score_sample

    record = synth_record(0, meta={"image_size": [200, 100]})
    prediction = {"index": 0, "response": "<answer>Image-2: (20,10),(60,30)</answer>"}
    assert score_sample(BenchmarkSample(0, record), prediction, True, "pixels").iou == pytest.approx(1.0)
    assert score_sample(BenchmarkSample(0, record), prediction, True).status == "scored"  # norm1000 by default


def test_qwen25_limits_reach_smart_resize():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    small, large = (100, 50), (4000, 3000)
    height, width = smart_resize(50, 100, factor=28, min_pixels=200 * 200, max_pixels=12_845_056)
    assert to_norm1000([0, 0, width, height], "qwen25", small, min_pixels=200 * 200) == [0, 0, 1000, 1000]
    height, width = smart_resize(3000, 4000, factor=28, min_pixels=3136, max_pixels=500 * 500)
    assert to_norm1000([0, 0, width, height], "qwen25", large, max_pixels=500 * 500) == [0, 0, 1000, 1000]
    with pytest.raises(ValueError, match="needs the target image size"):
        to_norm1000([0, 0, 1, 1], "pixels")
    with pytest.raises(ValueError, match=r"unknown coords 'inches'; choose from \['norm1000'"):
        to_norm1000([0, 0, 1, 1], "inches", (10, 10))


def _continuous(tmp_path, count=40):
    """Records whose predictions hit with 40 distinct IoUs in (0, 1]: intervals move with n and seed."""
    rows = [synth_record(i, task=("diff" if i % 2 else "common_object")) for i in range(count)]
    predictions = [{"index": i, "response": f"<answer>Image-2: (100,100),({300 - 4 * i},{300 - 3 * i})</answer>"}
                   for i in range(count)]
    return write_lines(tmp_path / "ann.jsonl", rows), write_lines(tmp_path / "p.jsonl", predictions)


def test_score_file_defaults_and_seed(tmp_path):
    annotations, predictions = _continuous(tmp_path)
    default = score_file("mig-synth", annotations, predictions)
    assert default == score_file("mig-synth", annotations, predictions, n_bootstrap=1000, seed=0)
    assert default["ci95"] != score_file("mig-synth", annotations, predictions, n_bootstrap=1001)["ci95"]
    assert default["ci95"] != score_file("mig-synth", annotations, predictions, seed=1)["ci95"]


def test_pixel_limits_reach_every_sample(tmp_path):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    height, width = smart_resize(100, 200, factor=28, min_pixels=300 * 300, max_pixels=12_845_056)
    record = synth_record(0, meta={"image_size": [200, 100]})
    annotations = write_lines(tmp_path / "ann.jsonl", [record])
    predictions = write_lines(tmp_path / "p.jsonl", [
        {"index": 0, "response": f"<answer>Image-2: ({width // 10},{height // 10}),({3 * width // 10},{3 * height // 10})</answer>"}])
    metrics = score_file("mig-synth", annotations, predictions, coords="qwen25", n_bootstrap=0, min_pixels=300 * 300)
    assert metrics["miou"] > 0.95  # with the default min_pixels the same answer lands elsewhere
    assert score_file("mig-synth", annotations, predictions, coords="qwen25", n_bootstrap=0)["miou"] < 0.5


def test_messages_of_refusals(tmp_path, monkeypatch):
    from univg.data.benchmarks import BenchmarkSample
    from univg.eval.scoring import resolve_coords, score_sample, summarize

    with pytest.raises(ValueError, match=r"^nothing to score: the benchmark has no rows$"):
        summarize([])
    with pytest.raises(ValueError, match=r"^coords 'unit': the answer parser reads integer boxes only; 0\.\.1 floats are "
                                         r"for annotations \(mig-bench\), not predictions$"):
        resolve_coords("unit")
    prediction = {"index": 0, "response": "<answer>Image-2: (20,10),(60,30)</answer>"}
    missing = score_sample(BenchmarkSample(0, synth_record(0)), prediction, True, "pixels", tmp_path)
    assert missing.status == "error" and "b.png" in missing.error  # the image whose size was needed
    from PIL import Image

    Image.new("RGB", (200, 100)).save(tmp_path / "b.png")
    monkeypatch.chdir(tmp_path)  # no base folder given: paths are read from the working directory
    assert score_sample(BenchmarkSample(0, synth_record(0)), prediction, True, "pixels").iou == pytest.approx(1.0)


def test_a_quarantined_row_keeps_all_its_reasons(tmp_path):
    from univg.eval.scoring import score_records

    bench = _bench(tmp_path, [{"id": "bad", "task": "diff", "box": [5, 5, 1, 1]}])
    _, scores = score_records(bench, {}, n_bootstrap=0)
    assert scores[0].error == "; ".join(bench.quarantined[0]["reasons"]) and scores[0].response == ""


def test_seeds_and_pixel_caps_reach_every_interval(tmp_path):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from univg.eval.scoring import bootstrap_block, score_records, summarize
    from univg.eval.stats import bootstrap_ci

    annotations, predictions = _continuous(tmp_path)
    metrics = score_file("mig-synth", annotations, predictions, n_bootstrap=0)
    _, scores = score_records(_bench(tmp_path, [json.loads(x) for x in annotations.read_text().splitlines()]),
                              {json.loads(x)["index"]: json.loads(x) for x in predictions.read_text().splitlines()},
                              n_bootstrap=0)
    assert summarize(scores, n_bootstrap=200) == summarize(scores, n_bootstrap=200, seed=0)
    assert summarize(scores) == summarize(scores, n_bootstrap=1000) != summarize(scores, n_bootstrap=1001)
    assert "index_acc" not in summarize(scores, n_bootstrap=0)  # only in indexed mode, which is asked for
    hits = [float(s.iou >= 0.5) for s in scores]
    seed = next(k for k in range(1, 100) if bootstrap_ci(hits, 200, k) != bootstrap_ci(hits, 200, 0))
    assert bootstrap_block(scores, 200, seed)["acc@0.5"] == list(bootstrap_ci(hits, 200, seed))
    assert metrics["n"] == 40
    height, width = smart_resize(3000, 4000, factor=28, min_pixels=3136, max_pixels=400 * 400)
    record = synth_record(0, meta={"image_size": [4000, 3000]})
    ann = write_lines(tmp_path / "big.jsonl", [record])
    pred = write_lines(tmp_path / "bigp.jsonl", [
        {"index": 0, "response": f"<answer>Image-2: ({width // 10},{height // 10}),({3 * width // 10},{3 * height // 10})</answer>"}])
    assert score_file("mig-synth", ann, pred, coords="qwen25", n_bootstrap=0, max_pixels=400 * 400)["miou"] > 0.95
