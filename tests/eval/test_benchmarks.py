"""Each loader on its fixture file (written in the exact format it documents), quarantine, targets."""

from __future__ import annotations

import json

import pytest
from eval_helpers import synth_record, write_lines

from univg.data.benchmarks import BENCHMARKS, BenchmarkError, load_benchmark
from univg.data.naming import target_from_text
from univg.schema import record_reasons


def by_index(loaded):
    return {s.index: s.record for s in loaded.samples}


def assert_contract(loaded):
    for sample in loaded.samples:
        assert record_reasons(sample.record) == [], sample.record
        assert sample.record["source"] == loaded.name


def test_registry_names_and_defaults():
    assert set(BENCHMARKS) == {"mig-synth", "mig-bench", "univg-r1", "reasoning-grounding"}
    assert BENCHMARKS["mig-synth"].answer_format == "indexed"
    assert {BENCHMARKS[n].answer_format for n in ("mig-bench", "univg-r1", "reasoning-grounding")} == {"univg-r1"}
    assert BENCHMARKS["mig-bench"].scores_image_index is False


def test_mig_synth_fixture(fixtures):
    loaded = load_benchmark("mig-synth", fixtures / "mig_synth.jsonl", check_images=False)
    assert loaded.total == 6 and [s.index for s in loaded.samples] == [0, 1, 2, 3]
    assert [q["index"] for q in loaded.quarantined] == [4, 5]
    assert "inverted" in loaded.quarantined[0]["reasons"][0] and loaded.quarantined[0]["task"] == "diff"
    assert "malformed JSON" in loaded.quarantined[1]["reasons"][0]
    assert loaded.base_dir == fixtures and by_index(loaded)[0]["box"] == [100, 200, 500, 600]


def test_mig_bench_fixture_original_unit_floats(fixtures):
    loaded = load_benchmark("mig-bench", fixtures / "mig_bench.json")
    assert_contract(loaded)
    assert loaded.info["answer_coords"] == "unit" and loaded.total == 6
    records = by_index(loaded)
    targets = {i: (r["target_image"], r["meta"]["target_rule"]) for i, r in records.items()}
    assert targets == {0: (3, "question"), 1: (2, "question"), 2: (1, "additional_info"), 3: (2, "question"),
                       4: (2, "default_last")}
    assert records[0]["box"] == [100, 200, 500, 600]
    assert records[1]["meta"]["box_exact"] == [250.0, 250.0, 750.0, 1000.0]  # 1.02 clamped
    assert "<image>" not in records[0]["question"]
    assert [q["index"] for q in loaded.quarantined] == [5] and loaded.quarantined[0]["task"] == "diff"


def test_mig_bench_fixture_revised_ints(fixtures):
    loaded = load_benchmark("mig-bench", fixtures / "mig_bench_revised.json")
    assert loaded.info["answer_coords"] == "norm1000"
    records = by_index(loaded)
    assert records[1]["box"] == [250, 250, 750, 1000] and records[2]["box"] == [1, 1, 2, 2]
    assert records[1]["target_image"] == 2


def test_mig_bench_row_disagreeing_with_the_file_convention_is_quarantined(tmp_path):
    rows = [{"task": "diff", "images": ["a.png"], "question": "q", "answer": a}
            for a in ([0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4], [100, 100, 200, 200])]
    (tmp_path / "b.json").write_text(json.dumps(rows))
    loaded = load_benchmark("mig-bench", tmp_path / "b.json", check_images=False)
    assert [q["index"] for q in loaded.quarantined] == [2] and "0..1" in loaded.quarantined[0]["reasons"][0]


def test_univg_r1_fixture(fixtures):
    loaded = load_benchmark("univg-r1", fixtures / "univg_r1.json")
    assert_contract(loaded)
    records = by_index(loaded)
    assert records[0]["id"] == "u0" and records[0]["task"] == "reasoning"
    assert records[0]["box"] == [120, 80, 640, 900] and records[0]["target_image"] == 2
    assert records[0]["question"] == "What might the people in image 1 need for sailing? Find it in image 2."
    assert records[1]["box"] == [10, 20, 300, 400] and records[1]["task"] == "univg-r1"  # spaces after commas
    assert records[2]["box"] == [100, 100, 200, 300] and records[2]["target_image"] == 3  # int list, last image
    assert (records[3]["target_image"], records[3]["meta"]["target_rule"]) == (1, "answer_index")
    assert records[4]["question"] == "Box the yellow square." and records[4]["box"] == [0, 0, 500, 250]
    assert [q["index"] for q in loaded.quarantined] == [5]


