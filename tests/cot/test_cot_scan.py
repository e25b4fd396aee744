"""The scan wording shared by perception pre-training and the rule teacher's scan chains."""

from __future__ import annotations

import pytest

from univg.data.scan import cell_name, image_scan, object_phrase, scan_sentences, target_sentence


def obj(shape, colour, box, size="medium", texture="solid"):
    return {"shape": shape, "colour": colour, "box": box, "size": size, "texture": texture}


@pytest.mark.parametrize(("box", "cell"), [
    ([50, 50, 250, 250], "top-left"), ([600, 80, 900, 400], "top-right"),
    ([80, 600, 400, 900], "bottom-left"), ([550, 550, 950, 950], "bottom-right"),
])
def test_cell_name_from_the_box_centre(box, cell):
    assert cell_name(box) == cell


def test_object_phrase_puts_colour_and_shape_first():
    assert object_phrase(obj("circle", "red", [0, 0, 9, 9], "large", "striped"), ["dot"]) == "red circle, large, striped, dot"
    assert object_phrase(obj("cross", "blue", [0, 0, 9, 9], "small"), ["box"]) == "blue cross, small, framed"


def test_image_scan_reads_every_cell_in_order_with_empty_ones():
    image = {"objects": [obj("square", "blue", [600, 600, 900, 900]), obj("circle", "red", [50, 50, 250, 250], "small")],
             "marks": [{"kind": "dot", "object": 1}]}
    assert image_scan(image) == ("top-left: red circle, small, dot; top-right: empty; bottom-left: empty; "
                                 "bottom-right: blue square, medium")


def test_scan_sentences_and_target_sentence_name_the_images():
    images = [{"objects": [obj("circle", "red", [50, 50, 250, 250])]}, {"objects": []}]
    assert scan_sentences(images) == [
        "Image 1: top-left: red circle, medium; top-right: empty; bottom-left: empty; bottom-right: empty.",
        "Image 2: top-left: empty; top-right: empty; bottom-left: empty; bottom-right: empty.",
    ]
    assert target_sentence(images[0]["objects"][0], 1) == "The target is the red circle, medium, at the top-left of image 1."


def _load_diagnostics():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "scan_diagnostics.py"
    spec = importlib.util.spec_from_file_location("scan_diagnostics", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diagnostics_score_the_teachers_own_chains_as_perfect_and_catch_a_wrong_cell(synth_dir):
    import random

    from cot_helpers import read_jsonl

    from univg.answers import format_completion
    from univg.cot.rule_teacher import rule_chain

    diagnostics = _load_diagnostics()
    records = read_jsonl(synth_dir / "train.jsonl")
    perfect = [format_completion(rule_chain(r, random.Random(0), "scan")[0], r["box"], r["target_image"]) for r in records]
    result = diagnostics.diagnose(records, perfect)
    assert result["scan_colour_acc"] == result["scan_shape_acc"] == 1.0
    assert result["concluded"] == result["conclusion_object_acc"] == result["conclusion_cell_acc"] == 1.0
    assert result["answer_follows_conclusion"] == result["hit_when_conclusion_ok"] == 1.0
    flipped = [text.replace(" at the top-", " at the bottom-", 1) if " at the top-" in text else text.replace(" at the bottom-", " at the top-", 1)
               for text in perfect]
    assert diagnostics.diagnose(records, flipped)["conclusion_cell_acc"] < 1.0


def test_object_key_adds_size_or_texture_only_for_a_twin():
    from univg.data.scan import object_key

    red = obj("circle", "red", [0, 0, 9, 9], "large")
    assert object_key(red, [red, obj("square", "red", [0, 0, 9, 9])]) == "red circle"
    assert object_key(red, [red, obj("circle", "red", [0, 0, 9, 9], "small")]) == "large red circle"
    striped = obj("circle", "red", [0, 0, 9, 9], "large", "striped")
    assert object_key(striped, [striped, red]) == "striped red circle"


def test_keyed_chains_name_the_key_object_in_fixed_words_for_every_task(synth_dir):
    import random

    from cot_helpers import read_jsonl

    from univg.cot.rule_teacher import rule_chain

    records = read_jsonl(synth_dir / "train.jsonl")
    assert len({r["task"] for r in records}) == 10
    for record in records:
        scene = record["meta"]["scene"]
        target = scene["images"][record["target_image"] - 1]["objects"][scene["target"]["object"]]
        chain = rule_chain(record, random.Random(0), "keyed")[0]
        key = f"{target['colour']} {target['shape']} in image {record['target_image']}."
        assert f"We look for the {key}" in chain or f"We look for the {target['size']} {key}" in chain \
            or f"We look for the striped {key}" in chain, (record["task"], chain)
        assert chain == rule_chain(record, random.Random(7), "keyed")[0], "keyed chains are worded without randomness"
