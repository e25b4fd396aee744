"""Wiring helpers for the pipeline flow: DVC commands, params overrides, the run summary.

Nothing here imports Prefect, so each helper is testable on its own; the flow (pipeline.py)
only strings them together with retries and artifacts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from univg.config import ConfigError, dump_params, load_params, set_dotted
from univg.tracking import PARENT_RUN_ENV

# Failures a retry cannot fix: a stage DVC does not know, a bad dvc.yaml/params.yaml, or the CLI
# refusing its input (`univg` prints "error: ..." and exits 1 or 2 for bad input). Everything
# else (a crash, a lost connection, DVC's repo lock held by another run) is worth a retry.
PERMANENT_MARKERS = ("not found inside", "exited with 2", "\nerror: ", "ConfigError", "unknown key")


class StageFailed(RuntimeError):
    """A `dvc repro` that exited non-zero; the message holds the tail of its output."""

    def __init__(self, stage: str, returncode: int, tail: str) -> None:
        super().__init__(f"stage {stage!r} failed (exit {returncode}):\n{tail}")
        self.stage, self.returncode, self.tail = stage, returncode, tail

    @property
    def transient(self) -> bool:
        return not any(marker in "\n" + self.tail for marker in PERMANENT_MARKERS)


@dataclass
class StageResult:
    stage: str
    status: str  # "ran" or "skipped" (DVC found it up to date)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- DVC
def dvc_stage_names(root: Path) -> list[str]:
    """The stages of dvc.yaml, upstream first (file order where the graph leaves a choice)."""
    import yaml

    dvc_file = Path(root) / "dvc.yaml"
    if not dvc_file.is_file():
        raise FileNotFoundError(f"{dvc_file}: no DVC pipeline here")
    stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages") or {}
    if not stages:
        raise ValueError(f"{dvc_file}: no stages")
    return _upstream_first(stages)


def _paths(entries: Any) -> list[str]:
    """Paths of a stage's deps/outs/metrics list (plain strings or {path: options})."""
    found = []
    for entry in entries or []:
        found.extend([entry] if isinstance(entry, str) else list(entry))
    return [p.rstrip("/") for p in found]


def _upstream_first(stages: dict[str, Any]) -> list[str]:
    outs = {name: _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots"))
            for name, spec in stages.items()}

    def feeds(upstream: str, downstream: str) -> bool:
        deps = _paths(stages[downstream].get("deps"))
        return any(d == o or d.startswith(o + "/") or o.startswith(d + "/") for d in deps for o in outs[upstream])

    order: list[str] = []
    pending = list(stages)
    while pending:
        ready = next((s for s in pending if not any(feeds(u, s) for u in pending if u != s)), pending[0])
        order.append(ready)
        pending.remove(ready)
    return order


def executable(name: str) -> str:
    """`name` from this interpreter's environment when it is there (a worker's PATH may lack it)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def tool_env() -> dict[str, str]:
    """This environment with its interpreter's bin first on PATH (`dvc`, `univg`, `prefect`, `mlflow`)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def repro_command(stage: str, force: bool = False, single_item: bool = False) -> list[str]:
    """`dvc repro` of one stage. A forced stage always runs alone (-s): `dvc repro -f X` would
    also force every stage above X. `single_item` skips re-checking the upstream stages, which
    the flow has just reproduced when it runs the whole pipeline in order."""
    flags = (["--force"] if force else []) + (["--single-item"] if force or single_item else [])
    return [executable("dvc"), "repro", *flags, stage]


def stage_env(parent_run_id: str, tracking_uri: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The stage's environment: nest under the flow's MLflow run, log to the same store."""
    env = tool_env()
    env[PARENT_RUN_ENV] = parent_run_id
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.update(extra or {})
    return env


def run_dvc_stage(
    root: Path, stage: str, force: bool, env: dict[str, str], echo: bool = True, single_item: bool = False
) -> StageResult:
    """Run one `dvc repro`, streaming its output; raise StageFailed with the output's tail."""
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=60)
    ran = False
    with subprocess.Popen(
        repro_command(stage, force, single_item), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            ran = ran or line.startswith("Running stage")
            if echo:
                sys.stdout.write(line)
        returncode = process.wait()
    if returncode != 0:
        raise StageFailed(stage, returncode, "\n".join(tail))
    return StageResult(stage, "ran" if ran else "skipped", round(time.perf_counter() - started, 3))


# ----------------------------------------------------------------------------- DVC experiments
@contextlib.contextmanager
def params_restored(root: Path) -> Iterator[None]:
    """Leave params.yaml byte for byte as it was when the block ends: a run's overrides are kept as a
    DVC experiment (save_experiment), not as an edit of the checkout."""
    path = Path(root) / "params.yaml"
    before = path.read_bytes() if path.exists() else None
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


def untracked_results(root: Path) -> list[str]:
    """Files an experiment must include that git does not track: dvc.lock and the outputs DVC leaves
    out of its cache (metrics, plots), where they exist."""
    import yaml

    stages = (yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}).get("stages") or {}
    paths = ["dvc.lock"]
    for spec in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in spec.get(kind) or []:
                if isinstance(entry, dict):
                    paths += [path for path, options in entry.items() if (options or {}).get("cache") is False]
                elif kind != "outs":
                    paths.append(entry)
    tracked = set(subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split())
    return sorted({p for p in paths if (Path(root) / p).is_file() and p not in tracked})


