"""The pipeline's results for people: markdown tables (`make run`, the README, the flow) and the
training curves as a picture.

    python -m univg.summary [metrics/eval.json]
    python -m univg.summary --curves docs/images/training_curves.png   # from the MLflow store
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _interval(entry: dict[str, Any], key: str) -> str:
    ci = (entry.get("ci95") or {}).get(key)
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def results_table(metrics: dict[str, dict[str, Any]]) -> str:
    rows = ["| model | Acc@0.3 | Acc@0.5 [95% CI] | Acc@0.7 | mIoU | task avg | n |", "|---|---|---|---|---|---|---|"]
    for name, entry in metrics.items():
        rows.append(
            f"| {name} | {entry['acc@0.3']:.3f} | {entry['acc@0.5']:.3f}{_interval(entry, 'acc@0.5')} | "
            f"{entry['acc@0.7']:.3f} | {entry['miou']:.3f} | {entry['avg']:.3f} | {entry['n']} |"
        )
    return "\n".join(rows)


def per_task_table(metrics: dict[str, dict[str, Any]]) -> str:
    tasks = sorted({task for entry in metrics.values() for task in entry.get("per_task", {})})
    rows = ["| task | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for task in tasks:
        cells = [f"{entry.get('per_task', {}).get(task, {}).get('acc@0.5', float('nan')):.3f}" for entry in metrics.values()]
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# MIG-Bench's columns in the paper's order: spontaneous grounding, then referential grounding.
PAPER_COLUMNS = (
    ("diff", "Static Diff"), ("view_diff", "Robust Diff"), ("common_object", "Common"),
    ("object_tracking", "OT"), ("multi_view", "MV"), ("region", "Region"), ("refer_grounding", "Refer"),
    ("group_grounding", "GG"), ("reasoning", "Reason"), ("correspondence", "Co-Re"),
)


def paper_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Per-task Acc@0.5 in percent, laid out as UniVG-R1's MIG-Bench table (AVE: the task mean)."""
    rows = ["| model | " + " | ".join(title for _, title in PAPER_COLUMNS) + " | AVE |",
            "|---|" + "---|" * (len(PAPER_COLUMNS) + 1)]
    for name, entry in metrics.items():
        per_task = entry.get("per_task", {})
        cells = [f"{100 * per_task[task]['acc@0.5']:.1f}" if task in per_task else "-" for task, _ in PAPER_COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {100 * entry.get('avg', float('nan')):.1f} |")
    return "\n".join(rows)


def comparisons_table(compare: dict[str, Any]) -> str:
    rows = ["| comparison | delta Acc@0.5 | 95% CI |", "|---|---|---|"]
    for name, entry in compare.items():
        if isinstance(entry, dict) and "delta" in entry:
            lo, hi = entry["ci95"]
            rows.append(f"| {name} | {entry['delta']:+.3f} | [{lo:+.3f}, {hi:+.3f}] |")
    return "\n".join(rows)


# (stage, MLflow metric, panel title); KL appears only when GRPO's beta > 0 (TRL skips it at 0).
CURVES = (
    ("sft", "loss", "SFT loss"),
    ("sft", "mean_token_accuracy", "SFT token accuracy"),
    ("grpo", "reward", "GRPO reward (IoU + format)"),
    ("grpo", "rewards/iou_reward/mean", "GRPO IoU reward"),
    ("grpo", "rewards/format_reward/mean", "GRPO format reward"),
    ("grpo", "kl", "GRPO KL to the reference"),
    ("grpo", "completions/mean_length", "GRPO completion length (tokens)"),
    ("grpo", "difficulty/weight_mean", "GRPO mean difficulty weight"),
)


def training_curves(out: Path, tracking_uri: str = "", experiment: str = "univg") -> Path:
    """Draw the latest SFT and GRPO runs' logged metrics over steps into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    from univg.tracking import tracking_uri as resolve_uri

    mlflow.set_tracking_uri(resolve_uri(tracking_uri))
    client = mlflow.MlflowClient()
    latest = {}
    for stage in ("sft", "grpo"):
        runs = mlflow.search_runs(experiment_names=[experiment], filter_string=f"tags.`univg.stage` = '{stage}'",
                                  order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
        if runs:
            latest[stage] = runs[0].info.run_id
    panels = [(stage, key, title) for stage, key, title in CURVES
              if stage in latest and client.get_metric_history(latest[stage], key)]
    if not panels:
        raise ValueError(f"no SFT or GRPO metrics in experiment {experiment!r} at {mlflow.get_tracking_uri()}")
    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
    for axis, (stage, key, title) in zip(axes.flat, panels, strict=False):
        history = sorted(client.get_metric_history(latest[stage], key), key=lambda m: m.step)
        axis.plot([m.step for m in history], [m.value for m in history], marker=".", linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--curves"]:
        print(training_curves(Path(argv[1] if len(argv) > 1 else "plots/training_curves.png")))
        return 0
    path = Path(argv[0] if argv else "metrics/eval.json")
    if not path.exists():
        print(f"{path}: no results yet (run `dvc repro`)", file=sys.stderr)
        return 1
    metrics = json.loads(path.read_text())
    print(results_table(metrics))
    print()
    print(paper_table(metrics))
    compare = path.with_name("compare.json")
    if compare.exists():
        print()
        print(comparisons_table(json.loads(compare.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
