import pytest

from univg.answers import completion_text, format_completion, instruction_text, is_strict_format, parse_answer
from univg.prompts import user_message


@pytest.mark.parametrize(
    "text, allow_untagged, expected",
    [
        ("<think>x</think><answer>(1,2),(3,4)</answer>", False, ((1, 2, 3, 4), None)),
        ("<answer>Image-2: (1, 2), (3, 4)</answer>", False, ((1, 2, 3, 4), 2)),
        ("<think>(9,9),(10,10)</think><answer>(1,2),(3,4)</answer>", False, ((1, 2, 3, 4), None)),
        ("<think>(9,9),(10,10)</think><answer>none</answer>", False, None),
        ("<think>x</think><answer>(1,2),(3,4)", False, None),  # never closes: truncated
        ("<answer>(1,2),(3,4)</answer><answer>(5,6),(7,8)</answer>", False, ((1, 2, 3, 4), None)),
        ("<answer>(-1,2),(3,4)</answer>", False, None),
        ("<answer>(1.5,2),(3,4)</answer>", False, None),
        ("(1,2),(3,4)", False, None),
        ("(1,2),(3,4)", True, ((1, 2, 3, 4), None)),
        ("<think>(9,9),(10,10)</think> Image-3: (1,2),(3,4)", True, ((1, 2, 3, 4), 3)),
        ("<answer>(1,2),(3,4)", True, None),  # an unclosed tag is still no answer
        ("<answer>Image-2 (1,2),(3,4)</answer>", False, ((1, 2, 3, 4), None)),
    ],
)
def test_parse_answer(text, allow_untagged, expected):
    parsed = parse_answer(text, allow_untagged=allow_untagged)
    assert (None if parsed is None else (parsed.box, parsed.image_index)) == expected


def test_chat_message_completions():
    message = [{"role": "assistant", "content": "<answer>(1,2),(3,4)</answer>"}]
    assert parse_answer(message).box == (1, 2, 3, 4)
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "<answer>(5,6),(7,8)</answer>"}]}]
    assert completion_text(parts) == "<answer>(5,6),(7,8)</answer>"


@pytest.mark.parametrize(
    "text, fmt, ok",
    [
        ("<think>a</think><answer>(1,2),(3,4)</answer>", "univg-r1", True),
        ("preamble <think>a</think>\n<answer>(1, 2), (3, 4)</answer>\n", "univg-r1", True),
        ("<think>a</think><answer>(1,2),(3,4)</answer> extra", "univg-r1", False),
        ("<think>a</think><answer>(1,2),(3,4)</answer>\n\n", "univg-r1", False),
        ("<think>a</think><answer>Image-1: (1,2),(3,4)</answer>", "univg-r1", False),
        ("<think>a</think><answer>Image-1: (1,2),(3,4)</answer>", "indexed", True),
        ("<think>a</think><answer>(1,2),(3,4)</answer>", "indexed", False),
        ("<answer>Image-1: (1,2),(3,4)</answer>", "indexed", False),
    ],
)
def test_strict_format(text, fmt, ok):
    assert is_strict_format(text, fmt) is ok


def test_sft_target_is_strict_and_parses_back():
    text = format_completion("Image 2 has it.", [10, 20, 30, 40], 2, "indexed")
    assert is_strict_format(text, "indexed")
    assert parse_answer(text).box == (10, 20, 30, 40) and parse_answer(text).image_index == 2
    assert is_strict_format(format_completion("c", [1, 2, 3, 4], 1, "univg-r1"), "univg-r1")


def test_prompt_has_images_first_then_paper_instruction():
    message = user_message(3, "Where?", "univg-r1")
    assert [part["type"] for part in message["content"]] == ["image", "image", "image", "text"]
    assert message["content"][-1]["text"].endswith(
        "First output the thinking process in <think> </think> tags and then output the bounding box in <answer> </answer> tags."
    )
    with pytest.raises(ValueError):
        instruction_text("q", "other")


@pytest.mark.parametrize("answer_format", ["indexed", "univg-r1"])
def test_each_format_reads_back_what_it_writes(answer_format):
    """Writer and parser live side by side in univg.answers: an SFT target parses to its own box,
    names its image exactly when the format does, and passes the format reward's strict pattern."""
    from univg.answers import ANSWER_FORMATS, format_completion, instruction_text, is_strict_format

    assert answer_format in ANSWER_FORMATS
    target = format_completion("Image 2 has it.", [10, 20, 300, 400], 2, answer_format)
    parsed = parse_answer(target)
    assert parsed.box == (10, 20, 300, 400)
    assert parsed.image_index == (2 if answer_format == "indexed" else None)
    assert is_strict_format(target, answer_format)
    assert ("Image-k" in instruction_text("Find it.", answer_format)) == (answer_format == "indexed")


def test_unknown_format_is_refused_everywhere_with_one_message():
    from univg.answers import format_box, instruction_text, is_strict_format

    for call in (lambda: format_box([1, 2, 3, 4], 1, "json"), lambda: instruction_text("q", "json"),
                 lambda: is_strict_format("x", "json")):
        with pytest.raises(ValueError, match="unknown answer format 'json'; choose from"):
            call()


# ----------------------------------------------------------------------------- pinned by mutation testing
@pytest.mark.parametrize("completion, text", [
    ({"role": "assistant", "content": "<answer>(1,2),(3,4)</answer>"}, "<answer>(1,2),(3,4)</answer>"),
    ({"role": "assistant"}, ""),  # a message without content is empty text, not "None"
    ([{"type": "text"}, {"type": "text", "text": "a"}, "b", {"content": "c"}, 5], "abc"),  # parts joined as is
    (["the content"], "the content"),  # a plain string part is text even if it says "content"
    (None, ""),
    (42, "42"),
])
def test_completion_text_reads_every_shape_trl_passes(completion, text):
    assert completion_text(completion) == text


def test_parsing_is_strict_by_default():
    """Rewards call the parser without arguments: untagged text must not earn a box there."""
    from univg.answers import answer_span

    assert parse_answer("(1,2),(3,4)") is None and answer_span("(1,2),(3,4)") is None


def test_the_answer_span_ends_at_its_own_closing_tag():
    from univg.answers import answer_span

    assert answer_span("<think>a</think>rest", allow_untagged=True) == "rest"  # the think block is removed
    assert parse_answer("</answer><answer>(1,2),(3,4)</answer>").box == (1, 2, 3, 4)  # a stray close before it
    assert parse_answer("<answer>none</answer> later (5,6),(7,8)</answer>") is None  # the first close ends it
