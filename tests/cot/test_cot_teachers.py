"""Rule teacher, the image-naming parser and best-of-n selection."""

from __future__ import annotations

import random
import re

import pytest
from cot_helpers import read_jsonl

from univg.config import TASKS
from univg.cot.rule_teacher import RuleTeacher, coarse_position, rule_chain
from univg.cot.teachers import Candidate, rule_score, select_best
from univg.data.naming import last_named_image, named_images
from univg.data.scan import image_scan, target_sentence


@pytest.mark.parametrize("text,names", [
    ("Image 1 shows a circle; image 3 has it.", [1, 3]),
    ("compare Image-2 with image3 and IMAGE 4", [2, 3, 4]),
    ("the third image, then the First image", [3, 1]),
    ("frame 2 and the 5th frame", [2, 5]),
    ("images 1, 2 and 4 share it; the answer is in image 2", [1, 2, 4, 2]),
    ("an imaged object at (120,340),(560,780)", []),
    ("no names here at all", []),
])
def test_named_images(text, names):
    assert named_images(text) == names
    assert last_named_image(text) == (names[-1] if names else None)


def test_coarse_positions():
    assert coarse_position([0, 0, 100, 100]) == "top left"
    assert coarse_position([400, 400, 600, 600]) == "centre"
    assert coarse_position([800, 400, 1000, 600]) == "right"
    assert coarse_position([400, 900, 600, 1000]) == "bottom"


# ----------------------------------------------------------------------------- hand-built scenes
def obj(shape, colour, box, texture="solid", size="medium"):
    return {"shape": shape, "colour": colour, "texture": texture, "size": size, "box": box}


RED_CIRCLE, BLUE_SQUARE = obj("circle", "red", [50, 50, 250, 250]), obj("square", "blue", [700, 700, 900, 900])
GREEN_CROSS = obj("cross", "green", [700, 60, 900, 260])


def scene_record(task, images, target, reference=None, facts=None, marks=None):
    frames = [{"objects": objs, "marks": (marks or {}).get(i + 1, []), "view": "original"} for i, objs in enumerate(images)]
    t_image, t_obj = target
    return {
        "id": f"hand-{task}", "task": task, "images": [f"{task}_{i}.png" for i in range(len(images))],
        "question": f"A {task} question.", "target_image": t_image, "box": images[t_image - 1][t_obj]["box"],
        "source": "hand",
        "meta": {"scene": {"image_size": [112, 112], "images": frames, "target": {"image": t_image, "object": t_obj},
                           "reference": None if reference is None else {"image": reference[0], "object": reference[1]},
                           "facts": facts or {}}},
    }


