"""The bad-input corpus: every kind of broken, odd or hostile input, at every entry point.

Each kind ends one of three ways, and the test says which: the row is quarantined with a reason
that names the problem; the command stops with one line naming the file and the problem (never
a traceback); or the input is valid after all and is read correctly (odd image modes). The
importers also keep the invariant rows in = rows accepted + rows quarantined.
docs/reliability.md lists the same table.
"""

from __future__ import annotations

import json
import math

import pytest
from bad_inputs import (
    make_images,
    mig_bench_row,
    reasoning_row,
    synth_row,
    univg_r1_row,
    write_json_list,
    write_jsonl_rows,
)
from typer.testing import CliRunner

from univg.cli import app
from univg.data.images import open_rgb
from univg.data.stage import import_records

runner = CliRunner()


@pytest.fixture
def root(tmp_path):
    """A data root holding every image kind, and a file beyond it."""
    folder = tmp_path / "root"
    kinds = make_images(folder, tmp_path / "outside")
    return folder, kinds


def imported(folder, fmt, rows, name="rows.json"):
    """Import `rows` (a JSON list; JSONL for mig-synth) and return (card, quarantine rows)."""
    path = folder / name
    (write_jsonl_rows if fmt == "mig-synth" else write_json_list)(path, rows)
    out = folder.parent / f"out-{fmt}"
    card = import_records(fmt, path, out)
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    accepted = sum(card["counts"].values())
    assert accepted + card["quarantined"] == len(rows), "rows in != accepted + quarantined"
    return card, quarantine


# ----------------------------------------------------------------------------- images, at import
IMAGE_KINDS_REFUSED = {
    "zero": "not decodable", "truncated": "not decodable", "corrupt": "not decodable",
    "bomb": "not decodable", "huge": "too large", "one_pixel": "too small", "narrow": "too narrow",
    "missing": "not found", "symlink_out": "leaves the data root", "dotdot": "leaves the data root",
    "absolute": "absolute image path refused",
}


@pytest.mark.parametrize("fmt", ["mig-bench", "univg-r1", "mig-synth", "reasoning-grounding"])
@pytest.mark.parametrize("kind", sorted(IMAGE_KINDS_REFUSED))
def test_each_bad_image_quarantines_its_row_in_every_importer(root, fmt, kind):
    folder, kinds = root
    bad = kinds[kind]
    rows = {"mig-bench": [mig_bench_row(), mig_bench_row(images=["good.png", bad])],
            "univg-r1": [univg_r1_row(), univg_r1_row(id="u1", images=["good.png", bad])],
            "mig-synth": [synth_row(), synth_row(id="s1", images=["good.png", bad])],
            "reasoning-grounding": [reasoning_row(), reasoning_row(image=bad, width=64, height=48)]}[fmt]
    card, quarantine = imported(folder, fmt, rows)
    assert card["quarantined"] == 1 and quarantine[0]["index"] == 1
    reason = " ".join(quarantine[0]["reasons"])
    assert IMAGE_KINDS_REFUSED[kind] in reason and bad.split("/")[-1] in reason, reason


@pytest.mark.parametrize("kind", ["cmyk", "sixteen", "palette", "alpha", "grey"])
def test_odd_image_modes_are_read_as_rgb_not_refused(root, kind):
    folder, kinds = root
    card, quarantine = imported(folder, "mig-synth", [synth_row(images=["good.png", kinds[kind]])])
    assert card["quarantined"] == 0 and quarantine == []
    image = open_rgb(folder / kinds[kind])
    assert image.mode == "RGB" and image.size == (64, 48)
    expected = {"cmyk": None, "sixteen": (155, 155, 155), "palette": (255, 255, 255),  # transparent: white
                "alpha": (255, 255, 255), "grey": (128, 128, 128)}[kind]
    if expected:
        assert image.getpixel((5, 5)) == expected  # 16-bit 40000/65535 scaled, not clipped to white


