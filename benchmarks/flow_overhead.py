"""Orchestration overhead of the Prefect pipeline flow against plain `dvc repro` (target <= 5% of a default run).

The flow adds, per run: the flow and task bookkeeping on the Prefect API, one `dvc repro <stage>`
process per stage instead of one `dvc repro`, the MLflow parent run, and the summary artifacts.
None of that depends on how long the stages compute, so it is measured on an up-to-date
pipeline, where every stage is skipped and only the overhead is left:

    overhead = time(flow run, all stages skipped) - time(`dvc repro`, all stages skipped)

and compared with the duration of a default run: --default-run-seconds (e.g. `time dvc repro`
of `make run`), or else what the checkout's own MLflow store says the last full run took.
The Prefect server runs already (a real `prefect server start` on loopback, started before
timing, as in a deployment); the flow's MLflow parent runs go to a temporary store.

    python benchmarks/flow_overhead.py                       # after `make run` in this checkout
    python benchmarks/flow_overhead.py --repo /path/to/checkout --default-run-seconds 1800
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_SHARE = 0.05

from benchmarks.dvc_noop import stale_stages, time_noop  # noqa: E402
from flows import deploy  # noqa: E402
from flows.steps import dvc_stage_names  # noqa: E402


def default_run_seconds(repo: Path) -> tuple[float | None, str]:
    """How long the last full run took, from the checkout's MLflow store, and how it was found.

    Preferred: the newest pipeline parent run in which every stage ran (the flow's wall time).
    Else the sum of the newest run of each stage: a lower bound, since it leaves out each
    stage's process start-up (imports), so the share it gives errs on the high side.
    """
    import mlflow

    from univg.config import load_params
    from univg.tracking import tracking_uri

    params = load_params(repo / "params.yaml")
    mlflow.set_tracking_uri(tracking_uri(params.tracking.uri, repo))
    if mlflow.get_experiment_by_name(params.tracking.experiment) is None:
        return None, "no MLflow experiment"
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment], filter_string="status = 'FINISHED'",
                              order_by=["start_time DESC"], output_format="list", max_results=5000)
    stages = set(dvc_stage_names(repo))
    for parent in (r for r in runs if r.data.tags.get("univg.stage") == "pipeline"):
        nested = {r.data.tags.get("univg.stage") for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
        if stages <= nested:
            return (parent.info.end_time - parent.info.start_time) / 1000, f"pipeline run {parent.info.run_id}"
    latest: dict[str, float] = {}
    for run in runs:
        stage = run.data.tags.get("univg.stage")
        if stage in stages and stage not in latest and run.info.end_time:
            latest[stage] = (run.info.end_time - run.info.start_time) / 1000
    if set(latest) != stages:
        return None, "no finished run of every stage"
    return sum(latest.values()), "sum of the newest stage runs (lower bound)"


def time_flow(repo: Path) -> float:
    from flows.pipeline import pipeline

    started = time.perf_counter()
    result = pipeline(repo=str(repo), stage_retries=0)
    seconds = time.perf_counter() - started
    if any(s["status"] != "skipped" for s in result["stages"]):
        raise SystemExit(f"error: the flow ran stages, not a no-op: {result['stages']}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="a checkout with an up-to-date pipeline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--default-run-seconds", type=float, default=None,
                        help="duration of a default `dvc repro` (default: from the checkout's MLflow store)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    if stale_stages(repo):
        raise SystemExit("error: the pipeline is not up to date: run `dvc repro` first")
    reference, source = (args.default_run_seconds, "--default-run-seconds") if args.default_run_seconds else \
        default_run_seconds(repo)

    with tempfile.TemporaryDirectory() as tmp:
        # --- a real Prefect server, up before timing starts; parent runs to a scratch store
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlruns.db'}"
        server, api_url = deploy.start_server(Path(tmp) / "prefect", deploy.free_port(), timeout=180)
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                time_flow(repo)  # warm-up: imports, experiment creation
                time_noop(repo)
                direct, flow = [], []
                for _ in range(args.repeats):  # interleaved, so load drifts hit both alike
                    direct.append(round(time_noop(repo), 3))
                    flow.append(round(time_flow(repo), 3))
        finally:
            deploy.stop(server)

    overhead = statistics.median(flow) - statistics.median(direct)
    result = {
        "benchmark": "flow_overhead",
        "repo": str(repo),
        "stages": len(dvc_stage_names(repo)),
        "dvc_repro_noop_s": direct,
        "flow_noop_s": flow,
        "overhead_s": round(overhead, 3),
        "default_run_s": round(reference, 1) if reference else None,
        "default_run_source": source,
        "overhead_share": round(overhead / reference, 4) if reference else None,
        "target_share": TARGET_SHARE,
        "meets_target": (overhead / reference <= TARGET_SHARE) if reference else None,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
