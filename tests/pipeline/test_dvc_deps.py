"""dvc.yaml lists, for every stage, every univg module its command can import, transitively.

A module missing from a stage's deps means an edit to it never re-runs the stage: `dvc repro`
would silently keep outputs built by the old code (the SFT targets are written by
univg/answers.py, the rule teacher's wording lives in univg/data/scan.py). Imports are followed
across packages and into function bodies (the stages import heavy modules lazily); a dep may be
the module itself or a folder holding it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# The module whose function each stage's `univg ...` command calls (univg/cli.py only dispatches),
# per pipeline file: the root pipeline, and univg-tiny's own (never run by the root `dvc repro`).
STAGE_ENTRY = {
    "dvc.yaml": {
        "data": "univg/data/stage.py",
        "cot": "univg/cot/generate.py",
        "validate": "univg/cot/validate.py",
        "base_model": "univg/models/stage.py",
        "sft": "univg/train/sft.py",
        "grpo": "univg/train/grpo.py",
        "eval": "univg/eval/run.py",
        "promote": "univg/registry.py",
    },
    "pretrain/dvc.yaml": {"univg_tiny": "univg/models/univg_tiny.py"},
}
STAGES = [(pipeline, stage) for pipeline, entries in STAGE_ENTRY.items() for stage in entries]


def module_path(name: str) -> str | None:
    """Repo-relative file of a dotted univg module name (a package's __init__ counts as the package)."""
    if not name.startswith("univg"):
        return None
    base = name.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if (REPO / candidate).is_file():
            return candidate
    return None


def direct_imports(module: str) -> set[str]:
    """The univg modules one file imports, anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse((REPO / module).read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from univg.x import y` may name a module y or a symbol in x: try both
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(path for path in map(module_path, names) if path)
    return found


def import_closure(entry: str) -> set[str]:
    seen, pending = set(), [entry]
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(direct_imports(module) - seen)
    return {m for m in seen if not m.endswith("__init__.py") or (REPO / m).stat().st_size}


def covered(module: str, deps: list[str]) -> bool:
    return any(module == dep or module.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_closure_follows_imports_across_packages_and_into_functions():
    closure = import_closure("univg/train/sft.py")
    # answers.py reaches SFT through train/examples.py (top level); models/loading.py through a
    # lazy import inside train/common.py
    assert {"univg/answers.py", "univg/train/examples.py", "univg/models/loading.py"} <= closure


@pytest.mark.parametrize("pipeline", sorted(STAGE_ENTRY))
def test_every_stage_has_an_entry_module(pipeline):
    stages = yaml.safe_load((REPO / pipeline).read_text())["stages"]
    assert set(stages) == set(STAGE_ENTRY[pipeline])


@pytest.mark.parametrize("pipeline, stage", STAGES)
def test_stage_deps_cover_the_transitive_import_closure(pipeline, stage):
    deps = yaml.safe_load((REPO / pipeline).read_text())["stages"][stage].get("deps", [])
    missing = sorted(m for m in import_closure(STAGE_ENTRY[pipeline][stage]) if not covered(m, deps))
    assert not missing, f"{pipeline} stage {stage!r} lacks modules its command imports: {missing}"


def test_the_root_pipeline_never_reaches_the_pretraining_stage():
    """The base_model stage depends on checkpoints/univg-tiny. Were that folder a DVC output of
    pretrain/dvc.yaml, DVC would link the pipelines, and a root `dvc repro` would re-run the
    hour-long pre-training whenever a module it imports changed. It is a release kept in git."""
    pretrain = yaml.safe_load((REPO / "pretrain/dvc.yaml").read_text())["stages"]
    assert all(not stage.get("outs") and not stage.get("metrics") for stage in pretrain.values())
    base_deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["base_model"]["deps"]
    assert "checkpoints/univg-tiny" in base_deps