def test_outside_root_is_read_when_the_user_allows_it(root):
    folder, kinds = root
    path = write_jsonl_rows(folder / "rows.jsonl", [synth_row(images=["good.png", kinds["dotdot"]])])
    card = import_records("mig-synth", path, folder.parent / "out", allow_outside_root=True)
    assert card["quarantined"] == 0


# ----------------------------------------------------------------------------- rows, at import
ROW_KINDS = {
    # kind: (format, the bad row, a word of the reason)
    "nan_coordinate": ("mig-bench", mig_bench_row(answer=[0.1, math.nan, 0.5, 0.6]), "not a finite number"),
    "inf_coordinate": ("mig-bench", mig_bench_row(answer=[0.1, 0.2, math.inf, 0.6]), "not a finite number"),
    "negative_coordinate": ("mig-bench", mig_bench_row(answer=[-0.4, 0.2, 0.5, 0.6]), "out of range"),
    "out_of_range_box": ("mig-bench", mig_bench_row(answer=[0.1, 0.2, 1.3, 0.6]), "out of range"),
    "box_in_another_convention": ("mig-bench", mig_bench_row(answer=[100, 200, 500, 600]), "not in 0..1"),
    "inverted_box": ("mig-bench", mig_bench_row(answer=[0.5, 0.6, 0.1, 0.2]), "inverted"),
    "answer_is_a_string": ("mig-bench", mig_bench_row(answer="0.1 0.2 0.5 0.6"), "got the string"),
    "images_is_a_string": ("mig-bench", mig_bench_row(images="good.png"), "list of paths"),
    "image_path_not_a_string": ("mig-bench", mig_bench_row(images=["good.png", 7]), "list of paths"),
    "unknown_task": ("mig-bench", mig_bench_row(task="teleportation"), "unknown MIG-Bench task"),
    "question_not_a_string": ("mig-bench", mig_bench_row(question=42), "missing text field"),
    "empty_question": ("mig-bench", mig_bench_row(question="   "), "missing text field"),
    "enormous_question": ("mig-bench", mig_bench_row(question="Where? " * 2000), "question too long"),
    "missing_answer": ("mig-bench", {k: v for k, v in mig_bench_row().items() if k != "answer"}, "box must be"),
    "row_not_an_object": ("mig-bench", ["good.png"], "not a JSON object"),
    "target_image_zero": ("univg-r1", univg_r1_row(answer=[100, 200, 500, 600], target_image=0), "out of range"),
    "target_image_negative": ("univg-r1", univg_r1_row(answer=[100, 200, 500, 600], target_image=-1), "out of range"),
    "target_image_past_end": ("univg-r1", univg_r1_row(answer=[100, 200, 500, 600], target_image=3), "out of range"),
    "target_image_a_string": ("mig-synth", synth_row(target_image="2"), "not an integer"),
    "box_floats_in_records": ("mig-synth", synth_row(box=[0.1, 0.2, 0.5, 0.6]), "must be integers"),
    "box_three_numbers": ("mig-synth", synth_row(box=[1, 2, 3]), "4 numbers"),
    "pixel_box_zero_width_image": ("reasoning-grounding", reasoning_row(width=0, height=48), "positive"),
    "target_frame_not_an_integer": ("reasoning-grounding", {"frames": ["good.png"] * 3, "instruction": "x",
                                                           "box": [1, 1, 5, 5], "target_frame": "3"}, "integer"),
}


@pytest.mark.parametrize("kind", sorted(ROW_KINDS))
def test_each_bad_row_is_quarantined_with_its_reason(root, kind):
    folder, _ = root
    fmt, bad, word = ROW_KINDS[kind]
    good = {"mig-bench": mig_bench_row(), "univg-r1": univg_r1_row(id="good"), "mig-synth": synth_row(id="good"),
            "reasoning-grounding": reasoning_row()}[fmt]
    card, quarantine = imported(folder, fmt, [good, bad])
    assert card["quarantined"] == 1, quarantine
    assert word in " ".join(quarantine[0]["reasons"]), quarantine[0]["reasons"]


