"""Behaviour of the tiny model end to end: multi-image generation, batching, training step, TRL inputs."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from univg.models.generation import generate_texts
from univg.prompts import assistant_message, user_message


def coloured(seed: int, size: int = 112) -> Image.Image:
    """A reproducible noisy image, different for every seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_generates_from_two_images(tiny, two_images):
    model, processor = tiny
    messages = [user_message(2, "Which image holds the red square?")]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=two_images, return_tensors="pt")
    # 112x112 -> 8x8 patches of 14 -> 16 tokens per image after the 2x2 merge
    assert (inputs["input_ids"] == model.config.image_token_id).sum().item() == 2 * 16
    replies = generate_texts(model, processor, [messages], [two_images], max_new_tokens=8)
    assert len(replies) == 1 and isinstance(replies[0], str)
    assert "<|im_end|>" not in replies[0] and "<|image_pad|>" not in replies[0]


def test_generation_mid_training_leaves_the_model_in_train_mode(tiny, two_images):
    model, processor = tiny
    model.train()
    try:
        first = generate_texts(model, processor, [[user_message(2, "Where?")]], [two_images], max_new_tokens=6)
        assert model.training
    finally:
        model.eval()
    assert generate_texts(model, processor, [[user_message(2, "Where?")]], [two_images], max_new_tokens=6) == first


def test_sample_alone_and_in_a_batch_agree(tiny):
    model, processor = tiny
    samples = [
        ([user_message(2, "Short?")], [coloured(0), coloured(1)]),
        ([user_message(3, "A much longer question about the third image and its blue circle?")],
         [coloured(2), coloured(3), coloured(4)]),
        ([user_message(2, "Mid-length question here?")], [coloured(5), coloured(6)]),
    ]
    alone = [generate_texts(model, processor, [m], [i], max_new_tokens=10)[0] for m, i in samples]
    batched = generate_texts(model, processor, [m for m, _ in samples], [i for _, i in samples], max_new_tokens=10)
    assert batched == alone
    assert len(set(alone)) > 1  # the images and questions do change the (random) model's output


def test_forward_backward_with_images(tiny, two_images):
    model, processor = tiny
    answers = ["<think>red</think><answer>Image-1: (1,2),(3,4)</answer>", "<think>b</think><answer>Image-2: (5,6),(7,8)</answer>"]
    texts = [
        processor.apply_chat_template([user_message(2, "Where?"), assistant_message(a)], tokenize=False)
        for a in answers
    ]
    batch = processor(text=texts, images=two_images + two_images[::-1], padding=True, return_tensors="pt")
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    model.train()
    try:
        model.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
    finally:
        model.eval()
    assert math.isfinite(loss.item())
    assert loss.item() > 0
    # A random model is near uniform over the vocabulary: ln(V) is the loss to expect.
    assert abs(loss.item() - math.log(model.config.text_config.vocab_size)) < 1.5
    vision_grad = model.model.visual.patch_embed.proj.weight.grad
    assert vision_grad is not None and vision_grad.abs().sum() > 0  # gradients reach the vision tower
    model.zero_grad()


def test_trl_collators_build_batches_the_model_accepts(tiny, two_images):
    """SFT's prompt/completion collator and GRPO's tokenising template call both work with the processor."""
    from trl.data_utils import prepare_multimodal_messages
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = tiny
    answer = "<think>red</think><answer>Image-1: (1,2),(3,4)</answer>"
    examples = [
        {"prompt": [user_message(2, "Where?")], "completion": [assistant_message(answer)], "images": two_images},
        {"prompt": [user_message(1, "And here?")], "completion": [assistant_message(answer)], "images": two_images[:1]},
    ]
    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    batch = collator(examples)
    target = batch["labels"][0][batch["labels"][0] != -100]
    assert processor.tokenizer.decode(target) == answer + "<|im_end|>\n"
    with torch.no_grad():
        assert math.isfinite(model(**batch).loss.item())

    prompts = [prepare_multimodal_messages([user_message(2, "Where?")], images=two_images)]
    tokenized = processor.apply_chat_template(
        conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    ids = tokenized["input_ids"][0]
    assert ids.count(model.config.image_token_id) == 32
    assert processor.tokenizer.decode(ids).endswith("<|im_end|>\n<|im_start|>assistant\n")
