"""The results for people: the markdown tables and the training-curves picture from MLflow."""

from __future__ import annotations

import pytest

from univg.summary import comparisons_table, results_table, training_curves

ENTRY = {"acc@0.3": 0.5, "acc@0.5": 0.25, "acc@0.7": 0.125, "miou": 0.3, "avg": 0.2, "n": 8,
         "ci95": {"acc@0.5": [0.1, 0.4]}}


def test_tables_show_the_numbers_and_intervals():
    table = results_table({"sft": ENTRY})
    assert "| sft | 0.500 | 0.250 [0.100, 0.400] | 0.125 | 0.300 | 0.200 | 8 |" in table
    assert "| grpo-sft | +0.020 | [-0.010, +0.050] |" in comparisons_table(
        {"grpo-sft": {"delta": 0.02, "ci95": [-0.01, 0.05]}})


def test_training_curves_draw_the_latest_runs_metrics(mlflow_uri, tmp_path):
    import mlflow
    from PIL import Image

    from univg.tracking import setup_mlflow

    setup_mlflow(mlflow_uri, "univg")
    with pytest.raises(ValueError, match="no SFT or GRPO metrics"):
        training_curves(tmp_path / "none.png", mlflow_uri)
    for stage, keys in (("sft", ("loss",)), ("grpo", ("reward", "rewards/iou_reward/mean"))):
        with mlflow.start_run(tags={"univg.stage": stage}):
            for step in range(1, 6):
                mlflow.log_metrics({key: 1.0 / step for key in keys}, step=step)
    out = training_curves(tmp_path / "curves.png", mlflow_uri)
    assert Image.open(out).size[0] > 500


def test_paper_table_keeps_the_papers_column_order():
    from univg.summary import PAPER_COLUMNS, paper_table

    entry = {"avg": 0.5, "per_task": {task: {"acc@0.5": i / 10} for i, (task, _) in enumerate(PAPER_COLUMNS)}}
    table = paper_table({"grpo": entry})
    assert table.splitlines()[0].startswith("| model | Static Diff | Robust Diff | Common | OT | MV | Region")
    assert table.splitlines()[2] == "| grpo | 0.0 | 10.0 | 20.0 | 30.0 | 40.0 | 50.0 | 60.0 | 70.0 | 80.0 | 90.0 | 50.0 |"
