"""The package's imports run one way: no cycles, and no module imports from a layer above its own.

Layers, bottom to top (docs/architecture.md draws them):
  0 contracts and config: errors, answers, schema, config
  1 shared services:      tracking, prompts, data/
  2 building blocks:      models/, cot/, rewards
  3 lifecycle stages:     train/, eval/
  4 release:              gate, registry, serve, summary, lineage
  5 entry point:          cli
Imports inside functions count too: a lazy import still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = (
    ("univg/errors.py", "univg/answers.py", "univg/schema.py", "univg/config.py"),
    ("univg/tracking.py", "univg/prompts.py", "univg/data/"),
    ("univg/models/", "univg/cot/", "univg/rewards.py"),
    ("univg/train/", "univg/eval/"),
    ("univg/gate.py", "univg/registry.py", "univg/predict.py", "univg/serve.py", "univg/summary.py",
     "univg/lineage.py"),
    ("univg/cli.py", "univg/__main__.py"),
)


def layer_of(module: str) -> int:
    for level, members in enumerate(LAYERS):
        if any(module == m or (m.endswith("/") and module.startswith(m)) for m in members):
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def module_path(name: str) -> str | None:
    base = name.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if name.startswith("univg") and (REPO / candidate).is_file():
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse((REPO / module).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(p for p in map(module_path, names) if p and not p.endswith("__init__.py"))
    return found - {module}


def package_modules() -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "univg").rglob("*.py") if p.name != "__init__.py")


def graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in package_modules()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(graph()) is None


def test_every_module_has_a_layer():
    for module in package_modules():
        layer_of(module)


def test_imports_never_reach_a_higher_layer():
    upward = sorted(f"{m} -> {dep}" for m, deps in graph().items() for dep in deps if layer_of(dep) > layer_of(m))
    assert upward == []
