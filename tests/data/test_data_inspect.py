"""`univg data inspect`: every kind of bad line is reported at its line; the contact sheet renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from univg.data.inspect import format_report, inspect_file


def good_record(record_id: str, **changes) -> dict:
    record = {"id": record_id, "task": "diff", "images": ["good.png", "good.png"], "question": "What changed?",
              "target_image": 2, "box": [100, 100, 300, 300], "source": "test"}
    record.update(changes)
    return record


@pytest.fixture
def broken_file(tmp_path: Path) -> Path:
    Image.new("RGB", (112, 112), (200, 30, 30)).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    scene = {"target": {"image": 2, "object": 0}, "images": [{"objects": []}, {"objects": [{"box": [1, 2, 3, 4]}]}]}
    lines = [
        json.dumps(good_record("ok")).encode(),                                   # 1 valid
        b'{"id": "cut", "task": ',                                                # 2 malformed JSON
        b'{"id": "latin", "question": "caf\xe9"}',                                # 3 not UTF-8
        json.dumps(good_record("far", box=[0, 0, 1200, 50])).encode(),            # 4 out of range
        json.dumps(good_record("flip", box=[500, 500, 100, 600])).encode(),       # 5 inverted
        json.dumps(good_record("three", target_image=3)).encode(),                # 6 target out of range
        json.dumps(good_record("gone", images=["good.png", "nope.png"])).encode(),  # 7 missing image
        json.dumps(good_record("bad", images=["corrupt.png", "good.png"])).encode(),  # 8 corrupt image
        json.dumps(good_record("ok")).encode(),                                   # 9 duplicate id
        b"",                                                                      # 10 blank: skipped
        json.dumps({k: v for k, v in good_record("noq").items() if k != "question"}).encode(),  # 11
        json.dumps(good_record("scene", meta={"scene": scene})).encode(),         # 12 scene disagrees
    ]
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


EXPECTED = {
    2: "malformed JSON",
    3: "not UTF-8",
    4: "out of range",
    5: "inverted",
    6: "target_image 3 out of range",
    7: "image not found: nope.png",
    8: "image not decodable: corrupt.png",
    9: "duplicate id 'ok' (first on line 1)",
    11: "missing field 'question'",
    12: "meta.scene target box",
}


def test_each_problem_is_reported_at_its_line(broken_file):
    report = inspect_file(broken_file)
    assert report["lines"] == 11 and report["valid"] == 1 and report["invalid"] == 10
    by_line = {p["line"]: p for p in report["problems"]}
    assert sorted(by_line) == sorted(EXPECTED)
    for line, reason in EXPECTED.items():
        assert any(reason in r for r in by_line[line]["reasons"]), (line, by_line[line])
    assert by_line[9]["id"] == "ok" and by_line[2]["id"] is None
    assert report["per_task"] == {"diff": 1}


def test_report_text_lists_problems_by_line(broken_file):
    text = format_report(inspect_file(broken_file))
    assert "valid 1" in text and "invalid 10" in text
    assert "line 7 id=gone: image not found: nope.png" in text
    assert "diff" in text


def test_image_root_overrides_the_file_folder(broken_file, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = inspect_file(broken_file, image_root=elsewhere)
    assert any("image not found: good.png" in r for p in report["problems"] if p["line"] == 1 for r in p["reasons"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        inspect_file(tmp_path / "nope.jsonl")


def test_contact_sheet_is_a_valid_png_with_ground_truth_boxes(small_dataset, tmp_path):
    folder, _ = small_dataset
    sheet = tmp_path / "sheets" / "test.png"
    report = inspect_file(folder / "test.jsonl", sheet_path=sheet, max_samples=10)
    assert report["invalid"] == 0 and report["sheet"] == str(sheet)
    with Image.open(sheet) as image:
        image.verify()
    with Image.open(sheet) as image:
        assert image.height > 10 * 168 and image.width >= 4 * 168
        pixels = image.convert("RGB").getdata()
        assert (0, 200, 0) in set(pixels), "ground-truth box drawn in green"


def test_contact_sheet_of_a_file_without_valid_rows_still_renders(broken_file, tmp_path):
    sheet = tmp_path / "empty.png"
    path = tmp_path / "only_bad.jsonl"
    path.write_text('{"id": 1}\n')
    inspect_file(path, sheet_path=sheet)
    with Image.open(sheet) as image:
        image.verify()
