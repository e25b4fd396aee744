"""The scan wording shared by perception pre-training and the rule teacher's scan chains."""

from __future__ import annotations

import pytest

from univg.cot.scan import cell_name, image_scan, object_phrase, scan_sentences, target_sentence


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
