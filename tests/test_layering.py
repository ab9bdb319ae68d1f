"""The package's floors read straight up: no module imports a floor above its own, and nothing imports in a loop.

Floors, lowest first (``_typing``, ``_lazy``, ``defaults``, ``device`` and ``files`` are shared helpers at the
bottom):

    _typing, _lazy, defaults, device, files -> distributions -> data, nn -> models -> guides, infer
    -> evaluate, interpret
    -> api -> runs -> cli

Imports are read from the source with ``ast``, lazy imports inside functions included; imports under
``if TYPE_CHECKING:`` count for the floors but not for loops (they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import samsvae_pyro

FLOORS = {
    "_typing": 0, "_lazy": 0, "defaults": 0, "device": 0, "files": 0,
    "distributions": 1,
    "data": 2, "nn": 2,
    "models": 3,
    "guides": 4, "infer": 4,
    "evaluate": 5, "interpret": 5,
    "api": 6,
    "runs": 7,
    "cli": 8,
}
ROOT = Path(samsvae_pyro.__file__).parent
PACKAGE = samsvae_pyro.__name__


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for child in node.body for n in ast.walk(child) if hasattr(n, "lineno")}
    return lines


def import_edges(root: Path = ROOT) -> list[tuple[str, str, bool]]:
    """(importer, imported module, runs at import time or call time) for every import of the package by itself."""
    modules = {module_name(path, root) for path in root.rglob("*.py")}
    edges = []
    for path in root.rglob("*.py"):
        importer = module_name(path, root)
        tree = ast.parse(path.read_text())
        typing_only = _type_checking_lines(tree)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith(PACKAGE)]
            edges += [(importer, target, node.lineno not in typing_only) for target in targets]
    return edges


def floor_of(module: str) -> str | None:
    """The floor name of a module (its first component below the package), None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(root: Path = ROOT) -> list[str]:
    return [f"{a} imports {b}" for a, b, _ in import_edges(root)
            if floor_of(a) and floor_of(b) and FLOORS[floor_of(b)] > FLOORS[floor_of(a)]]


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Every strongly connected set of more than one node (Tarjan), i.e. the import loops."""
    graph = defaultdict(set)
    for a, b in edges:
        if a != b:
            graph[a].add(b)
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_every_floor_is_known():
    floors = {floor_of(module_name(path)) for path in ROOT.rglob("*.py")} - {None}
    assert floors == set(FLOORS), floors ^ set(FLOORS)


def test_no_module_imports_a_floor_above_its_own():
    assert upward_imports() == []


def test_no_import_loop_between_floors_or_modules():
    runtime = [(a, b) for a, b, runs in import_edges() if runs]
    floors = [(floor_of(a), floor_of(b)) for a, b in runtime if floor_of(a) and floor_of(b)]
    assert cycles(floors) == []
    assert cycles(runtime) == []


def test_the_checks_catch_an_upward_import_and_a_loop(tmp_path):
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "api").mkdir()
    (tmp_path / "evaluate" / "report.py").write_text("from samsvae_pyro.api.base import X\n")
    (tmp_path / "api" / "base.py").write_text("def f():\n    from samsvae_pyro.evaluate.report import Y\n")
    assert upward_imports(tmp_path) == ["samsvae_pyro.evaluate.report imports samsvae_pyro.api.base"]
    edges = [(a, b) for a, b, _ in import_edges(tmp_path)]
    assert cycles(edges) == [["samsvae_pyro.api.base", "samsvae_pyro.evaluate.report"]]
