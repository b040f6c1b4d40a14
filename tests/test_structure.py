"""The code's shape: layers that import one way, no import circles, no function over 60 lines.

Read from the source with `ast`, so these hold for every module, imported at run time or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("duo_ai", "cli")
# Floors from the ground up: a module may import only from its own floor or below. Packages count
# as one unit (their modules import each other freely, but not in a circle).
FLOORS = {
    "duo_ai": 0,  # the package's own __init__ (this module alone, not the package)
    "duo_ai.core": 0,
    "duo_ai.logger": 0,
    "duo_ai.plugins": 0,
    "duo_ai.envs": 1,
    "duo_ai.models": 1,
    "duo_ai.evaluation": 1,
    "duo_ai.policies": 2,
    "duo_ai.algorithms": 3,
    "duo_ai.coordination": 3,
    "duo_ai.config": 4,
    "duo_ai.build": 5,
    "duo_ai.runs": 5,
    "duo_ai.training": 6,
    "duo_ai.playing": 6,
    "duo_ai.eval_job": 7,
    "duo_ai.train_job": 7,
    "duo_ai.export": 7,
    "duo_ai.bench": 7,
    "duo_ai.reports": 7,
    "duo_ai.study": 7,
    "cli": 8,
}
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def unit_of(module: str) -> str:
    """The FLOORS entry a module belongs to (its package, or itself)."""
    for unit in sorted(FLOORS, key=len, reverse=True):
        if module == unit or (unit != "duo_ai" and module.startswith(unit + ".")):
            return unit
    raise AssertionError(f"module {module} has no floor: add it (or its package) to FLOORS in {__file__}")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            # The longest known module the name starts with (`duo_ai.core.errors.ConfigError` -> the module).
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, known) - {name} for name, path in found.items()}


def test_imports_point_down_the_floors():
    upward = [
        f"{module} (floor {FLOORS[unit_of(module)]}) imports {target} (floor {FLOORS[unit_of(target)]})"
        for module, targets in import_graph().items()
        for target in targets
        if FLOORS[unit_of(target)] > FLOORS[unit_of(module)]
    ]
    assert not upward, "\n".join(upward)


def test_core_imports_nothing_above_it():
    graph = import_graph()
    core = [m for m in graph if unit_of(m) == "duo_ai.core"]
    assert core, "no duo_ai.core modules found"
    outside = [f"{m} imports {t}" for m in core for t in graph[m] if unit_of(t) != "duo_ai.core"]
    assert not outside, "\n".join(outside)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports, as a list of modules, or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ importing its own submodules is not a circle of dependence.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_no_import_circles():
    circle = find_circle(import_graph())
    assert circle is None, " -> ".join(circle)


def test_the_circle_finder_finds_circles():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "a.x"}, "b": set(), "a.x": {"b"}}) is None


@pytest.mark.parametrize("name", sorted(modules()))
def test_functions_are_short(name):
    path = modules()[name]
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)


def test_a_module_over_400_lines_says_why_at_its_top():
    """A module past ~400 lines holds more than one job unless its docstring gives a reason."""
    for path in [*(ROOT / "duo_ai").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]:
        text = path.read_text()
        if text.count("\n") > 400:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "Longer than ~400 lines" in docstring, f"{path.relative_to(ROOT)}: split it, or say why not"
