"""dvc.yaml lists, for every stage, the univg modules its listed modules import from their own package.

A module missing from a stage's deps means an edit to it never re-runs the stage: `dvc repro`
would silently keep outputs built by the old code (the rule teacher's wording lives in
univg/cot/scan.py, the task builders in univg/data/scenes.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def same_package_imports(module: Path) -> set[str]:
    """Repo-relative paths of the univg modules `module` imports from its own package."""
    package = module.parent.relative_to(REPO).as_posix().replace("/", ".")
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            if name.startswith(package + ".") and (REPO / (name.replace(".", "/") + ".py")).is_file():
                found.add(name.replace(".", "/") + ".py")
    return found


def test_every_stage_lists_the_package_modules_its_code_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = {}
    for name, stage in stages.items():
        deps = {d for d in stage.get("deps", []) if d.startswith("univg/") and d.endswith(".py")}
        wanted = set().union(*(same_package_imports(REPO / d) for d in deps)) if deps else set()
        if wanted - deps:
            missing[name] = sorted(wanted - deps)
    assert not missing, f"dvc.yaml deps lack modules their stage imports: {missing}"
