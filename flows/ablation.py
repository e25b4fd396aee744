"""Ablations as one run: a grid of pipeline flow runs, then one comparison table.

    python flows/ablation.py --weighting exp power log none --seeds 0 1 2      # the paper's ablation
    python flows/ablation.py --weighting exp none --seeds 0 1 2 --baseline none

Each grid point is a pipeline flow run (flows/pipeline.py) with the overrides
grpo.<profile>.weighting and grpo.<profile>.seed, so each is its own DVC experiment with its outputs
pushed, and DVC reuses every stage above GRPO. After each run the trained model's per-record hits
are read from eval/<model>/per_sample.jsonl; the table (univg.eval.ablation: mean Acc@0.5 with a
bootstrap interval over test records, each seed, the seed spread, the difference to the baseline)
goes to reports/ablation/ as markdown, JSON and a plot, and to an MLflow run `ablation`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow

if __package__ in (None, ""):  # run as a script: make `flows` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.pipeline import pipeline  # noqa: E402
from univg.config import load_params  # noqa: E402
from univg.eval.ablation import markdown_table, summarize_grid, write_report  # noqa: E402
from univg.gate import read_hits  # noqa: E402
from univg.tracking import setup_mlflow  # noqa: E402

MODES = ("exp", "power", "log", "none")


@flow(name="univg-ablation", log_prints=True)
def ablation(
    repo: str = ".",
    weighting: list[str] | None = None,
    seeds: list[int] | None = None,
    baseline: str = "none",
    model: str = "grpo",
    stage_retries: int = 1,
) -> dict[str, Any]:
    """Run the grid weighting x seeds and write the comparison table; returns its summary.

    weighting: difficulty-weighting modes (default: all four); seeds: GRPO seeds (default 0, 1, 2);
    baseline: the setting every other is compared with; model: which evaluated model the table reads.
    """
    import mlflow

    root = Path(repo).resolve()
    params = load_params(root / "params.yaml")
    profile = params.grpo.profile
    runs = []
    for mode in weighting or list(MODES):
        for seed in seeds if seeds is not None else [0, 1, 2]:
            result = pipeline(repo=str(root), stage_retries=stage_retries,
                              overrides={f"grpo.{profile}.weighting": mode, f"grpo.{profile}.seed": seed})
            runs.append({"setting": mode, "seed": seed, "experiment": result["experiment"],
                         "hits": read_hits(root / params.eval.out_dir / model / "per_sample.jsonl")})
            print(f"weighting={mode} seed={seed}: {model} acc@0.5 {result['eval'][model]['acc@0.5']:.3f} "
                  f"(experiment {result['experiment']})")

    summary = summarize_grid(runs, baseline, params.eval.n_bootstrap, params.eval.seed)
    summary["experiments"] = {f"{r['setting']}/seed{r['seed']}": r["experiment"] for r in runs}
    summary["model"] = model
    files = write_report(summary, root / "reports" / "ablation", title="weighting")
    print(markdown_table(summary, "weighting"))

    setup_mlflow(params.tracking.uri, params.tracking.experiment, root)
    with mlflow.start_run(run_name="ablation", tags={"univg.stage": "ablation"}):
        mlflow.log_params({"weighting": ",".join(r["setting"] for r in summary["rows"]), "baseline": baseline,
                           "seeds": ",".join(str(s) for s in (seeds if seeds is not None else [0, 1, 2]))})
        for row in summary["rows"]:
            mlflow.log_metrics({f"{row['setting']}.acc_at_0.5": row["acc"], f"{row['setting']}.seed_sd": row["seed_sd"]})
        for path in files.values():
            mlflow.log_artifact(str(path), artifact_path="ablation")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an ablation grid (weighting x seeds) and write its table.")
    parser.add_argument("--repo", default=".", help="project checkout (default: .)")
    parser.add_argument("--weighting", nargs="+", default=list(MODES), choices=MODES, help="weighting modes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="GRPO seeds")
    parser.add_argument("--baseline", default="none", help="the setting the others are compared with")
    args = parser.parse_args(argv)
    ablation(repo=args.repo, weighting=args.weighting, seeds=args.seeds, baseline=args.baseline)


if __name__ == "__main__":
    main()
