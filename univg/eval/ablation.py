"""An ablation grid's comparison table: one row per setting, its runs (seeds) pooled.

Input: one entry per run, {"setting": "exp", "seed": 0, "hits": {record id: 1.0 | 0.0}} (Acc@0.5
per test record, from the run's eval/<model>/per_sample.jsonl). Every run of a grid is scored on the
same test records.

Per setting:
  acc          mean Acc@0.5 over its seeds and records
  ci95         two-level bootstrap: records resampled (the same draw for every seed), then the
               mean over seeds; the interval covers the test set's sampling, not only one seed's
  seeds        each seed's Acc@0.5; seed_sd and seed_range show how much a seed alone moves it
  vs_baseline  the paired difference to the baseline setting (same record draws), with its interval
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _matrix(runs: list[dict[str, Any]], records: list[str]) -> np.ndarray:
    """[seeds x records] hits of one setting's runs, ordered by seed."""
    ordered = sorted(runs, key=lambda r: r["seed"])
    return np.array([[float(run["hits"].get(rid, 0.0)) for rid in records] for run in ordered])


def summarize_grid(runs: list[dict[str, Any]], baseline: str | None = None, n_bootstrap: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    if not runs:
        raise ValueError("no runs to compare")
    records = sorted(set().union(*(run["hits"] for run in runs)))
    settings = list(dict.fromkeys(run["setting"] for run in runs))  # first-seen order
    baseline = baseline if baseline in settings else None
    matrices = {s: _matrix([r for r in runs if r["setting"] == s], records) for s in settings}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(records), size=(n_bootstrap, len(records)))
    boot = {s: m[:, draws].mean(axis=(0, 2)) for s, m in matrices.items()}  # [n_bootstrap] per setting

    rows = []
    for setting in settings:
        per_seed = matrices[setting].mean(axis=1)
        row = {
            "setting": setting,
            "acc": float(matrices[setting].mean()),
            "ci95": [float(np.quantile(boot[setting], 0.025)), float(np.quantile(boot[setting], 0.975))],
            "seeds": {str(s["seed"]): float(v) for s, v in zip(
                sorted((r for r in runs if r["setting"] == setting), key=lambda r: r["seed"]), per_seed, strict=True)},
            "seed_sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "seed_range": [float(per_seed.min()), float(per_seed.max())],
        }
        if baseline and setting != baseline:
            delta = boot[setting] - boot[baseline]
            point = row["acc"] - float(matrices[baseline].mean())
            low, high = float(np.quantile(delta, 0.025)), float(np.quantile(delta, 0.975))
            row["vs_baseline"] = {"delta": point, "ci95": [low, high], "within_noise": low <= 0.0 <= high}
        rows.append(row)
    return {"metric": "acc@0.5", "records": len(records), "baseline": baseline, "n_bootstrap": n_bootstrap,
            "rows": rows}


def markdown_table(summary: dict[str, Any], title: str = "setting") -> str:
    baseline = summary["baseline"]
    head = f"| {title} | Acc@0.5 | 95% CI | per seed | seed sd |" + (f" vs {baseline} (95% CI) |" if baseline else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in summary["rows"]:
        seeds = ", ".join(f"{v:.3f}" for v in row["seeds"].values())
        cells = [row["setting"], f"{row['acc']:.3f}", f"[{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]", seeds,
                 f"{row['seed_sd']:.3f}"]
        if baseline:
            versus = row.get("vs_baseline")
            cells.append("-" if versus is None else f"{versus['delta']:+.3f} [{versus['ci95'][0]:+.3f}, "
                         f"{versus['ci95'][1]:+.3f}]{' (noise)' if versus['within_noise'] else ''}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{summary['records']} test records; intervals: {summary['n_bootstrap']} bootstrap draws.\n"


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Acc@0.5 per setting with its 95% interval, each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    figure, axis = plt.subplots(figsize=(1.6 + 1.2 * len(rows), 3.2))
    for x, row in enumerate(rows):
        low, high = row["ci95"]
        axis.errorbar([x], [row["acc"]], yerr=[[row["acc"] - low], [high - row["acc"]]], fmt="o", color="black",
                      capsize=4)
        seeds = list(row["seeds"].values())
        axis.scatter([x + 0.12] * len(seeds), seeds, s=14, color="tab:blue", alpha=0.8)
    axis.set_xticks(range(len(rows)), [row["setting"] for row in rows])
    axis.set_ylabel("Acc@0.5 (test)")
    axis.set_title("ablation: mean (95% CI), seeds as dots")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(summary: dict[str, Any], out_dir: Path, title: str = "setting") -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "ablation.json", "markdown": out_dir / "ablation.md", "plot": out_dir / "ablation.png"}
    files["json"].write_text(json.dumps(summary, indent=2) + "\n")
    files["markdown"].write_text(markdown_table(summary, title))
    plot(summary, files["plot"])
    return files
