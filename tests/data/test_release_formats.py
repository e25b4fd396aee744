"""The released formats, read from the files in tests/data/fixtures/release (provenance in SOURCES.md).

mig_bench.json holds real MIG-Bench rows and mgrounding_630k.json the MGrounding-630k example the
Migician README prints, verbatim. The UniVG-R1 data files and the zero-shot benchmark files are on
the Hugging Face hub only; their fixtures keep the field layout the release's own loader and eval
code read, with illustrative values (SOURCES.md says which file is which). Images are drawn here at
the paths the rows name, so the loaders run their real image checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from univg.answers import instruction_text
from univg.data.benchmarks import load_benchmark
from univg.data.stage import import_records

RELEASE = Path(__file__).parent / "fixtures" / "release"
# The release's zero-shot prompt templates, verbatim (UniVG-R1 eval/zero_shot/*_evaluation/eval.py).
THINK = ("First output the thinking process in <think> </think> tags and then output the bounding box in "
         "<answer> </answer> tags.")


def stage(tmp_path: Path, name: str, size: tuple[int, int] = (640, 480), path_map: dict[str, str] | None = None) -> Path:
    """Copy a fixture into tmp_path and draw an image at every path its rows name (after path_map)."""
    target = tmp_path / name
    shutil.copy(RELEASE / name, target)
    for row in json.loads(target.read_text()):
        paths = row.get("images") or row.get("image_list") or [row.get("image_path")]
        for path in filter(None, paths):
            for old, new in (path_map or {}).items():
                path = new + path[len(old):] if path.startswith(old) else path
            file = tmp_path / path
            file.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, "white").save(file)
    return target


def test_every_fixture_matches_the_sha256_its_card_records():
    table = re.findall(r"^\| (\S+\.json) \|.*\| ([0-9a-f]{64}) \|$", (RELEASE / "SOURCES.md").read_text(), re.M)
    assert len(table) == 9
    for name, digest in table:
        assert hashlib.sha256((RELEASE / name).read_bytes()).hexdigest() == digest, name


# ----------------------------------------------------------------------------- MIG-Bench
def test_mig_bench_real_rows(tmp_path):
    loaded = load_benchmark("mig-bench", stage(tmp_path, "mig_bench.json"))
    assert loaded.info["answer_coords"] == "unit" and not loaded.quarantined
    common, group, multi_view, reasoning = (s.record for s in loaded.samples)
    # a real overshoot (x2 = 1.048): clamped within the 5% tolerance, and said so
    assert common["box"] == [319, 186, 1000, 535] and common["meta"]["box_clamped"]
    assert common["target_image"] == 4  # "locate this object in the 4th image"
    # group_grounding names its image only in additional_info ("It is in the first image.")
    assert group["target_image"] == 1 and group["meta"]["target_rule"] == "additional_info"
    assert "<|object_ref_start|>" not in group["question"] and "a white truck with a crane on top" in group["question"]
    assert multi_view["target_image"] == 2  # "the 2th image", after the reference box in the first
    assert "<|box_start|>(451,265),(519,388)<|box_end|>" in multi_view["question"]
    assert reasoning["target_image"] == 2 and reasoning["box"] == [442, 471, 555, 645]


def test_mig_bench_revised_copy_is_read_in_0_1000(tmp_path):
    loaded = load_benchmark("mig-bench", stage(tmp_path, "mig_bench_revised.json"))
    assert loaded.info["answer_coords"] == "norm1000"
    assert loaded.samples[3].record["box"] == [442, 471, 555, 645]


def test_qwen25_gets_the_reference_box_of_a_question_in_its_own_pixels(tmp_path):
    from univg.models.family import FAMILIES

    multi_view = load_benchmark("mig-bench", stage(tmp_path, "mig_bench.json")).samples[2].record
    asked = FAMILIES["qwen2_5_vl"].question_for_model(multi_view["question"], [(640, 480)] * 3)
    assert "<|box_start|>(290,126),(334,185)<|box_end|>" in asked  # 0..1000 of the first image -> its 644x476 grid
    assert FAMILIES["qwen2_vl"].question_for_model(multi_view["question"], [(640, 480)] * 3) == multi_view["question"]


# ----------------------------------------------------------------------------- MGrounding-630k, UniVG-R1
def test_mgrounding_conversation_names_its_target_in_words(tmp_path):
    loaded = load_benchmark("univg-r1", stage(tmp_path, "mgrounding_630k.json"))
    record = loaded.samples[0].record
    assert record["target_image"] == 3 and record["meta"]["target_rule"] == "answer"  # "It's in the third image."
    assert record["box"] == [316, 58, 764, 999] and record["task"] == "univg-r1"
    assert record["question"] == "Give the bounding box of the region this sentence refers to: a statue of a man."
    assert record["meta"]["turns_not_read"] == 2  # the second question is not silently lost: it is counted
    assert record["id"] == "5229016_8929009_6793119_3571391"


def test_univg_r1_rl_file_with_absolute_paths_rewritten(tmp_path):
    mapping = {"/path/to/": "data/"}
    source = stage(tmp_path, "univg_r1_rl.json", path_map=mapping)
    without = load_benchmark("univg-r1", source)
    assert not without.samples and all("absolute image path refused" in q["reasons"][0] for q in without.quarantined)
    loaded = load_benchmark("univg-r1", source, path_map=mapping)
    assert not loaded.quarantined
    first = loaded.samples[0].record
    assert first["images"][0] == "data/MGrounding-630k/Group_Grounding/SA-1B/sa_5229016.jpg"
    assert first["box"] == [316, 58, 764, 999] and "<image>" not in first["question"]
    # an absolute path that lands inside the data root is as good as a relative one
    inside = load_benchmark("univg-r1", source, path_map={"/path/to/": f"{tmp_path}/data/"})
    assert not inside.quarantined


def test_univg_r1_cot_sft_keeps_the_release_chain(tmp_path):
    mapping = {"/path/to/": ""}
    loaded = load_benchmark("univg-r1", stage(tmp_path, "univg_r1_cot_sft.json", path_map=mapping), path_map=mapping)
    with_chain, plain = (s.record for s in loaded.samples)
    assert with_chain["cot"].startswith("ILLUSTRATIVE reasoning: the first, second and fourth images show no statue")
    assert with_chain["meta"]["cot"]["teacher"] == "release" and with_chain["box"] == [316, 58, 764, 999]
    assert not with_chain["question"].endswith("tags.")  # the format instruction is ours to add
    assert "cot" not in plain and plain["box"] == [120, 233, 415, 980]


# ----------------------------------------------------------------------------- the zero-shot benchmarks
def test_lisa_grounding_pixels_and_the_release_prompt(tmp_path):
    mapping = {"/path/to/your/LISA/dataset/": ""}
    loaded = load_benchmark("reasoning-grounding", stage(tmp_path, "lisa_grounding.json", (800, 600), mapping),
                            path_map=mapping)
    record = loaded.samples[0].record
    assert record["box"] == [516, 500, 748, 786]  # [412.5, 300.25, 598.0, 471.75] of 800x600
    assert instruction_text(record["question"], "univg-r1") == (
        "Output the bounding box in the image corresponding to the instruction: ILLUSTRATIVE: What part of this "
        f"vehicle would the driver hold to steer it?. {THINK}")


def test_llmseg_question_is_wrapped_and_its_nested_box_flattened(tmp_path):
    loaded = load_benchmark("reasoning-grounding", stage(tmp_path, "llmseg_grounding.json", (640, 640)))
    record = loaded.samples[0].record
    assert record["box"] == [456, 341, 550, 494]
    assert instruction_text(record["question"], "univg-r1") == (
        "Output the bounding box in the image corresponding to the instruction: ILLUSTRATIVE: Which object in the "
        f"room could someone sit on while watching television?. {THINK}")


def test_revos_frames_are_positions_in_the_numerically_sorted_video_folder(tmp_path):
    source = tmp_path / "revos_grounding.json"
    shutil.copy(RELEASE / source.name, source)
    for row in json.loads(source.read_text()):
        folder = tmp_path / row["video_id"]
        folder.mkdir()
        for number in range(40):  # unpadded names: "10.jpg" sorts after "9.jpg" by number, not by text
            Image.new("RGB", (640, 480), "white").save(folder / f"{number}.jpg")
        (folder / "notes.txt").write_text("not a frame")
    loaded = load_benchmark("reasoning-grounding", source)
    assert not loaded.quarantined
    record = loaded.samples[0].record
    assert record["images"] == [f"ILLUSTRATIVE_video_0001/{k}.jpg" for k in (0, 8, 16, 24, 32)]
    assert record["target_image"] == 3 and record["box"] == [203, 177, 438, 646]  # bbox_list[2] of 640x480
    assert instruction_text(record["question"], "univg-r1") == (
        "This is a sequence of images from a video. Please understand the entire video content, and then output "
        "the bounding box in the third image according to the instruction: ILLUSTRATIVE: the animal that is most "
        f"likely to chase the ball. {THINK}")


def test_revos_frame_position_past_the_folder_is_quarantined(tmp_path):
    source = tmp_path / "revos.json"
    source.write_text(json.dumps([{"video_id": "v", "frames": [0, 1, 9], "question": "q",
                                   "bbox_list": [[1, 1, 5, 5]] * 3}]))
    (tmp_path / "v").mkdir()
    for number in range(3):
        Image.new("RGB", (32, 32)).save(tmp_path / "v" / f"{number}.png")
    loaded = load_benchmark("reasoning-grounding", source)
    assert "frame positions [9] outside the 3 frames of v" in loaded.quarantined[0]["reasons"][0]


def test_reasonvos_string_boxes_of_absolute_frames(tmp_path):
    mapping = {"/path/to/your/ReasonVOS/": ""}
    loaded = load_benchmark("reasoning-grounding", stage(tmp_path, "reasonvos_grounding.json", (640, 480), mapping),
                            path_map=mapping)
    record = loaded.samples[0].record
    assert record["target_image"] == 3 and record["box"] == [106, 296, 619, 846]  # "[68, 142, 396, 406]"
    assert record["images"][2] == "JPEGImages/ILLUSTRATIVE_video_a/00010.jpg"


# ----------------------------------------------------------------------------- import
def test_import_rewrites_paths_and_keeps_every_row(tmp_path):
    mapping = {"/path/to/your/LISA/dataset/": ""}
    source = stage(tmp_path, "lisa_grounding.json", (800, 600), mapping)
    card = import_records("reasoning-grounding", source, tmp_path / "out", path_map=mapping)
    assert sum(card["counts"].values()) + card["quarantined"] == 2 and card["quarantined"] == 0


@pytest.mark.parametrize("pair", ["no-equals", "=new"])
def test_a_malformed_path_map_is_one_clear_line(pair, tmp_path):
    from typer.testing import CliRunner

    from univg.cli import app

    result = CliRunner().invoke(app, ["data", "import", "--input", str(RELEASE / "lisa_grounding.json"), "--format",
                                      "reasoning-grounding", "--out", str(tmp_path), "--path-map", pair])
    assert result.exit_code == 1 and "write it as OLD=NEW" in result.output


def test_rows_that_share_an_image_are_split_together():
    """A video's frames or one picture's several questions must not straddle train and test."""
    from univg.data.stage import image_groups

    rows = [{"images": ["v1/3.jpg", "v1/9.jpg"]}, {"images": ["v2/0.jpg"]}, {"images": ["v1/9.jpg", "v1/12.jpg"]},
            {"images": ["v1/12.jpg", "x.jpg"]}]
    assert image_groups(rows) == ["v1/12.jpg", "v2/0.jpg", "v1/12.jpg", "v1/12.jpg"]