def test_reasoning_grounding_fixture(fixtures):
    loaded = load_benchmark("reasoning-grounding", fixtures / "reasoning_grounding.jsonl", check_images=False)
    assert_contract(loaded)
    records = by_index(loaded)
    # a.png is 40x20: pixel box (4,2),(20,10) -> (100,100),(500,500)
    assert records[0]["box"] == [100, 100, 500, 500] and records[0]["task"] == "lisa_val"
    assert records[0]["question"].startswith("Output the bounding box in the image corresponding to the instruction:")
    assert records[0]["meta"]["image_size"] == [40, 20]
    assert records[1]["box"] == [100, 200, 500, 800]  # LISA "boxes": the first box; c.png is 50x25
    assert records[2]["box"] == [100, 100, 900, 900] and records[2]["task"] == "llmseg"  # box_norm
    # LLMSeg's question is wrapped as the release wraps it, its "." kept as the release keeps it
    assert records[2]["question"] == ("Output the bounding box in the image corresponding to the instruction: "
                                      "Output the box of the thing you would eat..")
    assert records[4]["box"] == [250, 250, 750, 750]  # size from the row; the image file is not needed
    video = records[5]
    assert video["target_image"] == 3 and len(video["images"]) == 4 and video["box"] == [200, 200, 600, 800]
    assert "third image" in video["question"] and "the car that turns left" in video["question"]
    assert records[6]["target_image"] == 2 and records[6]["box"] == [100, 200, 500, 800]  # bbox_list strings, b.png
    assert [q["index"] for q in loaded.quarantined] == [3]
    assert "missing.png" in loaded.quarantined[0]["reasons"][0]


def test_image_root_overrides_the_file_folder(tmp_path, fixtures):
    rows = [{"image": "a.png", "instruction": "x", "box": [4, 2, 20, 10]}]
    annotations = write_lines(tmp_path / "rg.jsonl", rows)
    assert load_benchmark("reasoning-grounding", annotations).quarantined  # a.png is not beside the file
    loaded = load_benchmark("reasoning-grounding", annotations, image_root=fixtures / "images")
    assert loaded.samples[0].record["box"] == [100, 100, 500, 500]


def test_malformed_rows_are_quarantined_never_dropped(tmp_path):
    rows = [synth_record(0), "[1, 2", "not json at all", {"id": "x"}, 42, synth_record(5)]
    loaded = load_benchmark("mig-synth", write_lines(tmp_path / "a.jsonl", rows), check_images=False)
    assert loaded.total == 6 and [s.index for s in loaded.samples] == [0, 5]
    assert [q["index"] for q in loaded.quarantined] == [1, 2, 3, 4]
    assert all(q["reasons"] for q in loaded.quarantined)


def test_unreadable_or_empty_files_raise_naming_the_file(tmp_path):
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(BenchmarkError, match="empty.json"):
        load_benchmark("mig-bench", tmp_path / "empty.json")
    (tmp_path / "garbage.json").write_text("<<<not json>>>")
    with pytest.raises(BenchmarkError, match="garbage.json"):
        load_benchmark("mig-bench", tmp_path / "garbage.json")


def test_limit_keeps_the_first_rows(fixtures):
    loaded = load_benchmark("mig-synth", fixtures / "mig_synth.jsonl", check_images=False).head(5)
    assert loaded.total == 5 and [q["index"] for q in loaded.quarantined] == [4]


@pytest.mark.parametrize(
    ("text", "num_images", "expected"),
    [
        ("These images share one object. Locate it in the third image.", 4, 3),
        ("Find the same cup in Image-2.", 3, 2),
        ("What is in image 1? Find it in image 2.", 2, 2),
        ("Locate in the second image the object shown in the first image.", 2, 2),
        ("The object in Image-1's box: find it in Image-3.", 3, 3),
        ("Ground the dog in the second picture.", 2, 2),
        ("It is in the first image.", 3, 1),
        ("Box the person in the last frame.", 5, 5),
        ("Find it in the 3rd image.", 3, 3),
        ("Find it in image 7.", 3, None),  # out of range: ignored
        ("Find it in image 0.", 3, None),
        ("Compare the images and find the difference.", 2, None),
        ("Both images 1 and 2 show a dog.", 2, None),  # plural: not a target
    ],
)
def test_target_from_text(text, num_images, expected):
    assert target_from_text(text, num_images) == expected


def test_duplicate_ids_are_quarantined(tmp_path):
    loaded = load_benchmark("mig-synth", write_lines(tmp_path / "d.jsonl", [synth_record(0), synth_record(0)]),
                            check_images=False)
    assert [q["index"] for q in loaded.quarantined] == [1] and "duplicate id" in loaded.quarantined[0]["reasons"][0]
