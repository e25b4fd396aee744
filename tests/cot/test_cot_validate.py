"""`univg cot validate`: every expectation rejects a row that violates it, and nothing is lost."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cot_helpers import good_record, read_jsonl, write_lines

from univg.config import ValidateConfig
from univg.cot.expectations import reason_names
from univg.cot.validate import PARSE_REASONS, ValidationFailed, validate_file
from univg.data.images import ImagePolicy

LONG_CHAIN = "Image 1 shows many shapes. " * 80 + "So the answer is in image 2."

# (case name, row, the reason it must get). Each row gets its own id and question (unless the
# case is about them) so that cases do not trip the duplicate checks of one another.
CASES = [
    ("id_not_string", {"id": 5}, "schema_id"),
    ("id_blank", {"id": "   "}, "schema_id"),
    ("task_null", {"task": None}, "schema_task"),
    ("source_missing", {"source": ...}, "schema_source"),
    ("question_list", {"question": ["where?"]}, "schema_question"),
    ("images_string", {"images": "img/a.png"}, "schema_images"),
    ("target_string", {"target_image": "2"}, "schema_target_image"),
    ("target_bool", {"target_image": True}, "schema_target_image"),
    ("box_three_values", {"box": [1, 2, 3]}, "schema_box"),
    ("box_floats", {"box": [1.5, 2, 30, 40]}, "schema_box"),
    ("cot_number", {"cot": 42}, "schema_cot"),
    ("meta_string", {"meta": "notes"}, "schema_meta"),
    ("question_blank", {"question": "   "}, "empty_question"),
    ("no_images", {"images": []}, "image_count"),
    ("nine_images", {"images": ["img/a.png"] * 9}, "image_count"),
    ("image_missing", {"images": ["img/a.png", "img/nowhere.png"]}, "image_unreadable"),
    ("image_corrupt", {"images": ["img/broken.png", "img/b.png"]}, "image_unreadable"),
    ("image_outside_root", {"images": ["img/a.png", "../../outside.png"]}, "image_unreadable"),
    ("box_over_1000", {"box": [0, 0, 1200, 500]}, "box_out_of_range"),
    ("box_astronomical", {"box": [0, 0, 10**30, 500]}, "box_out_of_range"),  # beyond int64: clipped, still refused
    ("box_astronomically_negative", {"box": [-(10**30), 0, 100, 500]}, "box_out_of_range"),
    ("box_negative", {"box": [-5, 0, 100, 500]}, "box_out_of_range"),
    ("box_x_inverted", {"box": [300, 100, 100, 200]}, "box_inverted"),
    ("box_y_empty", {"box": [100, 200, 300, 200]}, "box_inverted"),
    ("target_too_big", {"target_image": 4}, "target_out_of_range"),
    ("target_zero", {"target_image": 0}, "target_out_of_range"),
    ("cot_absent", {"cot": ...}, "chain_missing"),
    ("cot_null", {"cot": None}, "chain_missing"),
    ("cot_blank", {"cot": "  \n "}, "chain_missing"),
    ("cot_too_short", {"cot": "image 2"}, "chain_length"),
    ("cot_too_long", {"cot": LONG_CHAIN}, "chain_length"),
    ("cot_with_tags", {"cot": "<think>Image 2 adds a blue square.</think><answer>Image-2: (1,2),(3,4)</answer> in image 2"},
     "chain_has_tags"),
    ("cot_names_nothing", {"cot": "The blue square at the top left is the new object, so that is the answer."},
     "chain_names_no_image"),
    ("cot_concludes_wrong", {"cot": "Image 2 adds a blue square, but the answer is the red circle in image 1."},
     "chain_names_wrong_image"),
    ("cot_concludes_wrong_ordinal", {"cot": "Image 2 adds a blue square; the object is found in the first image."},
     "chain_names_wrong_image"),
    ("teacher_box_far", {"meta": {"cot": {"answer_box": [0, 0, 10, 10]}}}, "answer_box_mismatch"),
    ("teacher_box_garbled", {"meta": {"cot": {"answer_box": "somewhere"}}}, "answer_box_mismatch"),
    ("teacher_box_three_numbers", {"meta": {"cot": {"answer_box": [1, 2, 3]}}}, "answer_box_mismatch"),
    ("teacher_box_words", {"meta": {"cot": {"answer_box": ["a", "b", "c", "d"]}}}, "answer_box_mismatch"),
    ("teacher_names_image_1", {"meta": {"cot": {"answer_image": 1}}}, "answer_names_wrong_image"),
    ("duplicate_content", {"id": "dup-b", "question": "Q-dup"}, "duplicate"),
    ("duplicate_id", {"id": "same-id", "question": "Q-id-b"}, "duplicate_id"),
    ("test_id", {"id": "test-0001"}, "in_test_split"),
    ("test_content", {"question": "Q-test-content", "images": ["img/tc1.png", "img/tc2.png"]}, "in_test_split"),
    # a test image saved again under another name, with another PNG compression: same pixels
    ("test_image_copy", {"images": ["img/t_copy.png", "img/b.png", "img/c.png"]}, "image_in_test_split"),
]
# The only other reasons a case may get (one fault that honestly breaks two checks).
ALSO = {
    "cot_number": {"chain_missing"},
    "no_images": {"target_out_of_range"},
    "target_too_big": {"chain_names_wrong_image"},
    "target_zero": {"chain_names_wrong_image"},
    "test_content": {"image_in_test_split"},  # the same files as the test record: their pixels too
}
# Rows that must pass; the first occurrences of the duplicates among them.
GOOD = [
    ("plain", {}),
    ("ordinal_conclusion", {"cot": "Image 1 shows a red circle; the blue square is new in the second image."}),
    ("mentions_other_images_first", {"cot": "Images 1 and 3 hold near misses; only Image-2 has the blue square."}),
    ("teacher_box_close", {"meta": {"cot": {"answer_box": [102, 121, 300, 338], "answer_image": 2}}}),
    ("first_of_duplicate", {"id": "dup-a", "question": "Q-dup"}),
    ("first_of_id", {"id": "same-id", "question": "Q-id-a"}),
    ("meta_null", {"meta": None}),  # optional fields may be null
    ("box_far_corner", {"box": [200, 300, 900, 950]}),
    ("non_ascii", {"question": "Où est le carré bleu ? Trouve-le dans l'image 2."}),  # written back as is
    ("teacher_image_not_int", {"meta": {"cot": {"answer_image": "2"}}}),  # not a number: not checked
    ("image_beside_the_folder", {"images": ["../shared/a.png", "img/b.png", "img/c.png"]}),  # inside the root
]
LINES = [
    ("malformed", '{"id": "x", "task": ', "malformed_json"),
    ("not_utf8", b'{"id": "\xff\xfe"}', "not_utf8"),
    ("array", "[1, 2, 3]", "not_an_object"),
]


def _row(name: str, change: dict) -> dict:
    row = good_record(id=f"id-{name}", question=f"Question for {name}: where is it in image 2?",
                      images=["img/a.png", "img/b.png", "img/c.png"])
    for key, value in change.items():
        if value is ...:
            row.pop(key, None)
        else:
            row[key] = value
    return row


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("validate")
    (root / "data" / "img").mkdir(parents=True)
    colours = {"a": "red", "b": "green", "c": "blue", "t": "yellow", "tc1": "purple", "tc2": "orange"}
    for name, colour in colours.items():
        Image.new("RGB", (16, 16), colour).save(root / "data" / "img" / f"{name}.png")
    Image.new("RGB", (16, 16), "yellow").save(root / "data" / "img" / "t_copy.png", compress_level=1)
    (root / "data" / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "shared").mkdir()
    Image.new("RGB", (16, 16), "red").save(root / "shared" / "a.png")  # beside data/: inside the root
    Image.new("RGB", (16, 16), "red").save(root.parent / "outside.png")  # above the root
    write_lines(root / "test.jsonl", [
        good_record(id="test-0001", question="held out", images=["data/img/t.png"]),
        good_record(id="test-0002", question="Q-test-content", images=["data/img/tc1.png", "data/img/tc2.png"]),
    ])
    rows: list = [_row(name, change) for name, change in GOOD]
    rows += [_row(name, change) for name, change, _ in CASES]
    rows += [raw for _, raw, _ in LINES]
    source = write_lines(root / "data" / "cot.jsonl", rows)
    report = validate_file(source, root / "out", ValidateConfig(min_accept_fraction=0.0), test_split=root / "test.jsonl")
    return {"root": root, "report": report, "accepted": read_jsonl(root / "out" / "accepted.jsonl"),
            "rejected": read_jsonl(root / "out" / "rejected.jsonl"), "n_lines": len(rows)}


def test_every_case_at_once(validated):
    """Every check of this module on the shared run, first in the file: mutation testing attributes
    a module fixture's work to the first test that uses it, so this one must see everything."""
    for name, change, reason in CASES:
        test_each_violation_is_rejected_with_its_reason(validated, name, change, reason)
    for name, raw, reason in LINES:
        test_unparseable_lines_are_kept_with_line_number_and_reason(validated, name, raw, reason)
    test_good_rows_are_accepted_and_their_images_still_resolve(validated)
    test_report_counts_match_the_files(validated)
    test_data_docs_are_written(validated)
    test_outputs_keep_line_order_text_and_report_fields(validated)


