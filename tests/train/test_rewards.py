"""The GRPO rewards on literal completions: every edge case the paper's format allows or forbids."""

from __future__ import annotations

import pytest

from univg.rewards import format_reward, image_index_reward, iou_reward, reward_functions

TRUTH = [0, 0, 100, 100]
THINK = "<think>The red square in image 2 matches the description.</think>"


def rewards(completion, answer_format="indexed", box=TRUTH, target=2):
    """(iou, format) of one completion."""
    got_iou = iou_reward([completion], box=[box], target_image=[target], answer_format=answer_format)
    got_format = format_reward([completion], answer_format=answer_format)
    return got_iou[0], got_format[0]


# ----------------------------------------------------------------------------- well-formed answers
def test_perfect_indexed_answer_earns_both_rewards():
    assert rewards(f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>") == (1.0, 1.0)


def test_perfect_univg_r1_answer_earns_both_rewards():
    assert rewards(f"{THINK}<answer>(0,0),(100,100)</answer>", "univg-r1") == (1.0, 1.0)


def test_iou_is_continuous_not_thresholded():
    # overlap 50x100 = 5000 over union 10000 + 10000 - 5000
    got, _ = rewards(f"{THINK}<answer>Image-2: (50,0),(150,100)</answer>")
    assert got == pytest.approx(1 / 3)
    got, _ = rewards(f"{THINK}<answer>Image-2: (90,90),(190,190)</answer>")
    assert got == pytest.approx(100 / (20000 - 100))


def test_disjoint_box_earns_format_but_no_iou():
    assert rewards(f"{THINK}<answer>Image-2: (500,500),(600,600)</answer>") == (0.0, 1.0)


def test_inverted_predicted_box_earns_no_iou():
    got, _ = rewards(f"{THINK}<answer>Image-2: (100,100),(0,0)</answer>")
    assert got == 0.0


def test_spaces_after_commas_are_allowed():
    assert rewards(f"{THINK}<answer>Image-2: (0, 0), (100, 100)</answer>") == (1.0, 1.0)
    assert rewards(f"{THINK}<answer>(0, 0), (100, 100)</answer>", "univg-r1") == (1.0, 1.0)


def test_space_before_a_comma_is_not_a_box():
    assert rewards(f"{THINK}<answer>Image-2: (0 ,0),(100 ,100)</answer>") == (0.0, 0.0)


def test_text_before_think_and_whitespace_between_tags_are_tolerated():
    assert rewards(f"Sure. {THINK}\n<answer>Image-2: (0,0),(100,100)</answer>") == (1.0, 1.0)


def test_one_final_newline_is_tolerated():
    assert rewards(f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>\n") == (1.0, 1.0)


# ----------------------------------------------------------------------------- truncation and extra text
@pytest.mark.parametrize(
    "completion",
    [
        "<think>The red square is",  # cut inside the chain
        f"{THINK}<answer>Image-2: (0,0),(100,100)",  # cut before </answer>
        f"{THINK}<answer>Image-2: (0,0),(10",  # cut inside the box
        f"{THINK}<answ",
        "",
    ],
)
def test_truncated_chain_scores_zero_on_both(completion):
    assert rewards(completion) == (0.0, 0.0)
    assert rewards(completion.replace("Image-2: ", ""), "univg-r1") == (0.0, 0.0)


def test_text_after_answer_keeps_iou_but_fails_format():
    assert rewards(f"{THINK}<answer>Image-2: (0,0),(100,100)</answer> I hope this helps.") == (1.0, 0.0)
    assert rewards(f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>\n\n") == (1.0, 0.0)


def test_box_only_inside_think_earns_nothing():
    completion = "<think>Maybe Image-2: (0,0),(100,100) is it.</think><answer>I am not sure</answer>"
    assert rewards(completion) == (0.0, 0.0)
    no_answer = "<think>It is Image-2: (0,0),(100,100)</think>"
    assert rewards(no_answer) == (0.0, 0.0)


def test_box_in_think_does_not_leak_into_the_answer():
    completion = "<think>Not Image-2: (0,0),(100,100).</think><answer>Image-2: (0,0),(50,100)</answer>"
    assert rewards(completion) == (0.5, 1.0)


def test_missing_think_fails_format_only():
    assert rewards("<answer>Image-2: (0,0),(100,100)</answer>") == (1.0, 0.0)


def test_extra_text_inside_answer_fails_format_only():
    assert rewards(f"{THINK}<answer>It is Image-2: (0,0),(100,100)</answer>") == (1.0, 0.0)


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    "box_text",
    ["(-10,0),(100,100)", "(0,-5),(100,100)", "(0.5,0),(100,100)", "(0,0),(99.5,100)", "(0,0),(1e2,100)"],
)
def test_negative_or_decimal_numbers_are_not_a_box(box_text):
    assert rewards(f"{THINK}<answer>Image-2: {box_text}</answer>") == (0.0, 0.0)
    assert rewards(f"{THINK}<answer>{box_text}</answer>", "univg-r1") == (0.0, 0.0)


def test_several_boxes_score_the_first_and_fail_format():
    completion = f"{THINK}<answer>Image-2: (0,0),(50,100) Image-2: (0,0),(100,100)</answer>"
    assert rewards(completion) == (0.5, 0.0)
    completion = f"{THINK}<answer>(0,0),(50,100),(0,0),(100,100)</answer>"
    assert rewards(completion, "univg-r1") == (0.5, 0.0)


def test_only_the_first_answer_span_counts():
    completion = f"{THINK}<answer>Image-2: (500,500),(600,600)</answer><answer>Image-2: (0,0),(100,100)</answer>"
    assert rewards(completion) == (0.0, 0.0)


# ----------------------------------------------------------------------------- image index
def test_indexed_format_needs_the_right_image_index():
    assert rewards(f"{THINK}<answer>Image-1: (0,0),(100,100)</answer>") == (0.0, 1.0)
    assert rewards(f"{THINK}<answer>(0,0),(100,100)</answer>") == (0.0, 0.0)
    assert rewards(f"{THINK}<answer>Image-2:(0,0),(100,100)</answer>") == (1.0, 1.0)
    # the index must sit right before the box
    assert rewards(f"{THINK}<answer>Image-2: box (0,0),(100,100)</answer>") == (0.0, 0.0)


def test_univg_r1_format_ignores_the_image_index_for_iou_and_rejects_it_for_format():
    assert rewards(f"{THINK}<answer>Image-1: (0,0),(100,100)</answer>", "univg-r1") == (1.0, 0.0)
    got = iou_reward([f"{THINK}<answer>(0,0),(100,100)</answer>"], box=[TRUTH], answer_format="univg-r1")
    assert got == [1.0]  # no target_image column needed


def test_image_index_reward():
    completions = [
        f"{THINK}<answer>Image-2: (0,0),(1,1)</answer>",
        f"{THINK}<answer>Image-3: (0,0),(1,1)</answer>",
        f"{THINK}<answer>(0,0),(1,1)</answer>",
        "<think>Image-2: (0,0),(1,1)</think>",
    ]
    assert image_index_reward(completions, target_image=[2, 2, 2, 2]) == [1.0, 0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- TRL calling conventions
def test_chat_message_completions_are_read():
    text = f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>"
    plain_content = [{"role": "assistant", "content": text}]
    parts_content = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    for completion in (plain_content, parts_content):
        assert rewards(completion) == (1.0, 1.0)


def test_batch_of_completions_uses_one_column_entry_each():
    completions = [
        f"{THINK}<answer>Image-1: (0,0),(100,100)</answer>",
        f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>",
        f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>",
    ]
    got = iou_reward(
        completions,
        box=[[0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 50, 100]],
        target_image=[1, 2, 2],
        prompts=["p"] * 3,  # TRL passes more columns than a reward needs
        trainer_state=None,
    )
    assert got == [1.0, 1.0, 0.5]
    assert format_reward(completions, prompts=["p"] * 3) == [1.0, 1.0, 1.0]


def test_wiring_errors_are_explicit():
    one = [f"{THINK}<answer>Image-2: (0,0),(100,100)</answer>"]
    with pytest.raises(ValueError, match="target_image"):
        iou_reward(one, box=[TRUTH])
    with pytest.raises(ValueError, match="one entry per completion"):
        iou_reward(one * 2, box=[TRUTH], target_image=[2, 2])
    with pytest.raises(ValueError, match="unknown answer format"):
        format_reward(one, answer_format="json")
    with pytest.raises(ValueError, match=r"\[x1, y1, x2, y2\]"):
        iou_reward(one, box=[[1, 2, 3]], target_image=[2])


def test_reward_registry_binds_the_format_and_keeps_trl_names():
    from trl.trainer.utils import get_callable_name

    funcs = reward_functions(["iou", "format"], answer_format="univg-r1")
    assert [get_callable_name(f) for f in funcs] == ["iou_reward", "format_reward"]
    text = f"{THINK}<answer>(0,0),(100,100)</answer>"
    assert funcs[0]([text], box=[TRUTH], target_image=[2]) == [1.0]
    assert funcs[1]([text]) == [1.0]
    with pytest.raises(ValueError, match="unknown reward"):
        reward_functions(["iou", "length"])


# ----------------------------------------------------------------------------- pinned by mutation testing
def test_image_index_reward_reads_the_tagged_answer_only_and_names_its_column():
    tagged, untagged = "<answer>Image-2: (1,2),(3,4)</answer>", "Image-2: (1,2),(3,4)"
    assert image_index_reward([tagged, untagged, tagged], target_image=[2, 2, 1]) == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="'target_image'"):
        image_index_reward([tagged, tagged], target_image=[2])


def test_reward_columns_and_refusals_are_named():
    from univg.rewards import _per_completion

    with pytest.raises(ValueError, match=r"column 'box' must hold one entry per completion \(2\), got nothing"):
        iou_reward(["a", "b"], box=None)
    with pytest.raises(ValueError, match=r"column 'box' .* got list of length 1"):
        iou_reward(["a", "b"], box=[[1, 2, 3, 4]])
    with pytest.raises(ValueError, match=r"column 'target_image' .* got list of length 1"):
        iou_reward(["a", "b"], box=[[1, 2, 3, 4]] * 2, target_image=[1])
    with pytest.raises(ValueError, match=r"^iou_reward in 'indexed' format needs the 'target_image' column$"):
        iou_reward(["a"], box=[[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="got str of length 4"):
        _per_completion("box", "abcd", 4)  # a string is not a column, even of the right length
    with pytest.raises(ValueError, match=r"^at least one reward function is needed$"):
        reward_functions([])


def test_iou_reward_reads_the_tagged_answer_only():
    untagged = "Image-2: (1,2),(3,4)"
    assert iou_reward([untagged], box=[[1, 2, 3, 4]], target_image=[2]) == [0.0]
    assert iou_reward([f"<answer>{untagged}</answer>"], box=[[1, 2, 3, 4]], target_image=[2]) == [1.0]
