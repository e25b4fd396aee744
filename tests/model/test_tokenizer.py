"""The tiny tokenizer: digit splitting, reasoning tags, exact round trips, chat template with TRL."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from univg.answers import format_completion, parse_answer
from univg.models.tiny import REASONING_TAGS, SPECIAL_TOKENS, train_tokenizer
from univg.prompts import assistant_message, user_message


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[1].tokenizer


def tokens(tokenizer, text):
    return tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))


def test_digits_are_single_tokens(tokenizer):
    assert tokens(tokenizer, "347") == ["3", "4", "7"]
    assert tokens(tokenizer, "(120,45)")[1:4] == ["1", "2", "0"]
    assert all(len(t) == 1 for t in tokens(tokenizer, "0123456789"))


def test_answer_syntax_tokenises_sensibly(tokenizer):
    pieces = tokens(tokenizer, "Image-2: (120,45),(300,410)")
    assert pieces[:4] == ["Image", "-", "2", ":"]  # "Image" is learned, the index stands alone
    digits = [p for p in pieces if p.isdigit()]
    assert digits == list("212045300410")  # every digit is its own token
    assert "".join(p for p in pieces if not p.isdigit()).replace("\u0120", " ") == "Image-: (,),(,)"


@pytest.mark.parametrize("tag", REASONING_TAGS)
def test_reasoning_tags_are_single_non_special_tokens(tokenizer, tag):
    ids = tokenizer.encode(tag, add_special_tokens=False)
    assert len(ids) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == tag
    assert tag not in tokenizer.all_special_tokens


def test_special_tokens_are_single_and_skipped(tokenizer):
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, token
        assert tokenizer.decode(ids, skip_special_tokens=True) == ""
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.bos_token is None  # nothing is prepended: the chat template carries structure
    assert tokenizer.encode("hi", add_special_tokens=True) == tokenizer.encode("hi", add_special_tokens=False)


@pytest.mark.parametrize(
    "text",
    [
        "<think>a b</think><answer>Image-2: (120,45),(300,410)</answer>",
        "<think>The red circle is in image 3, top left.</think><answer>(0,0),(1000,1000)</answer>",
        "<think>  spaced\n\nlines\t</think>\n<answer>Image-10: (5, 7),(9, 11)</answer>\n",
    ],
)
def test_answer_strings_round_trip_exactly(tokenizer, text):
    decoded = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False), skip_special_tokens=True)
    assert decoded == text
    assert parse_answer(decoded) == parse_answer(text)


@settings(max_examples=60, deadline=None)
@given(
    cot=st.text(max_size=40),
    box=st.lists(st.integers(0, 1000), min_size=4, max_size=4),
    target=st.integers(1, 6),
)
def test_any_completion_round_trips(tokenizer, cot, box, target):
    text = format_completion(cot, box, target)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFC", text)


def test_training_is_deterministic(corpus_factory):
    corpus = corpus_factory(60, seed=3)
    first, second = train_tokenizer(corpus, 350), train_tokenizer(corpus, 350)
    assert first.get_vocab() == second.get_vocab()


def test_chat_template_renders_images_and_generation_prompt(tiny):
    processor = tiny[1]
    text = processor.apply_chat_template([user_message(2, "Where?")], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" * 1)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "system" not in text  # no default system prompt: short sequences matter on CPU
    plain = processor.apply_chat_template([user_message(2, "Where?")], tokenize=False)
    assert not plain.endswith("assistant\n")


def test_template_splits_prompt_and_completion_like_trl(tiny, two_images):
    """TRL's SFT collator renders prompt and prompt+completion and keeps the difference as completion."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    processor = tiny[1]
    answer = "<think>red</think><answer>Image-1: (1,2),(3,4)</answer>"
    example = {
        "prompt": prepare_multimodal_messages([user_message(2, "Where?")], images=two_images),
        "completion": prepare_multimodal_messages([assistant_message(answer)]),
    }
    rendered = apply_chat_template(example, processor)
    assert rendered["prompt"].endswith("<|im_start|>assistant\n")
    assert rendered["completion"] == answer + "<|im_end|>\n"  # the stop token is part of the target


def test_template_accepts_string_content_and_system_turn(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "<think>x</think><answer>(1,2),(3,4)</answer>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n<think>x</think><answer>(1,2),(3,4)</answer><|im_end|>\n"
    )


def test_assistant_mask_covers_reply_and_stop_token(tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == "ok<|im_end|>"