def _rejected_by_id(validated) -> dict:
    return {r.get("id"): r for r in validated["rejected"] if "line" not in r}


@pytest.mark.parametrize("name,change,reason", CASES, ids=[c[0] for c in CASES])
def test_each_violation_is_rejected_with_its_reason(validated, name, change, reason):
    row_id = change.get("id", f"id-{name}")
    rejected = [r for r in validated["rejected"] if r.get("id") == row_id and r.get("question") == _row(name, change).get("question")]
    assert len(rejected) == 1, f"{name} was not rejected"
    assert reason in rejected[0]["reasons"]
    assert set(rejected[0]["reasons"]) <= {reason} | ALSO.get(name, set())
    assert not any(a.get("question") == rejected[0].get("question") and a.get("id") == row_id for a in validated["accepted"])


@pytest.mark.parametrize("name,raw,reason", LINES, ids=[c[0] for c in LINES])
def test_unparseable_lines_are_kept_with_line_number_and_reason(validated, name, raw, reason):
    kept = [r for r in validated["rejected"] if "line" in r and reason in r["reasons"]]
    assert len(kept) == 1
    assert set(kept[0]) == {"line", "raw", "reasons"}
    assert kept[0]["line"] == len(GOOD) + len(CASES) + [n for n, _, _ in LINES].index(name) + 1


