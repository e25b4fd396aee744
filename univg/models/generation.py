"""Generation with a loaded model: one batched, left-padded call for eval, training samples,
pre-training gates and serving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    text: str  # the reply, special tokens removed
    prompt_tokens: int  # the conversation's own tokens, image tokens included, padding not
    completion_tokens: int  # new tokens up to and including the end-of-turn token


def generate(
    model,
    processor,
    batch_messages: Sequence[Sequence[dict]],
    batch_images: Sequence[Sequence[Any]],
    max_new_tokens: int = 128,
    do_sample: bool = False,
    **generate_kwargs: Any,
) -> list[Generation]:
    """Generate one reply per conversation, with its token counts (what a server reports as usage).

    Each conversation holds {'type': 'image'} placeholders matched, in order, by its image list.
    Prompts are left-padded, so a sample's greedy output does not depend on its batch. The model
    generates in eval mode and is handed back in the mode it came in.
    """
    import torch

    if len(batch_messages) != len(batch_images):
        raise ValueError(f"{len(batch_messages)} conversations but {len(batch_images)} image lists")
    texts = [processor.apply_chat_template(list(m), tokenize=False, add_generation_prompt=True) for m in batch_messages]
    images = [image for per_sample in batch_images for image in per_sample]
    inputs = processor(
        text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt"
    ).to(model.device)
    tokenizer = getattr(processor, "tokenizer", processor)
    was_training = model.training  # training callbacks call this mid-run: restore their mode after
    model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                pad_token_id=tokenizer.pad_token_id, **generate_kwargs,
            )
    finally:
        model.train(was_training)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    replies = tokenizer.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
    ends = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    generations = []
    for reply, count, row in zip(replies, prompt_counts, new_tokens.tolist(), strict=True):
        used = next((i + 1 for i, token in enumerate(row) if token in ends), len(row))
        generations.append(Generation(reply, int(count), used))
    return generations


def generate_texts(model, processor, batch_messages, batch_images, *args: Any, **kwargs: Any) -> list[str]:
    """`generate`, the reply texts only (new text, special tokens removed)."""
    return [g.text for g in generate(model, processor, batch_messages, batch_images, *args, **kwargs)]