def test_duplicate_ids_keep_the_first_and_quarantine_the_rest(root):
    folder, _ = root
    card, quarantine = imported(folder, "univg-r1", [univg_r1_row(), univg_r1_row(), univg_r1_row(id="u2")])
    assert card["quarantined"] == 1 and "duplicate id" in quarantine[0]["reasons"][0] and quarantine[0]["index"] == 1


def test_bad_lines_of_a_jsonl_file_are_quarantined(root):
    folder, _ = root
    rows = [synth_row(), b"\xff\xfe not utf-8 \xff", b'{"id": "cut", "task": ', synth_row(id="s9")]
    card, quarantine = imported(folder, "mig-synth", rows, name="rows.jsonl")
    assert card["quarantined"] == 2
    assert "not UTF-8" in quarantine[0]["reasons"][0] and "malformed JSON" in quarantine[1]["reasons"][0]


def test_a_json_list_cut_short_stops_the_import_naming_the_file(root, tmp_path):
    folder, _ = root
    path = folder / "cut.json"
    path.write_text(json.dumps([mig_bench_row(), mig_bench_row()])[:-40])
    result = runner.invoke(app, ["data", "import", "--input", str(path), "--format", "mig-bench",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(path) in result.output and "neither a JSON document nor JSONL" in result.output


def test_an_unknown_import_format_and_a_missing_file_stop_with_one_line(root, tmp_path):
    folder, _ = root
    path = write_json_list(folder / "rows.json", [mig_bench_row()])
    unknown = runner.invoke(app, ["data", "import", "--input", str(path), "--format", "coco", "--out", str(tmp_path)])
    assert unknown.exit_code == 1 and "unknown benchmark 'coco'" in unknown.output
    missing = runner.invoke(app, ["data", "import", "--input", str(folder / "nope.json"), "--format", "mig-bench",
                                  "--out", str(tmp_path)])
    assert missing.exit_code == 1 and "nope.json" in missing.output and "Traceback" not in missing.output


# ----------------------------------------------------------------------------- params
@pytest.mark.parametrize("args, words", [
    (["-S", "sft.no_such_key=1"], ["sft.no_such_key"]),
    (["-S", "data.seed=seven"], ["data.seed", "seven"]),
    (["-S", "data.seed"], ["must look like section.key=value"]),
    (["-S", "eval.batch_size=-3"], ["eval.batch_size"]),
])
def test_bad_overrides_stop_with_the_key_named(tmp_path, args, words):
    result = runner.invoke(app, ["params", "--params", str(tmp_path / "none.yaml"), *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert all(word in result.output for word in words), result.output


@pytest.mark.parametrize("text, words", [
    ("data:\n  no_such_key: 1\n", ["no_such_key"]),
    ("data:\n  seed: [1, 2]\n", ["data.seed"]),
    ("data: [unclosed\n", ["params.yaml"]),
    ("- just\n- a list\n", ["params.yaml"]),
])
def test_a_bad_params_file_stops_naming_the_file_and_key(tmp_path, text, words):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["params", "--params", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert all(word in result.output for word in words), result.output


# ----------------------------------------------------------------------------- later stages
def test_cot_generate_puts_bad_lines_beside_the_output_with_reasons(root, tmp_path):
    folder, kinds = root
    source = write_jsonl_rows(folder / "records.jsonl", [synth_row(), b"{oops", synth_row(id="s1", box=[5, 5, 1, 1])])
    out = tmp_path / "cot" / "train.jsonl"
    result = runner.invoke(app, ["cot", "generate", "--params", str(tmp_path / "none.yaml"), "--input", str(source),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    failed = [json.loads(line) for line in out.with_suffix(".failed.jsonl").read_text().splitlines()]
    assert len(failed) == 2 and len(out.read_text().splitlines()) == 1
    assert "malformed JSON" in json.dumps(failed[0]) and "inverted" in json.dumps(failed[1])


def test_validation_rejects_an_image_outside_the_data_root(root, tmp_path):
    folder, kinds = root
    cot = "Image-1 shows the red square. The target is in image 2."
    rows = [synth_row(id="in", cot=cot), synth_row(id="out", images=["good.png", kinds["dotdot"]], cot=cot)]
    source = write_jsonl_rows(folder / "cot.jsonl", rows)
    result = runner.invoke(app, ["cot", "validate", "--params", str(tmp_path / "none.yaml"), "--input", str(source),
                                 "--out", str(tmp_path / "validated"), "--image-root", str(folder),
                                 "-S", "validate.min_accept_fraction=0"])
    assert result.exit_code == 0, result.output
    rejected = [json.loads(line) for line in (tmp_path / "validated" / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejected if "image_unreadable" in json.dumps(r)] == ["out"]


@pytest.mark.parametrize("stage, bad, where, words", [
    ("sft", b"{oops", 2, "malformed JSON"),  # a malformed line, before anything is logged
    ("grpo", "far_absolute", 2, "absolute image path refused"),  # an image outside the root
])
def test_training_on_bad_input_stops_naming_file_and_line(root, tmp_path, stage, bad, where, words):
    folder, kinds = root
    second = bad if isinstance(bad, bytes) else synth_row(id="s1", cot="c", images=["good.png", kinds[bad]])
    train = write_jsonl_rows(folder / "train.jsonl", [synth_row(cot="c"), second])
    result = runner.invoke(app, ["train", stage, "--params", str(tmp_path / "none.yaml"), "--train", str(train),
                                 "--model", "univg-tiny", "--out", str(tmp_path / stage), "--max-steps", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"{train}:{where}" in result.output and words in result.output


def test_eval_with_a_model_that_does_not_exist_stops_with_one_line(root, tmp_path):
    folder, _ = root
    annotations = write_jsonl_rows(folder / "test.jsonl", [synth_row()])
    for model in (str(tmp_path / "no-model"), "models:/no-such-model/3"):
        result = runner.invoke(app, ["eval", "--model", model, "--benchmark", "mig-synth", "--annotations",
                                     str(annotations), "--out", str(tmp_path / "eval")])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "error:" in result.output


def test_score_reports_predictions_whose_indices_do_not_match(root, tmp_path):
    folder, _ = root
    annotations = write_jsonl_rows(folder / "test.jsonl", [synth_row(id="a"), synth_row(id="b")])
    predictions = write_jsonl_rows(tmp_path / "p.jsonl", [
        {"index": 0, "response": "<answer>Image-2: (100,100),(300,300)</answer>"},
        {"index": 7, "response": "x"}, {"index": 0, "response": "again"}, {"response": "no index"}, b"{oops"])
    out = tmp_path / "metrics.json"
    result = runner.invoke(app, ["score", "--benchmark", "mig-synth", "--annotations", str(annotations),
                                 "--predictions", str(predictions), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 2 and metrics["acc@0.5"] == pytest.approx(0.5)  # row b has no prediction: a miss
    assert metrics["prediction_problems"]["count"] == 4


def test_promote_without_metrics_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["promote", "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "no candidate" in result.output


@pytest.mark.parametrize("kind, words", [("corrupt", "not a readable image"), ("zero", "not a readable image"),
                                         ("huge", "over the limit"), ("one_pixel", "too small")])
def test_predict_refuses_bad_images_before_the_model_runs(root, kind, words):
    folder, kinds = root
    result = runner.invoke(app, ["predict", "--model", "no-model-needed", "--image", str(folder / kinds[kind]),
                                 "--query", "Where?"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert words in result.output and kinds[kind] in result.output, result.output