def test_every_check_has_a_violating_case():
    covered = {reason for _, _, reason in CASES} | {reason for _, _, reason in LINES}
    assert covered == set(reason_names(ValidateConfig())) | set(PARSE_REASONS)


def test_good_rows_are_accepted_and_their_images_still_resolve(validated):
    accepted = {r["id"]: r for r in validated["accepted"]}
    assert set(accepted) == {f"id-{name}" for name, change in GOOD if "id" not in change} | {"dup-a", "same-id"}
    out = validated["root"] / "out"
    for record in accepted.values():
        assert "reasons" not in record
        assert all((out / p).is_file() for p in record["images"])


def test_report_counts_match_the_files(validated):
    report = validated["report"]
    assert report["total"] == validated["n_lines"]
    assert report["accepted"] == len(validated["accepted"]) == len(GOOD)
    assert report["rejected"] == len(validated["rejected"]) == len(CASES) + len(LINES)
    for reason, count in report["by_expectation"].items():
        assert count == sum(reason in r["reasons"] for r in validated["rejected"]), reason
    assert json.loads((validated["root"] / "out" / "report.json").read_text())["total"] == report["total"]


def test_data_docs_are_written(validated):
    index = validated["root"] / "out" / "data_docs" / "index.html"
    assert index.is_file()
    pages = list((validated["root"] / "out" / "data_docs" / "validations").rglob("*.html"))
    assert pages and "chain_names_wrong_image" in pages[0].read_text()


