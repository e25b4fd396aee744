"""Print the pipeline's results as a markdown table (used by `make run`, the README and the flow)."""

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


def comparisons_table(compare: dict[str, Any]) -> str:
    rows = ["| comparison | delta Acc@0.5 | 95% CI |", "|---|---|---|"]
    for name, entry in compare.items():
        if isinstance(entry, dict) and "delta" in entry:
            lo, hi = entry["ci95"]
            rows.append(f"| {name} | {entry['delta']:+.3f} | [{lo:+.3f}, {hi:+.3f}] |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else "metrics/eval.json")
    if not path.exists():
        print(f"{path}: no results yet (run `dvc repro`)", file=sys.stderr)
        return 1
    metrics = json.loads(path.read_text())
    print(results_table(metrics))
    print()
    print(per_task_table(metrics))
    compare = path.with_name("compare.json")
    if compare.exists():
        print()
        print(comparisons_table(json.loads(compare.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
