"""`univg cot generate` with the rule teacher, then `validate`, and both stages' MLflow runs."""

from __future__ import annotations

import json

import pytest
from cot_helpers import good_record, read_jsonl, write_lines

from univg.config import CotConfig, Params, ValidateConfig
from univg.cot.generate import failed_path, generate_cot, run_cot_stage
from univg.cot.validate import ValidationFailed, run_validate_stage, validate_file
from univg.data.images import ImagePolicy
from univg.data.naming import last_named_image


def test_rule_teacher_end_to_end_on_mig_synth(synth_dir, tmp_path):
    out = tmp_path / "cot" / "train.jsonl"
    stats = generate_cot(synth_dir / "train.jsonl", out, CotConfig(num_candidates=3))
    inputs = read_jsonl(synth_dir / "train.jsonl")
    rows = read_jsonl(out)
    assert stats["rows"] == stats["written"] == len(rows) == len(inputs) and stats["failures"] == 0
    assert stats["generic_chains"] == 0
    for source, row in zip(inputs, rows, strict=True):
        assert {k: v for k, v in row.items() if k not in ("cot", "meta", "images")} == \
            {k: v for k, v in source.items() if k not in ("meta", "images")}
        assert row["meta"]["scene"] == source["meta"]["scene"]
        assert row["meta"]["cot"]["teacher"] == "rule" and row["meta"]["cot"]["candidates"] == 3
        assert "answer_box" not in row["meta"]["cot"]  # the rule teacher writes no box of its own
        assert last_named_image(row["cot"]) == row["target_image"]
        assert all((out.parent / p).resolve() == (synth_dir / q).resolve() for p, q in zip(row["images"], source["images"], strict=True))
    assert failed_path(out).read_text() == ""
    # Everything the rule teacher writes passes validation, and no test record leaks in.
    # synth_dir is a session folder beside this test's: outside the data root of tmp_path/cot
    report = validate_file(out, tmp_path / "validated", ValidateConfig(), test_split=synth_dir / "test.jsonl",
                           policy=ImagePolicy(allow_outside_root=True))
    assert report["accepted"] == len(rows) and report["rejected"] == 0
    # The test split itself, checked against itself, is all leakage.
    leak = validate_file(synth_dir / "test.jsonl", tmp_path / "leak", ValidateConfig(min_accept_fraction=0.0),
                         test_split=synth_dir / "test.jsonl")
    assert leak["by_expectation"]["in_test_split"] == leak["total"]


def test_same_seed_same_chains_other_seed_other_wording(synth_dir, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate_cot(synth_dir / "train.jsonl", tmp_path / f"{name}.jsonl", CotConfig(seed=seed))
    a, b, c = ([r["cot"] for r in read_jsonl(tmp_path / f"{n}.jsonl")] for n in "abc")
    assert a == b and a != c


def test_bad_lines_and_invalid_records_go_to_failed(images, tmp_path):
    rows = [good_record(id="ok", cot=None), b"\xff\xfe{", '{"id": ', good_record(id="bad", box=[5, 5, 1, 1]), "", "[]",
            {"id": "imported", "task": "lisa", "images": ["img/c.png"], "question": "Which cup?", "target_image": 1,
             "box": [1, 2, 30, 40], "source": "univg-r1"}]
    source = write_lines(images / "in.jsonl", rows)
    out = tmp_path / "out" / "cot.jsonl"
    stats = generate_cot(source, out, CotConfig(), limit=None)
    written, failed = read_jsonl(out), read_jsonl(failed_path(out))
    assert [r["id"] for r in written] == ["ok", "imported"]
    assert stats["generic_chains"] == 2 and last_named_image(written[1]["cot"]) == 1  # neither has a scene
    assert all(r["meta"]["cot"]["scene"] is False for r in written)
    assert [f.get("line") for f in failed if "line" in f] == [2, 3, 6]
    assert any("box" in reason for f in failed if f.get("id") == "bad" for reason in f["reasons"])
    assert stats["rows"] == 6 == len(written) + len(failed)  # every non-blank line lands in one file
    assert stats["failures"] == 4
    assert generate_cot(source, tmp_path / "lim.jsonl", CotConfig(), limit=2)["rows"] == 2


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        generate_cot(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", CotConfig())


def _run_of(mlflow_uri, run_id):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    return client, client.get_run(run_id)


def test_stages_log_mlflow_runs(synth_dir, tmp_path, mlflow_uri):
    params = Params()
    params.data.allow_outside_root = True  # synth_dir is a session folder, outside this test's data root
    out = tmp_path / "cot" / "train.jsonl"
    stats = run_cot_stage(params, synth_dir / "train.jsonl", out, limit=10)
    client, run = _run_of(mlflow_uri, stats["mlflow_run_id"])
    assert run.data.tags["univg.stage"] == "cot" and run.data.metrics["written"] == 10
    assert run.data.params["cot.teacher"] == "rule"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["cot"]

    report = run_validate_stage(params, out, tmp_path / "validated", test_split=synth_dir / "test.jsonl")
    client, run = _run_of(mlflow_uri, report["mlflow_run_id"])
    assert run.data.metrics["accepted"] == 10 and run.data.metrics["rejected_chain_names_wrong_image"] == 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "data_docs"} <= artifacts
    assert "data_docs/index.html" in {a.path for a in client.list_artifacts(run.info.run_id, "data_docs")}
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "cot-accepted" and dataset.tags[0].value == "validated"
    assert json.loads(dataset.dataset.profile)["num_rows"] == 10


def test_failed_gate_is_logged_then_raised(images, tmp_path, mlflow_uri):
    import mlflow

    source = write_lines(images / "cot.jsonl", [good_record(id="a", question="qa"), good_record(id="b", cot="image 1 it is")])
    params = Params(validate=ValidateConfig(min_accept_fraction=0.9))
    with pytest.raises(ValidationFailed, match="50.0%"):
        run_validate_stage(params, source, tmp_path / "validated")
    (run,) = mlflow.MlflowClient(tracking_uri=mlflow_uri).search_runs(
        [mlflow.get_experiment_by_name("univg").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.metrics["accepted_fraction"] == 0.5 and run.data.metrics["rejected_chain_names_wrong_image"] == 1