def test_every_input_line_lands_in_exactly_one_file(images):
    """Fuzz: a mix of valid rows, broken rows, junk JSON and raw bytes; each non-blank line once."""
    rng = random.Random(7)
    rows, expected = [], 0
    for n in range(300):
        kind = rng.choice(["good", "good", "broken", "json", "bytes", "blank"])
        if kind == "good":
            rows.append(good_record(id=f"L{n}", question=f"q{n} image 2?", line=n))
        elif kind == "broken":
            row = good_record(id=f"L{n}", question=f"q{n}", line=n)
            key = rng.choice(["box", "images", "cot", "target_image", "id", "question"])
            row[key] = rng.choice([None, 7, "x", [], [1, 2, 3, 4, 5]])
            rows.append(row)
        elif kind == "json":
            rows.append(rng.choice(['{"id": ', "null", "42", '"text"', "{'single': 1}", "[{}]"]))
        elif kind == "bytes":
            rows.append(bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 12))))
        else:
            rows.append("   ")
            continue
        expected += 1
    source = write_lines(images / "fuzz.jsonl", rows)
    validate_file(source, images / "out", ValidateConfig(min_accept_fraction=0.0))
    accepted = read_jsonl(images / "out" / "accepted.jsonl")
    rejected = read_jsonl(images / "out" / "rejected.jsonl")
    assert len(accepted) + len(rejected) == expected
    traced = [r["line"] - 1 if set(r) == {"line", "raw", "reasons"} else r["line"] for r in accepted + rejected]
    assert len(set(traced)) == expected  # no line twice, none lost
    assert all(r["reasons"] for r in rejected)


def test_stage_fails_below_threshold_after_writing_everything(images):
    rows = [good_record(id=f"ok{i}", question=f"q{i}") for i in range(3)]
    rows += [good_record(id=f"bad{i}", question=f"b{i}", cot="so it is image 1") for i in range(2)]
    source = write_lines(images / "cot.jsonl", rows)
    with pytest.raises(ValidationFailed) as error:
        validate_file(source, images / "out", ValidateConfig(min_accept_fraction=0.7))
    message = str(error.value)
    assert str(source) in message and "60.0%" in message and "70.0%" in message
    assert f"see {images / 'out' / 'rejected.jsonl'}" in message
    assert "chain_names_wrong_image" in message
    report = json.loads((images / "out" / "report.json").read_text())
    assert (report["accepted"], report["rejected"]) == (3, 2)
    assert len(read_jsonl(images / "out" / "rejected.jsonl")) == 2
    # At the threshold exactly, the stage passes.
    assert validate_file(source, images / "out2", ValidateConfig(min_accept_fraction=0.6))["accepted"] == 3


def test_empty_input_fails_the_gate_clearly(images):
    source = write_lines(images / "empty.jsonl", ["", "  "])
    with pytest.raises(ValidationFailed, match="0 of 0"):
        validate_file(source, images / "out", ValidateConfig(min_accept_fraction=0.5))
    report = json.loads((images / "out" / "report.json").read_text())
    assert report["total"] == 0 and report["data_docs"] is None and not (images / "out" / "data_docs").exists()


def test_image_root_is_used_instead_of_the_file_folder(images, tmp_path):
    elsewhere = write_lines(tmp_path / "elsewhere" / "cot.jsonl", [good_record()])
    report = validate_file(elsewhere, tmp_path / "out", ValidateConfig(min_accept_fraction=0.0), image_root=images)
    assert report["accepted"] == 1
    record = read_jsonl(tmp_path / "out" / "accepted.jsonl")[0]
    assert Path(tmp_path / "out" / record["images"][0]).resolve() == (images / "img" / "a.png").resolve()
    report = validate_file(elsewhere, tmp_path / "out2", ValidateConfig(min_accept_fraction=0.0))
    assert report["by_expectation"]["image_unreadable"] == 1


# ----------------------------------------------------------------------------- pinned by mutation testing
def test_leaks_are_found_through_the_image_root_too(images, tmp_path):
    """A test split and a CoT file in different folders, both naming images under one image root."""
    split = write_lines(tmp_path / "split" / "test.jsonl", [good_record(id="held", question="Which one?  Find it.")])
    cot = write_lines(tmp_path / "work" / "cot.jsonl", [good_record(id="mine", question="Which one? Find it.")])
    report = validate_file(cot, tmp_path / "out", ValidateConfig(min_accept_fraction=0.0), image_root=images,
                           test_split=split)
    assert report["by_expectation"]["in_test_split"] == 1  # same question (up to spacing) and images
    with pytest.raises(FileNotFoundError, match="test split not found"):
        validate_file(cot, tmp_path / "out2", ValidateConfig(), image_root=images, test_split=tmp_path / "none.jsonl")


def test_top_reasons_lists_the_commonest_first_with_counts():
    from univg.cot.validate import _top_reasons

    assert _top_reasons({"a": 1, "b": 3, "c": 0, "d": 2, "e": 1}) == "b (3), d (2), a (1)"
    assert _top_reasons({"a": 0}) == "none"