def save_experiment(root: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    """Keep the workspace (params, dvc.lock, metrics) as DVC experiment `name` (`dvc exp show` lists it)."""
    if not (Path(root) / ".git").exists():
        return {"experiment": None, "reason": "not a git repository: DVC experiments need git"}
    include = [flag for path in untracked_results(root) for flag in ("-I", path)]
    # dvc.yaml as the target: without one, `exp save` force-commits every stage of the repository, and
    # would write pretrain/dvc.lock as if univg-tiny had been rebuilt from today's code
    done = subprocess.run([executable("dvc"), "exp", "save", "--name", name, "--force", *include, "dvc.yaml"],
                          cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dvc exp save failed: {(done.stderr or done.stdout).strip()[-1000:]}")
    return {"experiment": name}


def push_outputs(root: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    """`dvc push` to the default remote, and `dvc exp push` of the experiment when git has a remote."""
    pushed: dict[str, Any] = {"dvc_push": None, "exp_push": None}
    # DVC's own answer, so a remote set in the global or system config counts too
    default = subprocess.run([executable("dvc"), "remote", "default"], cwd=root, env=env, capture_output=True, text=True)
    if default.returncode == 0 and default.stdout.strip():
        done = subprocess.run([executable("dvc"), "push", "-q"], cwd=root, env=env, capture_output=True, text=True)
        pushed["dvc_push"] = "ok" if done.returncode == 0 else f"failed: {(done.stderr or done.stdout).strip()[-500:]}"
    git_remotes = subprocess.run(["git", "remote"], cwd=root, capture_output=True, text=True).stdout.split()
    if git_remotes:  # `univg restore` clones from origin, so that is where the experiment goes
        target = "origin" if "origin" in git_remotes else git_remotes[0]
        done = subprocess.run([executable("dvc"), "exp", "push", target, name], cwd=root, env=env,
                              capture_output=True, text=True)
        pushed["exp_push"] = "ok" if done.returncode == 0 else f"failed: {(done.stderr or done.stdout).strip()[-500:]}"
    return pushed


# ----------------------------------------------------------------------------- params overrides
def apply_overrides(root: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Write dotted overrides (e.g. {"grpo.tiny-cpu.learning_rate": 1e-4}) into params.yaml.

    Each is validated through the typed config first (a typo or a bad value changes nothing), and
    written as its typed value, so DVC sees a real number and not the string '1e-04'. The file
    keeps its layout and comments. Returns the applied {key: typed value}.
    """
    if not overrides:
        return {}
    from ruamel.yaml import YAML

    path = Path(root) / "params.yaml"
    typed = load_params(path, dict(overrides))  # raises ConfigError naming the bad key
    tree = json.loads(json.dumps(typed.model_dump(by_alias=True, mode="json")))
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value (a URI) onto a second line
    yaml.representer.add_representer(float, _represent_float)
    document = yaml.load(path.read_text()) if path.exists() else None
    if document is None:
        document = yaml.load(dump_params(typed))
    applied = {}
    for dotted in overrides:
        value = _get_dotted(tree, dotted)
        set_dotted(document, dotted, value)
        applied[dotted] = value
    with path.open("w") as handle:
        yaml.dump(document, handle)
    load_params(path)  # the written file must load as it was validated
    return applied


def _represent_float(representer: Any, value: float) -> Any:
    # 3e-05 is a float to YAML 1.2 (DVC) but a string to YAML 1.1 (PyYAML): write 3.0e-05, read alike by both.
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        text = text.replace("e", ".0e", 1)
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"override '{dotted}': no such key")
        node = node[part]
    return node


# ----------------------------------------------------------------------------- summary
def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def mlflow_run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run: the tracking server itself, or a local `mlflow ui` on :5000."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else os.environ.get(
        "UNIVG_MLFLOW_UI_URL", "http://127.0.0.1:5000")
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value))


def summary_markdown(
    eval_metrics: dict[str, Any], promotion: dict[str, Any], stages: list[StageResult],
    run_link: str, tracking_uri: str, applied: dict[str, Any],
) -> str:
    """The flow's report: stages, the metrics table, the promotion decision, the MLflow link."""
    lines = ["# univg pipeline run", ""]
    lines += ["| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {s.stage} | {s.status} | {s.seconds:.1f} |" for s in stages]
    if applied:
        lines += ["", "**Params overrides:** " + ", ".join(f"`{k}={v}`" for k, v in applied.items())]
    columns = ("acc@0.3", "acc@0.5", "acc@0.7", "miou", "avg", "n")
    models = {k: v for k, v in eval_metrics.items() if isinstance(v, dict) and "acc@0.5" in v}
    if models:
        lines += ["", "## Evaluation", "", "| model | " + " | ".join(columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |" for name, m in models.items()]
    if promotion:
        decision = promotion.get("decision", {})
        verdict = "promoted to champion" if promotion.get("promoted") else "kept as challenger"
        lines += ["", "## Promotion", "",
                  f"{promotion.get('model_name')} v{promotion.get('version')}: **{verdict}** "
                  f"(champion before: {promotion.get('champion_before') or 'none'}, "
                  f"after: {promotion.get('champion_after') or 'none'}).",
                  "", f"Reference {decision.get('reference')}: delta {_fmt(decision.get('delta'))}, "
                  f"interval {[_fmt(v) for v in decision.get('ci') or []]}, n={decision.get('n')}. "
                  f"{decision.get('reason', '')}"]
    lines += ["", f"MLflow parent run: [{run_link}]({run_link}) (store: `{tracking_uri}`)"]
    return "\n".join(lines) + "\n"