HAND = {
    "common_object": scene_record("common_object", [[RED_CIRCLE, BLUE_SQUARE], [GREEN_CROSS, RED_CIRCLE], [RED_CIRCLE]],
                                  (2, 1), facts={"shared": {"shape": "circle", "colour": "red"}}),
    "correspondence": scene_record("correspondence", [[RED_CIRCLE, BLUE_SQUARE], [BLUE_SQUARE, obj("circle", "red", [400, 400, 600, 600], size="large")]],
                                   (2, 1), (1, 0), {"mark": "dot", "size_before": "medium", "size_after": "large"},
                                   marks={1: [{"kind": "dot", "object": 0}]}),
    "diff": scene_record("diff", [[RED_CIRCLE, BLUE_SQUARE], [obj("circle", "green", [50, 50, 250, 250]), BLUE_SQUARE]],
                         (2, 0), (1, 0), {"change": "colour", "before": RED_CIRCLE}),
    "group_grounding": scene_record("group_grounding", [[RED_CIRCLE], [GREEN_CROSS], [BLUE_SQUARE]], (3, 0),
                                    facts={"description": "the blue square"}),
    "multi_view": scene_record("multi_view", [[RED_CIRCLE, BLUE_SQUARE], [obj("circle", "red", [750, 50, 950, 250]), BLUE_SQUARE]],
                               (2, 0), (1, 0), {"transform": "mirrored", "position": "top-left"}),
    "object_tracking": scene_record("object_tracking", [[RED_CIRCLE], [obj("circle", "red", [300, 50, 500, 250])],
                                                        [obj("circle", "red", [600, 50, 800, 250])]],
                                    (3, 0), facts={"track": [[1, 0], [2, 0], [3, 0]], "direction": "right"}),
    "reasoning": scene_record("reasoning", [[obj("circle", "red", [50, 50, 450, 450], size="large"), GREEN_CROSS],
                                            [BLUE_SQUARE, obj("cross", "red", [400, 400, 600, 600])]],
                              (2, 1), (1, 0), {"rule": "same colour as the largest shape in image 1",
                                               "attribute": "colour", "extreme": "largest", "value": "red"}),
    "refer_grounding": scene_record("refer_grounding", [[BLUE_SQUARE], [RED_CIRCLE, BLUE_SQUARE], [BLUE_SQUARE]],
                                    (2, 1), facts={"expression": "the blue square"}),
    "region": scene_record("region", [[RED_CIRCLE, GREEN_CROSS], [GREEN_CROSS, obj("circle", "red", [600, 600, 800, 800])]],
                           (2, 1), (1, 0), {"mark": "box", "box": [50, 50, 250, 250]}, marks={1: [{"kind": "box", "object": 0}]}),
    "view_diff": scene_record("view_diff", [[RED_CIRCLE], [RED_CIRCLE, BLUE_SQUARE]], (2, 1),
                              facts={"change": "added", "before": None, "shift_px": [3, 0]}),
}
# Words each chain must contain: the decisive attributes of its task.
DECISIVE = {
    "common_object": ["red circle"], "correspondence": ["red circle", "dot", "large"], "diff": ["red", "green"],
    "group_grounding": ["blue square"], "multi_view": ["red circle", "mirrored"], "object_tracking": ["red circle", "right"],
    "reasoning": ["largest", "red"], "refer_grounding": ["blue square"], "region": ["red circle", "box"],
    "view_diff": ["blue square", "camera"],
}


def _assert_good_chain(record, chain, style="brief"):
    assert last_named_image(chain) == record["target_image"], chain
    assert 40 <= len(chain) <= (250 if style == "brief" else 2000), chain
    assert not re.search(r"\(\d+,\s*\d+\)|\d{3}", chain), f"coordinates in the chain: {chain}"
    assert "<" not in chain and "\n" not in chain


@pytest.mark.parametrize("task", TASKS)
def test_rule_chain_for_hand_built_scene(task):
    record = HAND[task]
    for seed in range(12):
        chain, used_scene = rule_chain(record, random.Random(seed), style="brief")
        assert used_scene
        _assert_good_chain(record, chain)
        for word in DECISIVE[task]:
            assert word in chain, (word, chain)


@pytest.mark.parametrize("task", TASKS)
def test_rule_chain_wording_varies(task):
    chains = {rule_chain(HAND[task], random.Random(seed), style="brief")[0] for seed in range(20)}
    assert len(chains) >= 2


@pytest.mark.parametrize("style", ["scan", "keyed", "brief"])
def test_rule_chains_on_generated_mig_synth(synth_dir, style):
    records = read_jsonl(synth_dir / "train.jsonl")
    assert {r["task"] for r in records} == set(TASKS)
    outcomes = RuleTeacher(num_candidates=3, seed=0, style=style).run(records, synth_dir)
    for record, outcome in zip(records, outcomes, strict=True):
        assert outcome.extra["scene"] is True
        assert len(outcome.candidates) == 3
        for candidate in outcome.candidates:
            _assert_good_chain(record, candidate.text, style)
        target = record["meta"]["scene"]["images"][record["target_image"] - 1]["objects"][record["meta"]["scene"]["target"]["object"]]
        if record["task"] not in ("diff", "view_diff", "common_object"):
            assert target["shape"] in outcome.candidates[outcome.chosen].text


