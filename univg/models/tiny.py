"""The offline tiny Qwen VL models: tokenizer, processor and randomly initialised model, built locally.

No machine here reaches a model hub, so the default base model is built from scratch, with the
same architecture, processor, special tokens and chat format as Qwen2-VL (the default), or as
Qwen2.5-VL or Qwen3-VL (`model.family`): each from its real transformers config class, shrunk. Everything downstream
(SFT, GRPO, evaluation, serving) then runs the real transformers/TRL code paths, and the same code
loads a real Qwen2-VL checkpoint when one is given.

Choices that matter:
- The BPE pre-tokenizer is Qwen2's: digits are split one by one, so a coordinate such as 347 is
  the three tokens 3, 4, 7 (a model learns numbers digit by digit, as Qwen does).
- <think>, </think>, <answer>, </answer> are single *non-special* added tokens: they must survive
  decode(skip_special_tokens=True), because the rewards and the scorer parse them.
- The chat template is Qwen2-VL's without the default system prompt (short sequences matter on CPU);
  the assistant turn sits in {% generation %} markers so TRL's assistant-only loss also works.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from univg.config import ModelConfig
from univg.models.loading import parameter_counts

# Qwen2-VL's special tokens, in Qwen's order (ids follow the learned BPE vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
REASONING_TAGS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")
EOS_TOKEN = "<|im_end|>"  # end of an assistant turn: generation stops here
PAD_TOKEN = "<|endoftext|>"

PATCH_SIZE = 14  # Qwen2-VL and Qwen2.5-VL; Qwen3-VL's is 16
PATCH_SIZES = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 16}
SPATIAL_MERGE = 2
TEMPORAL_PATCH = 2
INFO_FILE = "univg_model.json"

# Qwen2-VL's template, minus the default system prompt, written with expression blocks only so the
# template source's own whitespace never leaks into the prompt.
CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\n' -}}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + image_count.value|string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' + video_count.value|string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)

# Always in the corpus (twice, to pass min_frequency), so the chat roles and the answer syntax get
# merges even from a small or CoT-less data set.
_SEED_TEXTS: tuple[str, ...] = (
    "system\nuser\nassistant\n",
    "<think>The object is in image 1.</think><answer>Image-1: (0,0),(1000,1000)</answer>",
    "<think>Look at each image in turn.</think><answer>(123,456),(789,901)</answer>",
    "Image-1: Image-2: Image-3: Image-4: Image-5: Image-6:",
) * 2


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Byte-level BPE with Qwen2's pre-tokenizer, wrapped as a transformers Qwen2 tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2TokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_pieces(corpus), trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(pair) for pair in model["merges"]]
    # Special tokens and tags follow the learned vocabulary, in Qwen's order.
    vocab = dict(model["vocab"])
    for token in (*SPECIAL_TOKENS, *REASONING_TAGS):
        vocab[token] = len(vocab)

    tokenizer = Qwen2TokenizerFast(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        errors="replace", model_max_length=32768, clean_up_tokenization_spaces=False, padding_side="left",
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TAGS])
    tokenizer.eos_token, tokenizer.pad_token = EOS_TOKEN, PAD_TOKEN
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


_TAG_SPLIT = re.compile("|".join(re.escape(tag) for tag in (*SPECIAL_TOKENS, *REASONING_TAGS)))


def _training_pieces(corpus: Iterable[str]) -> Iterator[str]:
    """The corpus (plus seed texts) with tags cut out: no merges are wasted on whole-token tags."""
    for text in itertools.chain(_SEED_TEXTS, corpus):
        for piece in _TAG_SPLIT.split(text or ""):
            if piece:
                yield piece


def token_ids(tokenizer) -> dict[str, int]:
    """Ids of every special token and reasoning tag, checked to be single tokens."""
    ids = {}
    for token in (*SPECIAL_TOKENS, *REASONING_TAGS):
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise RuntimeError(f"tokenizer splits {token!r} into {len(encoded)} tokens; it must be one")
        ids[token] = encoded[0]
    return ids


# ----------------------------------------------------------------------------- processor
def build_processor(tokenizer, cfg: ModelConfig, family: str = "qwen2_vl"):
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
    )
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    # Normalise around the synthetic background grey, so background patches are ~0 and objects
    # dominate the features (with CLIP's statistics the near-constant background swamped them and
    # the model learned to ignore its images).
    vision = {"patch_size": PATCH_SIZES[family], "temporal_patch_size": TEMPORAL_PATCH, "merge_size": SPATIAL_MERGE,
              "image_mean": [cfg.pixel_mean] * 3, "image_std": [cfg.pixel_std] * 3}
    processor_class, video_class = {
        "qwen2_vl": (Qwen2VLProcessor, Qwen2VLVideoProcessor),
        "qwen2_5_vl": (Qwen2_5_VLProcessor, Qwen2VLVideoProcessor),
        "qwen3_vl": (Qwen3VLProcessor, Qwen3VLVideoProcessor),
    }[family]
    image_processor = Qwen2VLImageProcessor(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, **vision)
    video_processor = video_class(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, **vision)
    return processor_class(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


# ----------------------------------------------------------------------------- model
def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) like Qwen's [16, 24, 24] of 64."""
    half = head_dim // 2
    temporal = max(1, round(half / 4))
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def check_sizes(cfg: ModelConfig) -> None:
    """Refuse sizes the architecture cannot take, with the reason, before any work is done."""
    problems = []
    if cfg.hidden_size % cfg.num_heads:
        problems.append(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
    elif (cfg.hidden_size // cfg.num_heads) % 2 or cfg.hidden_size // cfg.num_heads < 6:
        problems.append(f"head_dim {cfg.hidden_size // cfg.num_heads} must be even and >= 6 (rotary over t/h/w)")
    if cfg.num_heads % cfg.num_kv_heads:
        problems.append(f"num_heads {cfg.num_heads} is not divisible by num_kv_heads {cfg.num_kv_heads}")
    if cfg.vision_embed_dim % cfg.vision_heads:
        problems.append(f"vision_embed_dim {cfg.vision_embed_dim} is not divisible by vision_heads {cfg.vision_heads}")
    elif (cfg.vision_embed_dim // cfg.vision_heads) % 4:
        problems.append(
            f"vision head_dim {cfg.vision_embed_dim // cfg.vision_heads} must be divisible by 4 (2-D axial rotary)"
        )
    if cfg.min_pixels > cfg.max_pixels:
        problems.append(f"min_pixels {cfg.min_pixels} > max_pixels {cfg.max_pixels}")
    if problems:
        raise ValueError("model config: " + "; ".join(problems))


def build_config(cfg: ModelConfig, ids: dict[str, int], vocab_size: int, family: str = "qwen2_vl"):
    """The family's real transformers config class, shrunk to the sizes in `cfg`."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    head_dim = cfg.hidden_size // cfg.num_heads
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section(head_dim)}
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
        "bos_token_id": ids[PAD_TOKEN],  # as in Qwen2-VL: <|endoftext|>, never prepended
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
    }
    vision = {"depth": cfg.vision_depth, "num_heads": cfg.vision_heads, "patch_size": PATCH_SIZES[family],
              "spatial_merge_size": SPATIAL_MERGE, "temporal_patch_size": TEMPORAL_PATCH}
    if family == "qwen2_vl":
        config_class = Qwen2VLConfig
        text_config["max_window_layers"] = cfg.num_layers
        # the merger projects straight into the text width
        vision.update(embed_dim=cfg.vision_embed_dim, hidden_size=cfg.hidden_size, mlp_ratio=4)
    elif family == "qwen2_5_vl":
        config_class = Qwen2_5_VLConfig
        text_config["max_window_layers"] = cfg.num_layers
        vision.update(hidden_size=cfg.vision_embed_dim, intermediate_size=4 * cfg.vision_embed_dim,
                      out_hidden_size=cfg.hidden_size, window_size=112, fullatt_block_indexes=[cfg.vision_depth - 1])
    elif family == "qwen3_vl":
        config_class = Qwen3VLConfig
        text_config.update(head_dim=head_dim, rope_parameters={**rope, "mrope_interleaved": True})
        vision.update(hidden_size=cfg.vision_embed_dim, intermediate_size=4 * cfg.vision_embed_dim,
                      out_hidden_size=cfg.hidden_size, num_position_embeddings=256,
                      deepstack_visual_indexes=[cfg.vision_depth - 1])
    else:
        raise ValueError(f"no tiny build for model family {family!r}; choose from {sorted(PATCH_SIZES)}")
    return config_class(
        text_config=text_config,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        bos_token_id=ids[PAD_TOKEN],
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
    )


def init_model(config, seed: int):
    """Deterministic random weights: the same seed gives bit-identical parameters."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    text = config.text_config
    model.generation_config = GenerationConfig(
        bos_token_id=text.bos_token_id,
        eos_token_id=[text.eos_token_id, text.pad_token_id],
        pad_token_id=text.pad_token_id,
        do_sample=False,
    )
    return model.eval()


def seeing_init(model, gain: float = 1.0) -> int:
    """Give the patch embedding fixed colour-layout filters; returns how many channels were set.

    A real base model arrives with a vision tower that already sees; a tiny one trained from
    scratch on a few thousand samples learns to ignore its images and lean on text priors (we
    measured: loss identical with blank images). So, as a stand-in for visual pretraining, the
    first 3 x 16 output channels average each colour channel over a 4 x 4 grid of the patch
    (a colour map of the patch); the remaining channels stay random and everything stays trainable.
    """
    import torch

    weight = model.model.visual.patch_embed.proj.weight  # [embed, 3, temporal, patch, patch]
    embed, channels, temporal, size, _ = weight.shape
    edges = torch.linspace(0, size, 5).round().long().tolist()
    cells = [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    set_channels = 0
    with torch.no_grad():
        for colour in range(channels):
            for row, (y0, y1) in enumerate(cells):
                for col, (x0, x1) in enumerate(cells):
                    out = colour * 16 + row * 4 + col
                    if out >= embed:
                        return set_channels
                    weight[out].zero_()
                    weight[out, colour, :, y0:y1, x0:x1] = gain / (temporal * (y1 - y0) * (x1 - x0))
                    set_channels += 1
    return set_channels


# ----------------------------------------------------------------------------- factory
def build_tiny_model(cfg: ModelConfig, corpus: Iterable[str], out_dir: Path) -> dict[str, Any]:
    """Train the tokenizer on `corpus`, build processor + model of family `cfg.family` ('auto': Qwen2-VL),
    save all to `out_dir`; returns the info dict.

    The folder loads with AutoProcessor / AutoModelForImageTextToText.from_pretrained(out_dir) and
    holds `univg_model.json` (parameter counts, vocabulary size, token ids, sizes).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_sizes(cfg)

    family = "qwen2_vl" if cfg.family == "auto" else cfg.family

    # --- tokenizer and processor
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    ids = token_ids(tokenizer)
    processor = build_processor(tokenizer, cfg, family)

    # --- model
    config = build_config(cfg, ids, vocab_size=len(tokenizer), family=family)
    model = init_model(config, cfg.seed)
    if cfg.seeing_init:
        seeing_init(model)

    # --- save
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    info = {
        "model_type": config.model_type,
        "parameters": parameter_counts(model),
        "vocab_size": len(tokenizer),
        "learned_vocab_size": len(tokenizer) - len(SPECIAL_TOKENS) - len(REASONING_TAGS),
        "token_ids": ids,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "mrope_section": config.text_config.rope_parameters["mrope_section"],
        "config": cfg.model_dump(),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def corpus_from_records(paths: list[Path]) -> Iterator[str]:
    """Tokenizer training text from record JSONL files: prompts and SFT targets in both answer formats.

    Records are read strictly: a bad line stops with its file, line number and reasons.
    """
    from univg.answers import format_completion, instruction_text
    from univg.schema import read_records

    for path in paths:
        for record in read_records(path):
            yield instruction_text(record["question"], "indexed")
            yield instruction_text(record["question"], "univg-r1")
            cot = record.get("cot") or ""
            for answer_format in ("indexed", "univg-r1"):
                yield format_completion(cot, record["box"], record["target_image"], answer_format)
