"""Batched generation, error rows for bad images, `evaluate_model` and the DVC stage on a tiny model."""

from __future__ import annotations

import csv
import json

import pytest
from eval_helpers import synth_record, write_lines

from univg.data.benchmarks import load_benchmark
from univg.data.images import ImagePolicy
from univg.eval.inference import batches_by_length, generate_predictions, model_generate, prompt_cost
from univg.eval.run import evaluate_model, run_eval_stage


def echo_generator(calls: list, fail_on: str | None = None):
    """A GenerateFn that answers with the number of images, and fails on a chosen question."""

    def generate(batch_messages, batch_images):
        calls.append([len(images) for images in batch_images])
        questions = [m[0]["content"][-1]["text"] for m in batch_messages]
        if fail_on and any(fail_on in q for q in questions):
            raise RuntimeError("processor rejected the sample")
        return [f"<answer>Image-{len(images)}: (1,1),(9,9)</answer>" for images in batch_images]

    return generate


def test_one_row_per_record_sorted_batches_and_error_rows(fixtures):
    # images unchecked at load: the loop's own guard against a corrupt image is under test here
    bench = load_benchmark("mig-synth", fixtures / "mig_synth.jsonl", check_images=False)
    calls: list = []
    rows = generate_predictions(echo_generator(calls), bench, "indexed", batch_size=2, progress=False)
    assert [r["index"] for r in rows] == list(range(6))
    assert "not decodable" in rows[3]["error"] and rows[3]["response"] == ""
    assert rows[4]["error"].startswith("quarantined") and rows[5]["error"].startswith("quarantined")
    assert sum(len(c) for c in calls) == 3  # the corrupt sample never reaches the model
    order = [s.index for batch in batches_by_length(bench.samples, bench.base_dir, 2) for s in batch]
    costs = [prompt_cost(bench.samples[i], bench.base_dir) for i in order]
    assert costs == sorted(costs, reverse=True) and order[-1] == 3  # one small image + a corrupt one: last
    assert calls == [[2, 3], [2]]  # s0 (2 images, long question), s1 (3 images), then s2


def test_a_failing_batch_is_retried_sample_by_sample(tmp_path, fixtures):
    images = [str(fixtures / "images" / "a.png"), str(fixtures / "images" / "b.png")]  # absolute paths
    records = [synth_record(i, images=images) for i in range(3)]
    records[1]["question"] = "poison"
    bench = load_benchmark("mig-synth", write_lines(tmp_path / "batch.jsonl", records),
                           policy=ImagePolicy(allow_outside_root=True))
    rows = generate_predictions(echo_generator([], fail_on="poison"), bench, "indexed", batch_size=3, progress=False)
    assert [("error" in r) for r in rows] == [False, True, False]
    assert "generation failed" in rows[1]["error"]
    with pytest.raises(RuntimeError, match="every sample"):
        generate_predictions(echo_generator([], fail_on="First output"), bench, "indexed", progress=False)


def test_batched_generation_matches_one_at_a_time(tiny_model_dir, fixtures):
    from univg.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_model_dir), padding_side="left")
    bench = load_benchmark("mig-synth", fixtures / "mig_synth.jsonl")
    generate = model_generate(model, processor, max_new_tokens=12)
    batched = generate_predictions(generate, bench, "indexed", batch_size=4, progress=False)
    single = generate_predictions(generate, bench, "indexed", batch_size=1, progress=False)
    assert [r["response"] for r in batched] == [r["response"] for r in single]
    assert all(r["response"] for r in batched[:3])