@pytest.mark.parametrize("style", ["scan", "keyed"])
@pytest.mark.parametrize("task", TASKS)
def test_scan_chain_reads_every_image_then_concludes_with_the_target(task, style):
    record = HAND[task]
    chain, used_scene = rule_chain(record, random.Random(0), style=style)
    assert used_scene
    _assert_good_chain(record, chain, style)
    images = record["meta"]["scene"]["images"]
    for k, image in enumerate(images, start=1):
        assert f"Image {k}: {image_scan(image)}." in chain
    target = images[record["target_image"] - 1]["objects"][record["meta"]["scene"]["target"]["object"]]
    assert chain.endswith(target_sentence(target, record["target_image"])), chain


def test_unknown_chain_style_is_refused():
    with pytest.raises(ValueError, match="chain style"):
        RuleTeacher(style="long")


def test_rule_teacher_is_deterministic_per_record():
    teacher = RuleTeacher(num_candidates=2, seed=3)
    records = list(HAND.values())
    forward = [o.candidates[0].text for o in teacher.run(records, None)]
    backward = [o.candidates[0].text for o in teacher.run(records[::-1], None)][::-1]
    assert forward == backward  # wording depends on (seed, id, candidate), never on row order


def test_records_without_a_scene_get_a_generic_chain_that_names_the_target():
    record = {"id": "imported-1", "task": "lisa", "images": ["a.jpg", "b.jpg", "c.jpg"], "question": "Which cup?",
              "target_image": 3, "box": [1, 2, 30, 40], "source": "univg-r1"}
    chain, used_scene = rule_chain(record, random.Random(0))
    assert not used_scene
    assert last_named_image(chain) == 3
    broken = {**record, "meta": {"scene": {"images": "garbage", "target": {"image": 3, "object": 9}}}}
    chain, used_scene = rule_chain(broken, random.Random(0))
    assert not used_scene and last_named_image(chain) == 3
    disagreeing = {**HAND["diff"], "target_image": 1}  # the scene says image 2: do not trust it
    chain, used_scene = rule_chain(disagreeing, random.Random(0))
    assert not used_scene and set(named_images(chain)) == {1}


# ----------------------------------------------------------------------------- selection
RECORD = {"question": "Find it in image 2.", "target_image": 2, "box": [100, 100, 300, 300]}


def test_rule_score_rewards_faithful_chains():
    good = "Image 1 has a red circle; image 2 adds the blue square, so the answer is in image 2."
    wrong = "Image 2 adds the blue square, so the answer is in image 1."
    contradicting = good + " It sits at (700,700),(900,900)."
    agreeing = good + " It sits at (102,98),(300,305)."
    assert rule_score(RECORD, good) == 1.0
    assert rule_score(RECORD, wrong) < rule_score(RECORD, good)
    assert rule_score(RECORD, contradicting) < 1.0
    assert rule_score(RECORD, agreeing) == 1.0
    assert rule_score(RECORD, Candidate(good, answer_box=[700, 700, 900, 900])) < 1.0
    assert rule_score({**RECORD, "question": "The box (700,700),(900,900) in image 1..."}, contradicting) == 1.0


def test_select_best_by_rule_and_by_judge():
    chains = ["so it is image 1.", "Image 1 shows it; the answer is in image 2.", "Clearly in image 2, top left."]
    index, scores = select_best(RECORD, chains)
    assert index == 1 and len(scores) == 3 and scores[0] < scores[1]
    seen = []

    def judge(record, shown):
        seen.append(shown)
        return 1

    index, _ = select_best(RECORD, chains, judge)
    assert seen == [chains[1:]]  # the judge only sees faithful candidates
    assert index == 2
    assert select_best(RECORD, chains, lambda r, c: None)[0] == 1  # no verdict: the rule decides
    assert select_best(RECORD, chains, lambda r, c: 7)[0] == 1  # out of range: the rule decides
    calls = []
    select_best(RECORD, chains[:2], lambda r, c: calls.append(c) or 0)
    assert calls == []  # one faithful chain needs no judge
    with pytest.raises(ValueError):
        select_best(RECORD, [])
