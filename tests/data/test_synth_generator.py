"""mig-synth generator: determinism, coverage, contract validity, geometry and solvability."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from univg.config import TASKS, DataConfig
from univg.data.draw import PALETTE, SHAPES
from univg.data.images import image_problems
from univg.data.synth import generate_dataset, generate_split
from univg.schema import read_records, record_reasons

SPLITS = ("train", "val", "test")


def load_splits(folder: Path) -> dict[str, list[dict]]:
    return {split: read_records(folder / f"{split}.jsonl") for split in SPLITS}


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- an oracle that sees only pixels
# It reads what a viewer can see (shapes, colours, sizes, positions, marks) and the question, never
# the scene's target, and must find exactly one answer: that is what "solvable from the pixels" means.
def pairs(image: dict) -> list[tuple[str, str]]:
    return [(o["shape"], o["colour"]) for o in image["objects"]]


def only(candidates: list, what: str):
    assert len(candidates) == 1, f"{what}: {len(candidates)} candidates {candidates}"
    return candidates[0]


def index_of(image: dict, pair: tuple[str, str], what: str) -> int:
    return only([i for i, p in enumerate(pairs(image)) if p == pair], what)


def position_of(box: list[int], grid: int) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rows = ("top", "bottom") if grid == 2 else ("top", "middle", "bottom")
    cols = ("left", "right") if grid == 2 else ("left", "centre", "right")
    name = f"{rows[int(cy * grid // 1000)]}-{cols[int(cx * grid // 1000)]}"
    return "centre" if name == "middle-centre" else name


def solve(record: dict) -> tuple[int, int]:
    images, question, task = record["meta"]["scene"]["images"], record["question"], record["task"]
    if task in ("diff", "view_diff"):
        before = set(pairs(images[0]))
        return 2, only([i for i, p in enumerate(pairs(images[1])) if p not in before], "changed object")
    if task in ("region", "correspondence"):
        mark = only(images[0]["marks"], "mark")
        assert mark["kind"] == ("box" if task == "region" else "dot")
        key = images[0]["objects"][mark["object"]]
        if task == "region":
            assert "<|box_start|>({},{}),({},{})<|box_end|>".format(*key["box"]) in question
        assert not images[1]["marks"]
        return 2, index_of(images[1], (key["shape"], key["colour"]), "marked object in image 2")
    if task in ("group_grounding", "refer_grounding"):
        colour, shape = re.search(rf"the ({'|'.join(PALETTE)}) ({'|'.join(SHAPES)})", question).groups()
        hits = [(k + 1, i) for k, image in enumerate(images) for i, p in enumerate(pairs(image)) if p == (shape, colour)]
        if task == "group_grounding":
            return only(hits, "described object")
        k = int(re.search(r"image (\d)", question).group(1))
        assert len(hits) >= 2, "the named object should also appear in another image"
        return k, index_of(images[k - 1], (shape, colour), "referred object")
    if task == "reasoning":
        rank = {"small": 0, "medium": 1, "large": 2}
        ranks = [rank[o["size"]] for o in images[0]["objects"]]
        want = max(ranks) if "largest" in question else min(ranks)
        key = only([o for o in images[0]["objects"] if rank[o["size"]] == want], "extreme shape")
        attribute = re.search(r"(?:same|its) (colour|shape)", question).group(1)
        return 2, only([i for i, o in enumerate(images[1]["objects"]) if o[attribute] == key[attribute]], "match")
    if task == "common_object":
        shared = only(list(set.intersection(*(set(pairs(image)) for image in images))), "shared pair")
        k = int(re.search(r"image (\d)", question).group(1))
        return k, index_of(images[k - 1], shared, "shared object")
    if task == "multi_view":
        position = re.search(r"\b((?:top|middle|bottom)-(?:left|centre|right)|centre)\b", question).group(1)
        grid = 2 if len(images[0]["objects"]) <= 4 else 3
        key = only([o for o in images[0]["objects"] if position_of(o["box"], grid) == position], "object at position")
        return 2, index_of(images[1], (key["shape"], key["colour"]), "same object in view 2")
    if task == "object_tracking":
        k = int(re.search(r"frame (\d)", question).group(1))
        boxes: dict[tuple[str, str], set] = {}
        for image in images:
            for o in image["objects"]:
                boxes.setdefault((o["shape"], o["colour"]), set()).add(tuple(o["box"]))
        mover = only([p for p, seen in boxes.items() if len(seen) > 1], "moving object")
        return k, index_of(images[k - 1], mover, "mover in frame k")
    raise AssertionError(f"unknown task {task}")


# ----------------------------------------------------------------------------- tests
def test_every_split_covers_every_task_with_the_configured_counts(small_dataset, small_cfg):
    folder, card = small_dataset
    records = load_splits(folder)
    wanted = {"train": small_cfg.train_per_task, "val": small_cfg.val_per_task, "test": small_cfg.test_per_task}
    for split in SPLITS:
        assert Counter(r["task"] for r in records[split]) == {t: wanted[split] for t in TASKS}
        assert card["splits"][split]["per_task"] == {t: wanted[split] for t in TASKS}
        # interleaved: the first len(TASKS) records already cover every task
        assert {r["task"] for r in records[split][: len(TASKS)]} == set(TASKS)


def test_records_are_valid_and_images_load(small_dataset, small_cfg):
    folder, _ = small_dataset
    for split, records in load_splits(folder).items():
        for record in records:
            assert record_reasons(record) == [], record["id"]
            assert image_problems(record["images"], folder) == [], record["id"]
            assert record["source"] == "mig-synth"
            assert 2 <= len(record["images"]) <= small_cfg.max_images
            assert all(p.startswith(f"images/{split}/{record['id']}_") for p in record["images"])
            with Image.open(folder / record["images"][0]) as image:
                assert image.size == (small_cfg.image_size, small_cfg.image_size)


def test_ids_unique_and_disjoint_across_splits(small_dataset):
    folder, _ = small_dataset
    ids = [r["id"] for records in load_splits(folder).values() for r in records]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"(train|val|test)-[a-z_]+-\d{5}", i) for i in ids)


def test_scene_target_matches_record_and_describes_each_image(small_dataset):
    folder, _ = small_dataset
    for records in load_splits(folder).values():
        for record in records:
            scene = record["meta"]["scene"]
            assert len(scene["images"]) == len(record["images"])
            assert scene["target"]["image"] == record["target_image"]
            target = scene["images"][record["target_image"] - 1]["objects"][scene["target"]["object"]]
            assert target["box"] == record["box"]
            assert set(record["meta"]["difficulty"]) == {"n_objects", "clutter", "distractors"}
            assert record["meta"]["difficulty"]["n_objects"] == sum(len(i["objects"]) for i in scene["images"])
            ref = scene["reference"]
            if ref is not None:
                assert 1 <= ref["image"] <= len(record["images"]) and ref["image"] != record["target_image"]
            json.dumps(scene)  # plain JSON all the way down


def test_objects_are_inside_the_image_and_never_overlap(small_dataset):
    folder, _ = small_dataset
    for records in load_splits(folder).values():
        for record in records:
            for image in record["meta"]["scene"]["images"]:
                boxes = [o["box"] for o in image["objects"]]
                for x1, y1, x2, y2 in boxes:
                    assert 0 < x1 < x2 < 1000 and 0 < y1 < y2 < 1000, record["id"]
                    assert 180 <= x2 - x1 <= 420, "objects stay large (about 24-44 px at 112 px)"
                for i, a in enumerate(boxes):
                    for b in boxes[i + 1 :]:
                        apart = a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
                        assert apart, f"{record['id']}: {a} overlaps {b}"


def test_every_sample_has_exactly_one_answer_visible_in_the_pixels(small_dataset):
    folder, _ = small_dataset
    for records in load_splits(folder).values():
        for record in records:
            scene = record["meta"]["scene"]
            assert solve(record) == (scene["target"]["image"], scene["target"]["object"]), record["id"]


@pytest.mark.parametrize("distractors,max_images,size", [(0, 2, 56), (6, 6, 112), (4, 3, 224)])
def test_knobs_keep_samples_valid_and_solvable(tmp_path, distractors, max_images, size):
    cfg = DataConfig(seed=1, train_per_task=4, distractors=distractors, max_images=max_images, image_size=size, clutter=0.3)
    records = generate_split(cfg, "train", tmp_path, progress=False)
    counts = Counter(len(r["images"]) for r in records)
    assert max(counts) <= max_images and min(counts) >= 2
    for record in records:
        assert record_reasons(record) == []
        scene = record["meta"]["scene"]
        assert solve(record) == (scene["target"]["image"], scene["target"]["object"]), record["id"]


def test_same_config_gives_byte_identical_files(tmp_path):
    cfg = DataConfig(seed=5, train_per_task=2, val_per_task=1, test_per_task=1)
    generate_dataset(cfg, tmp_path / "a", progress=False)
    generate_dataset(cfg, tmp_path / "b", progress=False)
    first, second = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert first.keys() == second.keys() and first == second
    assert sum(name.endswith(".png") for name in first) >= 2 * 10 * 4
    generate_dataset(DataConfig(seed=6, train_per_task=2, val_per_task=1, test_per_task=1), tmp_path / "c", progress=False)
    other = all_files(tmp_path / "c")
    assert other["train.jsonl"] != first["train.jsonl"]
    assert sum(other.get(k) != first[k] for k in first if k.endswith(".png")) > len(first) // 2


def test_a_sample_does_not_depend_on_the_other_tasks_asked_for(tmp_path):
    full = generate_split(DataConfig(seed=2, train_per_task=3), "train", tmp_path / "all", progress=False)
    alone = generate_split(DataConfig(seed=2, train_per_task=3, tasks=["region"]), "train", tmp_path / "one", progress=False)
    assert [r for r in full if r["task"] == "region"] == alone


def test_splits_come_from_disjoint_streams(tmp_path):
    cfg = DataConfig(seed=0, train_per_task=3, val_per_task=3, test_per_task=3)
    scenes = {split: [json.dumps(r["meta"]["scene"]) for r in generate_split(cfg, split, tmp_path, progress=False)]
              for split in SPLITS}
    assert not set(scenes["train"]) & set(scenes["test"])
    assert not set(scenes["train"]) & set(scenes["val"])


def test_clutter_adds_specks_only(tmp_path):
    plain = generate_split(DataConfig(seed=4, train_per_task=2), "train", tmp_path / "plain", progress=False)
    noisy = generate_split(DataConfig(seed=4, train_per_task=2, clutter=0.8), "train", tmp_path / "noisy", progress=False)
    assert [r["meta"]["scene"] for r in plain] == [r["meta"]["scene"] for r in noisy]
    a = (tmp_path / "plain" / plain[0]["images"][0]).read_bytes()
    b = (tmp_path / "noisy" / noisy[0]["images"][0]).read_bytes()
    assert a != b


def test_wording_targets_and_appearance_vary(small_dataset):
    folder, _ = small_dataset
    train = load_splits(folder)["train"]
    vocabulary = "|".join(list(PALETTE) + list(SHAPES) + ["largest", "smallest", "colour", "shape"])
    for task in TASKS:
        questions = [r["question"] for r in train if r["task"] == task]
        skeletons = {re.sub(rf"\b({vocabulary})\b|\d+|<\|box_start\|>.*?<\|box_end\|>|[a-z]+-[a-z]+", "_", q)
                     for q in questions}
        assert len(skeletons) >= 2, f"{task}: one wording only"
        assert all(len(q) < 130 for q in questions)
    for task in ("group_grounding", "refer_grounding", "common_object", "object_tracking"):
        assert len({r["target_image"] for r in train if r["task"] == task}) >= 2, task
    objects = [o for r in train for i in r["meta"]["scene"]["images"] for o in i["objects"]]
    assert {o["texture"] for o in objects} == {"solid", "striped"}
    assert {o["size"] for o in objects} == {"small", "medium", "large"}
    assert {o["shape"] for o in objects} == set(SHAPES) and {o["colour"] for o in objects} == set(PALETTE)


def test_dataset_card_and_readme(small_dataset, small_cfg):
    folder, card = small_dataset
    assert json.loads((folder / "card.json").read_text()) == card
    assert card["image_size"] == [small_cfg.image_size] * 2
    assert card["seeds"]["base"] == small_cfg.seed
    assert sum(card["splits"]["train"]["images_per_sample"].values()) == card["splits"]["train"]["samples"]
    assert card["box_size_0_1000"]["width"]["min"] > 0
    readme = (folder / "README.md").read_text()
    assert all(task in readme for task in TASKS) and "Images per sample" in readme
