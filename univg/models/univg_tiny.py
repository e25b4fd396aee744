"""univg-tiny: the pretrained tiny Qwen2-VL this project ships, and the recipe that rebuilds it.

UniVG-R1 starts from a pretrained Qwen2-VL that already sees, grounds a plain reference and
recalls what its context says; only the multi-image reasoning is new to it. A tiny model built
from scratch has none of that, and the 15-minute CPU pipeline cannot also teach it (the earlier
sessions measured why: docs/results.md). So pre-training is a release, made once by this recipe
(`univg model pretrain`, its own DVC pipeline in pretrain/dvc.yaml) and shipped in
checkpoints/univg-tiny with a model card; the pipeline fine-tunes it, as a user fine-tunes a
checkpoint from a hub.

The recipe:
- the tokenizer is trained on a fixed corpus: the pre-training texts themselves, mig-synth-style
  questions from a seed stream of their own, and the two answer formats' instructions. Nothing
  in it comes from the chain-of-thought wording, so changing a teacher never changes the base;
- one run mixes three objectives in every optimizer step, so that no skill is forgotten:
  (a) perception: describe one image, or every image, cell by cell in the scan's words
      (univg.data.scan), or name the object in a cell; one to three images;
  (b) in-context recall on text (univg.models.recall): associative recall and the scan lookup;
  (c) referring grounding with a box answer, "Find the cyan square." -> "Image-1: (x1,y1),(x2,y2)",
      the image named in the question when there are several;
- its scenes come from seed streams of their own (split ids 7, 8 and 9; mig-synth uses 0, 1, 2)
  and it never asks a multi-image reasoning question: that is what SFT and GRPO must teach;
- release gates (measured on held-out scenes and texts, written into the card): recall on `ar`
  >= 0.90, scan colours and shapes >= 0.95, single-image referring grounding Acc@0.5 >= 0.6.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np

from univg.answers import INSTRUCTIONS, format_box, parse_answer
from univg.config import TASKS, Params, PretrainImageTask
from univg.data.draw import render
from univg.data.layout import Context, pick
from univg.data.scan import cell_name, image_scan, object_phrase, scan_sentences
from univg.models.pretrain import random_image
from univg.models.recall import RECALL_TASKS, answer_accuracy, encode
from univg.prompts import assistant_message
from univg.schema import iou

NAME = "univg-tiny"
TRAIN_SPLIT, CORPUS_SPLIT, HELD_OUT_SPLIT = 7, 8, 9  # seed streams (mig-synth train/val/test: 0/1/2)
IMAGE_TASKS: tuple[str, ...] = get_args(PretrainImageTask)
GROUND_QUESTIONS = ("Find the {what}{where}.", "Locate the {what}{where}.", "Where is the {what}{where}? Give its box.")
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
RELEASE_FILE = "univg_tiny.json"  # what the card says, machine-readable (sha256, gates, steps)
GATES = {"recall_ar": 0.90, "scan_colour": 0.95, "scan_shape": 0.95, "ground_acc@0.5": 0.60}


# ----------------------------------------------------------------------------- the data
def image_example(seed: int, index: int, task: str, image_size: int, position_cue: float,
                  split: int = TRAIN_SPLIT, single: bool = False) -> dict[str, Any]:
    """One image example (TRL prompt/completion form with images); a pure function of its arguments.
    `single` forces one image (the gates measure one-image skills)."""
    rng = np.random.default_rng([seed, split, IMAGE_TASKS.index(task), index])
    ctx = Context(rng, image_size, max_images=3, distractors=2)
    single = single or (task == "ground" and rng.random() < 0.6)
    n_images = 1 if single else int(rng.integers(1, 4))
    drawn = [random_image(ctx, marked=task == "name" and rng.random() < 0.3) for _ in range(n_images)]
    images = [render(d["objects"], d["marks"], image_size, image_size, (), position_cue) for d in drawn]
    k = int(rng.integers(n_images))
    scene = drawn[k]["scene"]
    of_image = f" of image {k + 1}" if n_images > 1 else ""
    if task == "describe":
        question = f"Describe image {k + 1}." if n_images > 1 else "Describe the image."
        answer = image_scan(scene) + "."
    elif task == "describe_all":
        question = "Describe each image." if n_images > 1 else "Describe the image."
        answer = " ".join(scan_sentences([d["scene"] for d in drawn])) if n_images > 1 else image_scan(scene) + "."
    else:
        i = int(rng.integers(len(scene["objects"])))
        obj = scene["objects"][i]
        if task == "ground":
            where = f" in image {k + 1}" if n_images > 1 else ""
            question = pick(rng, GROUND_QUESTIONS).format(what=f"{obj['colour']} {obj['shape']}", where=where)
            answer = format_box(obj["box"], k + 1, "indexed")
        else:
            question = f"What is at the {cell_name(obj['box'])}{of_image}?"
            answer = object_phrase(obj, [m["kind"] for m in scene["marks"] if m["object"] == i])
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
    return {"prompt": [{"role": "user", "content": content}], "completion": [assistant_message(answer)],
            "images": images, "task": task, "scene": scene, "image_index": k + 1, "answer": answer}


def image_stream(seed: int, mix: dict[str, float], image_size: int, position_cue: float) -> Iterator[dict[str, Any]]:
    """The endless training stream of image examples, tasks drawn by `mix`."""
    rng = np.random.default_rng([seed, TRAIN_SPLIT, 99])
    tasks, shares = list(mix), np.array(list(mix.values()), dtype=float)
    counters = dict.fromkeys(tasks, 0)
    while True:
        task = tasks[int(rng.choice(len(tasks), p=shares / shares.sum()))]
        yield image_example(seed, counters[task], task, image_size, position_cue)
        counters[task] += 1


def text_stream(seed: int, mix: dict[str, float]) -> Iterator[tuple[str, str]]:
    """The endless training stream of recall texts, tasks drawn by `mix`."""
    rng = random.Random(f"{seed}:{TRAIN_SPLIT}:recall")
    tasks, shares = list(mix), list(mix.values())
    while True:
        yield RECALL_TASKS[rng.choices(tasks, shares)[0]](rng)


def tokenizer_corpus(seed: int, image_size: int, position_cue: float, examples: int = 3000) -> Iterator[str]:
    """The fixed tokenizer corpus: pre-training texts, mig-synth-style questions, the instructions.

    No chain-of-thought text: the tokenizer (and so the model's init) must not change when a
    teacher's wording does.
    """
    from univg.data.scenes import BUILDERS

    yield from INSTRUCTIONS.values()
    for index in range(examples):
        task = IMAGE_TASKS[index % len(IMAGE_TASKS)]
        # the question and answer texts only: no need to draw pixels
        yield _corpus_example(np.random.default_rng([seed, CORPUS_SPLIT, index]), task, image_size)
    recall = random.Random(f"{seed}:{CORPUS_SPLIT}:recall")
    for index in range(examples):
        prompt, answer = RECALL_TASKS[("ar", "lookup")[index % 2]](recall)
        yield prompt + answer
    for index in range(examples // 10):
        task = TASKS[index % len(TASKS)]
        ctx = Context(np.random.default_rng([seed, CORPUS_SPLIT, 1000 + index]), image_size, 4, 2)
        yield BUILDERS[task](ctx).question


def _corpus_example(rng: np.random.Generator, task: str, image_size: int) -> str:
    ctx = Context(rng, image_size, max_images=3, distractors=2)
    scenes = [random_image(ctx, marked=rng.random() < 0.3)["scene"] for _ in range(int(rng.integers(1, 4)))]
    obj = scenes[0]["objects"][0]
    if task in ("describe", "describe_all"):
        return "Describe each image. " + " ".join(scan_sentences(scenes))
    if task == "ground":
        return f"Find the {obj['colour']} {obj['shape']} in image 2. " + format_box(obj["box"], 2, "indexed")
    return f"What is at the {cell_name(obj['box'])} of image 1? {object_phrase(obj)}"


# ----------------------------------------------------------------------------- the release gates
_SCAN_ENTRY = re.compile(r"(top-left|top-right|bottom-left|bottom-right):\s*([^;.]*)")


def read_scan(text: str) -> dict[str, str]:
    """{cell: what the text says is there} from a scan such as 'top-left: red circle, large; ...'."""
    found: dict[str, str] = {}
    for cell, what in _SCAN_ENTRY.findall(text):
        found.setdefault(cell, what.strip())
    return found


def measure_gates(model: Any, processor: Any, seed: int, image_size: int, position_cue: float,
                  examples: int = 200, batch_size: int = 25) -> dict[str, float]:
    """The release gates on held-out scenes and texts (split 9: never trained on)."""
    from univg.models.generation import generate_texts

    tokenizer = getattr(processor, "tokenizer", processor)
    results: dict[str, float] = {}
    model.eval()
    # (b) recall: teacher-forced, every answer token must be the greedy choice
    for task, make in RECALL_TASKS.items():
        rng = random.Random(f"{seed}:{HELD_OUT_SPLIT}:{task}")
        results[f"recall_{task}"] = answer_accuracy(model, encode(tokenizer, [make(rng) for _ in range(256)]))

    def answers(task: str) -> list[tuple[dict[str, Any], str]]:
        rows = [image_example(seed, index, task, image_size, position_cue, split=HELD_OUT_SPLIT, single=True)
                for index in range(examples)]
        texts = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            texts += generate_texts(model, processor, [e["prompt"] for e in chunk], [e["images"] for e in chunk],
                                    max_new_tokens=96 if task == "describe" else 24)
        return list(zip(rows, texts, strict=True))

    # (a) perception: colour and shape of every object, read from the model's own scan
    colour_hits, shape_hits, cells = 0, 0, 0
    for example, text in answers("describe"):
        said = read_scan(text)
        for obj in example["scene"]["objects"]:
            words = said.get(cell_name(obj["box"]), "").split(",")[0].split()
            cells += 1
            colour_hits += obj["colour"] in words
            shape_hits += obj["shape"] in words
    results["scan_colour"], results["scan_shape"] = colour_hits / cells, shape_hits / cells
    # (c) referring grounding in one image
    ious = []
    for example, text in answers("ground"):
        parsed = parse_answer(text, allow_untagged=True)
        truth = parse_answer(example["answer"], allow_untagged=True)
        ious.append(iou(parsed.box, truth.box) if parsed else 0.0)
    results["ground_acc@0.5"] = float(np.mean([v >= 0.5 for v in ious]))
    results["ground_miou"] = float(np.mean(ious))
    return {k: round(v, 4) for k, v in results.items()}


def gates_passed(measured: dict[str, float]) -> dict[str, bool]:
    return {name: measured.get(name, 0.0) >= floor for name, floor in GATES.items()}


# ----------------------------------------------------------------------------- the recipe
def _lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # cosine down to 10%


def pretrain(params: Params, out_dir: Path, steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Build univg-tiny into `out_dir` with the `pretrain` params; returns the release record."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from univg.models.tiny import build_tiny_model

    cfg, data = params.pretrain, params.data
    steps = steps if steps is not None else cfg.steps
    out_dir = Path(out_dir)
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # --- tokenizer, processor and a fresh model (the architecture of params.model)
    build_tiny_model(params.model, tokenizer_corpus(cfg.seed, data.image_size, data.position_cue), out_dir)
    processor = AutoProcessor.from_pretrained(out_dir)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"
    model = AutoModelForImageTextToText.from_pretrained(out_dir, dtype=torch.float32)
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)

    # --- the mixed stream and the optimizer
    images = image_stream(cfg.seed, cfg.image_mix, data.image_size, data.position_cue)
    texts = text_stream(cfg.seed, cfg.text_mix)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, int(cfg.warmup_ratio * steps))
    history: list[dict[str, float]] = []
    held_out_rng = random.Random(f"{cfg.seed}:{HELD_OUT_SPLIT}:ar")  # the recall gate's own texts
    held_out_ar = encode(tokenizer, [RECALL_TASKS["ar"](held_out_rng) for _ in range(256)])

    # --- train: every step sees an image batch and a text batch
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc=f"pretrain {NAME}", disable=not progress)
    running = {"image_loss": 0.0, "text_loss": 0.0}
    for step in bar:
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, steps, cfg.learning_rate, warmup)
        batch = collate([{k: e[k] for k in ("prompt", "completion", "images")}
                         for e in (next(images) for _ in range(cfg.image_batch_size))])
        image_loss = model(**batch).loss
        image_loss.backward()
        text_loss = model(**encode(tokenizer, [next(texts) for _ in range(cfg.text_batch_size)])).loss
        (cfg.text_loss_weight * text_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for key, value in (("image_loss", image_loss), ("text_loss", text_loss)):
            running[key] = 0.9 * running[key] + 0.1 * value.item() if step else value.item()
        if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
            entry = {"step": step + 1, "seconds": round(time.perf_counter() - started, 1), **{k: round(v, 4) for k, v in running.items()}}
            if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
                entry["recall_ar"] = round(answer_accuracy(model.eval(), held_out_ar), 4)
            history.append(entry)
            bar.set_postfix({k: v for k, v in entry.items() if k != "step"})
            _write_history(out_dir, history)

    # --- save, measure the gates, write the card
    model.save_pretrained(out_dir)
    tokenizer.padding_side = "left"
    processor.save_pretrained(out_dir)
    train_seconds = round(time.perf_counter() - started, 1)
    gates = measure_gates(model, processor, cfg.seed, data.image_size, data.position_cue, cfg.gate_examples)
    release = {
        "name": NAME,
        "steps": steps,
        "train_seconds": train_seconds,
        "examples": {"image": steps * cfg.image_batch_size, "text": steps * cfg.text_batch_size},
        "final": history[-1] if history else {},
        "gates": gates,
        "gate_floors": GATES,
        "gates_passed": gates_passed(gates),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_params": cfg.model_dump(mode="json"),
        "model_params": params.model.model_dump(mode="json"),
        "data_params": {"image_size": data.image_size, "position_cue": data.position_cue},
        "sha256": file_sha256(out_dir / WEIGHTS_FILE),
        "files": sorted(p.name for p in out_dir.iterdir() if p.is_file()),
    }
    (out_dir / RELEASE_FILE).write_text(json.dumps(release, indent=2) + "\n")
    (out_dir / CARD_FILE).write_text(model_card(release, history))
    return release


def _write_history(out_dir: Path, history: list[dict[str, float]]) -> None:
    (out_dir / "pretrain_history.json").write_text(json.dumps(history) + "\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_card(release: dict[str, Any], history: list[dict[str, float]]) -> str:
    """The checkpoint's README: what it saw, how long, how well, how to rebuild it, its hash."""
    cfg = release["pretrain_params"]
    gate_rows = "\n".join(
        f"| {name} | {release['gates'].get(name, float('nan')):.3f} | >= {floor} | "
        f"{'pass' if release['gates_passed'][name] else 'FAIL'} |" for name, floor in GATES.items())
    extra = {k: v for k, v in release["gates"].items() if k not in GATES}
    curve = [h for h in history if "recall_ar" in h]
    curve_rows = "\n".join(f"| {h['step']} | {h['seconds']} | {h['image_loss']} | {h['text_loss']} | {h['recall_ar']} |"
                           for h in curve)
    return f"""# {NAME}

A tiny Qwen2-VL ({release['parameters']:,} parameters) pre-trained by this project so that the
embedded pipeline starts where real users start: from a base model that already sees, grounds a
plain reference and recalls what its context says. Built by `univg model pretrain`
(univg/models/univg_tiny.py; its own DVC pipeline: `dvc repro pretrain/dvc.yaml`).

## What it saw
{release['steps']} optimizer steps, each with {cfg['image_batch_size']} image examples and
{cfg['text_batch_size']} recall texts ({release['examples']['image']:,} and {release['examples']['text']:,} in all),
peak learning rate {cfg['learning_rate']}, cosine schedule, {release['train_seconds']:.0f} s of training.
- image tasks {cfg['image_mix']}: describe one image or each image cell by cell in the scan's
  words, name the object in a cell, referring grounding ("Find the cyan square." ->
  "Image-1: (x1,y1),(x2,y2)"); one to three images, the image always named in the question;
- recall texts {cfg['text_mix']}: associative recall and the scan lookup (univg.models.recall);
- scenes from seed streams of their own (split ids 7 and 8; the gates use 9; mig-synth uses 0-2),
  no multi-image reasoning question, no chain-of-thought text (the tokenizer's corpus included).

Final running losses: image {release['final'].get('image_loss')}, text {release['final'].get('text_loss')}.

## Release gates (held-out scenes and texts)
| gate | measured | floor | |
|---|---|---|---|
{gate_rows}

Also measured: {json.dumps(extra)}.

## Recall over training
| step | seconds | image loss | text loss | recall (ar) |
|---|---|---|---|---|
{curve_rows}

## Rebuild
```
dvc repro pretrain/dvc.yaml          # or: univg model pretrain --out checkpoints/{NAME}
```
with the `pretrain`, `model` (architecture) and `data.image_size`/`data.position_cue` params of
this commit. Torch's CPU kernels make a rebuild close to, not bit-identical with, this one.

## Files
{', '.join(release['files'])}

sha256 of {WEIGHTS_FILE}: `{release['sha256']}`
"""
