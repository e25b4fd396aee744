"""Fan-out on a real local Ray cluster: sharded evaluation and sharded CoT generation, run as
Prefect tasks through prefect-ray's RayTaskRunner, must write exactly what one process writes."""

from __future__ import annotations

import json

import pytest

from tests.train.test_sft import SIZES, write_records
from univg.config import parse_params


def test_slices_cover_every_row_once_in_order():
    from flows.fanout import slices

    assert slices(10, 3) == [range(0, 3), range(3, 7), range(7, 10)]
    assert slices(2, 5) == [range(0, 1), range(1, 2)]  # never an empty shard
    assert [i for part in slices(101, 8) for i in part] == list(range(101))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    folder = tmp_path_factory.mktemp("fanout")
    data = write_records(folder / "data", count=9)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows:  # the rule teacher writes chains; a record without a scene still gets one
        row.pop("cot")
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    build_tiny_model(SIZES, corpus_from_records([data]), folder / "model")
    with data.open("a") as handle:
        handle.write("{broken\n")  # one unreadable line: it must land in the failures file, in its place
    return folder, data


def test_sharded_eval_and_cot_on_ray_equal_one_process(inputs, tmp_path, prefect_harness, monkeypatch):
    import ray

    from flows.fanout import fanout_cot, fanout_eval, task_runner
    from univg.cot.generate import generate_cot
    from univg.eval.run import evaluate_model

    folder, data = inputs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    params = parse_params({}, {"fanout.shards": 3, "eval.batch_size": 2, "eval.max_new_tokens": 10,
                               "eval.n_bootstrap": 100})
    annotations = folder / "annotations.jsonl"  # the benchmark: the records without the broken line
    annotations.write_text("".join(line + "\n" for line in data.read_text().splitlines()[:-1]))

    runner = task_runner(params.fanout, local_cpus=2)
    try:
        metrics = fanout_eval.with_options(task_runner=runner)(
            str(folder / "model"), "mig-synth", str(annotations), str(tmp_path / "fan-eval"), params)
        summary = fanout_cot.with_options(task_runner=task_runner(params.fanout, local_cpus=2))(
            str(data), str(tmp_path / "fan-cot" / "cot.jsonl"), params)
    finally:
        ray.shutdown()

    evaluate_model(str(folder / "model"), "mig-synth", annotations, tmp_path / "one-eval", batch_size=2,
                   max_new_tokens=10, n_bootstrap=100, log_to_mlflow=False, device="cpu")
    assert (tmp_path / "fan-eval" / "predictions.jsonl").read_text() == (tmp_path / "one-eval" / "predictions.jsonl").read_text()
    assert metrics["n"] == 9 and metrics["shards"] == 3

    generate_cot(data, tmp_path / "one-cot" / "cot.jsonl", params.cot)
    for name in ("cot.jsonl", "cot.failed.jsonl"):
        fanned, alone = tmp_path / "fan-cot" / name, tmp_path / "one-cot" / name
        assert fanned.read_text() == alone.read_text(), name
    assert (summary["rows"], summary["written"], summary["failures"], summary["shards"]) == (10, 9, 1, 3)