def test_absolute_image_paths_are_kept_as_they_are(images, tmp_path):
    absolute = [str((images / "img" / name).resolve()) for name in ("a.png", "b.png")]
    cot = write_lines(tmp_path / "cot.jsonl", [good_record(images=absolute)])
    report = validate_file(cot, tmp_path / "out", ValidateConfig(min_accept_fraction=0.0),
                           policy=ImagePolicy(allow_outside_root=True))
    assert report["accepted"] == 1 and read_jsonl(tmp_path / "out" / "accepted.jsonl")[0]["images"] == absolute


def test_outputs_keep_line_order_text_and_report_fields(validated):
    out, report = validated["root"] / "out", validated["report"]
    assert report["input"] == str(validated["root"] / "data" / "cot.jsonl") and report["min_accept_fraction"] == 0.0
    assert report["data_docs"] == str(out / "data_docs" / "index.html")
    assert (out / "report.json").read_text().startswith('{\n  "')
    text = (out / "accepted.jsonl").read_text(encoding="utf-8")
    assert "Où est le carré bleu" in text  # UTF-8 as written, not \u escapes
    ids = [r["id"] for r in validated["accepted"]]
    assert ids == [_row(name, change)["id"] for name, change in GOOD]  # input order


def test_derived_columns_name_each_type_and_keep_the_box():
    from univg.cot.validate import derive_columns

    rows = [
        good_record(id="ok", box=[1, 2, 3, 4]),
        {"id": 5, "task": "  ", "images": "a.png", "target_image": True, "box": [1, 2, 3], "question": None},
        {"id": " ", "source": None, "images": [1], "target_image": "2", "box": "x", "meta": {"cot": {"answer_image": 2}}},
    ]
    rows.append({"task": "only a task"})
    frame = derive_columns(rows, Path("."))
    assert list(frame["type_id"]) == ["str", "int", "str(blank)", "missing"]
    assert list(frame["type_task"]) == ["str", "str(blank)", "missing", "str"]
    assert list(frame["type_source"]) == ["str", "missing", "null", "missing"]
    assert list(frame["type_question"]) == ["str", "null", "missing", "missing"]
    assert list(frame["type_images"]) == ["list[str]", "str", "list", "missing"]
    assert list(frame["type_target_image"]) == ["int", "bool", "str", "missing"]
    assert list(frame["type_box"]) == ["int[4]", "list[3]", "str", "missing"]
    assert [frame[c][0] for c in ("box_x1", "box_y1", "box_x2", "box_y2")] == [1, 2, 3, 4]
    assert frame["answer_image"][2] == 2 and frame["answer_iou"].isna()[2]


def test_the_default_root_and_the_image_root(images, tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "outside.png")  # beside data/, above the images folder
    nested = write_lines(tmp_path / "a" / "b" / "cot.jsonl", [good_record()])
    report = validate_file(nested, tmp_path / "x" / "y" / "out", ValidateConfig(min_accept_fraction=0.0),
                           image_root=images)
    assert report["accepted"] == 1  # images under the image root, wherever the file is
    again = validate_file(nested, tmp_path / "x" / "y" / "out", ValidateConfig(min_accept_fraction=0.0),
                          image_root=images)
    assert again["accepted"] == 1  # the same output folder twice
    outside = write_lines(images / "cot.jsonl", [good_record(images=["img/a.png", "../outside.png"])])
    report = validate_file(outside, tmp_path / "o2", ValidateConfig(min_accept_fraction=0.0))
    assert report["accepted"] == 1  # the default root is the folder above the file's: tmp_path
    with pytest.raises(FileNotFoundError, match="no such file"):
        validate_file(tmp_path / "none.jsonl", tmp_path / "o3", ValidateConfig())


def test_the_pixel_limit_of_the_policy_applies(images):
    from univg.cot.validate import derive_columns
    from univg.data.images import ImagePolicy

    rows = [good_record()]  # two 16 x 16 images
    assert list(derive_columns(rows, images, policy=ImagePolicy(root=images))["images_ok"]) == [True]
    assert list(derive_columns(rows, images, policy=ImagePolicy(root=images, max_pixels=100))["images_ok"]) == [False]
    from PIL import Image

    Image.new("RGB", (16, 16)).save(images.parent / "outside.png")  # a real image, beside the root
    assert list(derive_columns([good_record(images=["../outside.png"])], images)["images_ok"]) == [False]