def test_evaluate_model_writes_everything_and_logs_to_mlflow(tiny_model_dir, fixtures, tmp_path, mlflow_uri):
    import mlflow

    out = tmp_path / "eval"
    metrics = evaluate_model(str(tiny_model_dir), "mig-synth", fixtures / "mig_synth.jsonl", out, batch_size=4,
                             max_new_tokens=8, n_bootstrap=100, report_samples=3)
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["index"] for p in predictions] == list(range(6))
    assert set(predictions[0]) == {"index", "response"} and "error" in predictions[3]
    # row 3's image is corrupt: quarantined at load (with rows 4 and 5), so no model call errs
    assert metrics["n"] == 6 and metrics["errors"] == 0 and metrics["quarantined"] == 3
    assert json.loads((out / "metrics.json").read_text())["n"] == 6
    assert len((out / "per_sample.jsonl").read_text().splitlines()) == 6
    html = (out / "report" / "index.html").read_text()
    assert "per_task.png" in html and "iou_hist.png" in html and html.count("<div class='card'>") == 3

    mlflow.set_tracking_uri(mlflow_uri)
    run = mlflow.search_runs(experiment_names=["univg"], output_format="list")[0]
    assert run.data.metrics["n"] == 6 and "acc_0.5" in run.data.metrics and "common_object/acc_0.5" in run.data.metrics
    assert run.data.params["benchmark"] == "mig-synth" and run.inputs.dataset_inputs
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"predictions.jsonl", "metrics.json", "per_sample.jsonl", "report"} <= artifacts


def test_eval_stage_writes_contract_files(tiny_model_dir, fixtures, tmp_path, mlflow_uri):
    import mlflow

    from univg.config import Params

    params = Params()
    params.eval.n_bootstrap, params.eval.max_new_tokens, params.eval.report_samples = 100, 8, 2
    models = {"base": str(tiny_model_dir), "sft": str(tiny_model_dir), "grpo": str(tmp_path / "no-grpo")}
    result = run_eval_stage(params, models, fixtures / "mig_synth.jsonl", tmp_path / "eval",
                            tmp_path / "metrics" / "eval.json", tmp_path / "metrics" / "compare.json",
                            tmp_path / "plots" / "eval_per_task.csv")
    eval_json = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    assert set(eval_json) == {"base", "sft"}  # nothing else at the top level
    for entry in eval_json.values():
        assert {"acc@0.3", "acc@0.5", "acc@0.7", "miou", "n", "avg", "per_task", "ci95"} <= set(entry)
        assert entry["n"] == 6 and set(entry["per_task"]["diff"]) == {"acc@0.3", "acc@0.5", "acc@0.7", "miou", "n"}
    compare = json.loads((tmp_path / "metrics" / "compare.json").read_text())
    assert set(compare) == {"sft-base"} and compare["sft-base"]["delta"] == 0.0 and compare["sft-base"]["n"] == 6
    rows = list(csv.reader((tmp_path / "plots" / "eval_per_task.csv").open()))
    assert rows[0] == ["model", "task", "acc@0.5"] and len(rows) == 1 + 2 * 2
    assert "not found" in result["skipped"]["grpo"]

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["univg"], output_format="list")
    parent = next(r for r in runs if r.info.run_name == "eval")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["eval-base", "eval-sft"]
    assert "sft-base/delta" in parent.data.metrics


def test_eval_asks_for_the_format_the_model_was_trained_on(tiny_model_dir, fixtures, tmp_path, mlflow_uri):
    """`answer_format` None (params `auto`): the checkpoint's univg_train.json decides, not the benchmark."""
    import shutil

    model = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, model)
    (model / "univg_train.json").write_text(json.dumps({"stage": "sft", "answer_format": "univg-r1"}))
    out = tmp_path / "eval"
    evaluate_model(str(model), "mig-synth", fixtures / "mig_synth.jsonl", out, batch_size=4, max_new_tokens=4,
                   n_bootstrap=100, report_samples=0, log_to_mlflow=False)
    assert json.loads((out / "metrics.json").read_text())["answer_format"] == "univg-r1"
    evaluate_model(str(model), "mig-synth", fixtures / "mig_synth.jsonl", out, batch_size=4, max_new_tokens=4,
                   n_bootstrap=100, report_samples=0, log_to_mlflow=False, answer_format="indexed")
    assert json.loads((out / "metrics.json").read_text())["answer_format"] == "indexed"
