import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from univg import schema

VALID = {
    "id": "a", "task": "diff", "images": ["1.png", "2.png"], "question": "q", "target_image": 2,
    "box": [10, 20, 300, 400], "source": "test",
}


def test_valid_record_has_no_reasons():
    assert schema.record_reasons(VALID) == []
    assert schema.GroundingRecord.from_dict(VALID).to_dict()["box"] == [10, 20, 300, 400]


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"box": [10, 20, 1001, 400]}, "out of range"),
        ({"box": [300, 20, 10, 400]}, "inverted"),
        ({"box": [10, 20, 300]}, "4 numbers"),
        ({"box": [10.5, 20, 300, 400]}, "integers"),
        ({"target_image": 3}, "target_image 3 out of range 1..2"),
        ({"target_image": 0}, "out of range"),
        ({"target_image": True}, "not an integer"),
        ({"images": []}, "no images"),
        ({"question": "  "}, "empty question"),
        ({"cot": 5}, "'cot' is not a string"),
    ],
)
def test_each_problem_is_named(change, fragment):
    reasons = schema.record_reasons({**VALID, **change})
    assert any(fragment in r for r in reasons), reasons


def test_missing_field_and_non_object():
    record = dict(VALID)
    del record["box"]
    assert "missing field 'box'" in schema.record_reasons(record)
    assert schema.record_reasons([1, 2])[0].startswith("not a JSON object")


def test_read_jsonl_reports_bad_lines_with_numbers(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(
        json.dumps(VALID).encode() + b"\n{broken\n\n" + b"\xff\xfe bad\n" + json.dumps({**VALID, "box": [5, 5, 1, 1]}).encode() + b"\n"
    )
    lines = list(schema.read_jsonl_lines(path))
    assert [line.number for line in lines] == [1, 2, 4, 5]
    assert "malformed JSON" in lines[1].reasons[0]
    assert "not UTF-8" in lines[2].reasons[0]
    with pytest.raises(ValueError, match=r"r.jsonl:2: malformed JSON"):
        schema.read_records(path)


def test_image_problems_missing_and_corrupt(tmp_path):
    from PIL import Image

    from univg.data.images import image_problems

    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    reasons = image_problems(["ok.png", "bad.png", "gone.png"], tmp_path)
    assert reasons[0].startswith("image not decodable: bad.png")
    assert reasons[1] == "image not found: gone.png"


def test_iou_contract_cases():
    assert schema.iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert schema.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert schema.iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert schema.iou([10, 0, 0, 10], [0, 0, 10, 10]) == 0.0  # inverted prediction
    assert schema.iou([0, 0, 2000, 2000], [0, 0, 1000, 1000]) == pytest.approx(0.25)  # no clipping


boxes = st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(1, 1000), st.integers(1, 1000)).filter(
    lambda b: b[0] < b[2] and b[1] < b[3]
)


@given(boxes, boxes)
def test_iou_symmetric_bounded_and_matches_torchvision(a, b):
    value = schema.iou(a, b)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(schema.iou(b, a))
    assert schema.batch_iou([a], [b])[0] == pytest.approx(value)


@given(boxes, st.integers(28, 2000), st.integers(28, 2000))
def test_pixel_round_trip_within_one_unit(box, width, height):
    back = schema.pixels_to_norm(schema.norm_to_pixels(box, width, height), width, height)
    assert all(abs(x - y) <= 1 for x, y in zip(back, box, strict=True))


def test_unit_and_qwen25_conversions():
    assert schema.unit_to_norm([0.1, 0.2, 0.5, 1.02]) == [100, 200, 500, 1000]
    assert schema.norm_to_unit([100, 200, 500, 1000]) == [0.1, 0.2, 0.5, 1.0]
    assert schema.qwen25_to_norm([28, 56, 280, 560], 560, 560) == [50, 100, 500, 1000]
