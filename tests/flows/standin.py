"""A stand-in DVC repo with the real pipeline's layout and tiny python stages (seconds, not minutes).

Stages: data -> grpo -> eval -> promote. `grpo` writes a fake checkpoint (config.json) and logs
it through univg.tracking.log_model_checkpoint inside its stage run; `eval` writes per-sample
files and metrics/eval.json where the trained model beats the base model clearly; `promote` is
the real `univg promote`. Used by the flow and deployment tests and by benchmarks/flow_overhead.py.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from flows.steps import executable
from univg.config import Params, dump_params

STAGE_SCRIPT = textwrap.dedent(
    '''
    """Stand-in stages: `python stages.py <stage>`."""
    import json, random, sys
    from pathlib import Path

    from univg.config import load_params
    from univg.tracking import stage_run

    N = 120
    params = load_params("params.yaml")
    stage = sys.argv[1]

    def write_rows(path, rows):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("".join(json.dumps(r) + "\\n" for r in rows))

    with stage_run(stage, params):
        if stage == "data":
            write_rows("data/mig-synth/test.jsonl", [{"id": f"r{i}", "task": "region"} for i in range(N)])
        elif stage == "grpo":
            from univg.tracking import log_model_checkpoint

            final = Path(params.grpo.out_dir) / "final"
            final.mkdir(parents=True, exist_ok=True)
            profile = params.grpo.tiny_cpu
            (final / "config.json").write_text(json.dumps(
                {"lr": profile.learning_rate, "seed": profile.seed, "steps": profile.max_steps}))
            log_model_checkpoint(final, name="model")
        elif stage == "eval":
            # Longer training, better model: the stand-in's quality knob is grpo max_steps.
            rng = random.Random(params.grpo.tiny_cpu.seed)
            share = {"base": 0.2, "grpo": min(0.95, 0.3 + params.grpo.tiny_cpu.max_steps / 100)}
            metrics = {}
            for model, p in share.items():
                rows = [{"index": i, "id": f"r{i}", "task": "region", "iou": 0.9 if rng.random() < p else 0.1}
                        for i in range(N)]
                write_rows(f"eval/{model}/per_sample.jsonl", rows)
                acc = sum(r["iou"] >= 0.5 for r in rows) / N
                metrics[model] = {"acc@0.3": acc, "acc@0.5": acc, "acc@0.7": acc, "miou": acc, "n": N, "avg": acc}
            Path("metrics").mkdir(exist_ok=True)
            Path("metrics/eval.json").write_text(json.dumps(metrics, indent=2))
    '''
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      data:
        cmd: python stages.py data
        deps: [stages.py]
        params: [data]
        outs: [data/mig-synth]
      grpo:
        cmd: python stages.py grpo
        deps: [data/mig-synth]
        params: [grpo]
        outs: [models/grpo]
      eval:
        cmd: python stages.py eval
        deps: [models/grpo, data/mig-synth]
        params: [eval]
        outs: [eval]
        metrics:
          - metrics/eval.json:
              cache: false
      promote:
        cmd: univg promote
        deps: [metrics/eval.json, eval]
        params: [gate]
        outs:
          - metrics/promotion.json:
              cache: false
    """
)


def make_standin_repo(path: Path, tracking_uri: str = "") -> Path:
    """Create the stand-in repo at `path` (git + DVC initialised) and return it."""
    path.mkdir(parents=True, exist_ok=True)
    params = Params()
    params.eval.models = ["base", "grpo"]
    params.eval.n_bootstrap = 200
    params.grpo.tiny_cpu.max_steps = 40  # the quality knob starts here, whatever the default profile says
    params.tracking.uri = tracking_uri
    (path / "params.yaml").write_text(dump_params(params))
    (path / "dvc.yaml").write_text(DVC_YAML)
    (path / "stages.py").write_text(STAGE_SCRIPT)
    # A checkout of the project: the real flow and deployment files, stand-in stages.
    project = Path(__file__).resolve().parents[2]
    shutil.copytree(project / "flows", path / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (path / "infra").mkdir()
    shutil.copy(project / "infra" / "prefect.yaml", path / "infra" / "prefect.yaml")
    (path / ".gitignore").write_text("/data\n/models\n/eval\n/metrics\n*.db\n/mlartifacts\n")
    git = shutil.which("git")
    if git:
        for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
            subprocess.run([git, *args], cwd=path, check=True, capture_output=True)
    subprocess.run([executable("dvc"), "init", "-q", *([] if git else ["--no-scm"])], cwd=path, check=True, capture_output=True)
    return path
