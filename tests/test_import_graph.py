"""The import graph of the phase4 package: no cycles, and no layer imports one above it.

The layers are read from docs/ARCHITECTURE.md (the block after ``<!-- layers -->``, lowest
first, one layer a line, its packages separated by spaces), so the document and this test
cannot drift apart. Imports inside functions count: an import moved into a function to dodge a
cycle is still the cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "phase4"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
                continue
            pending.append(child)
    return nodes


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The phase4 modules ``path`` imports, resolved to modules (not names within them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in runtime_nodes(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_name(path).split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # `from phase4.monitor.store import models` imports a module
            names = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("phase4"):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imported_modules(p, modules) for p in files}
    # a package's __init__ is imported with each of its modules: not an edge of its own
    return {
        m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, deps in graph.items()
    }


def layers() -> list[list[str]]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- layers -->\s*```text\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no layers block"
    return [line.split() for line in block.group(1).splitlines() if line.strip()]


def layer_of(module: str, table: list[list[str]]) -> tuple[int, str]:
    """The rank and the package of the longest layer entry that holds ``module``."""
    best = (-1, "")
    for rank, entries in enumerate(table):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > len(best[1]):
                best = (rank, entry)
    return best


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer() -> None:
    table = layers()
    unplaced = [m for m in import_graph() if layer_of(m, table)[0] < 0]
    assert not unplaced, f"modules in no layer of docs/ARCHITECTURE.md: {unplaced}"


def test_no_import_cycles() -> None:
    cycles = strongly_connected(import_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_no_layer_imports_one_above_it() -> None:
    table = layers()
    upward = []
    for module, deps in sorted(import_graph().items()):
        rank, _ = layer_of(module, table)
        for dep in sorted(deps):
            dep_rank, dep_layer = layer_of(dep, table)
            if dep_rank > rank:
                upward.append(f"{module} -> {dep} ({dep_layer}, above)")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_peers_in_a_layer_stay_apart() -> None:
    """Statistics and contracts share the lowest monitor layer but not each other: the drift
    engine imports no other phase4 package, and the probe imports nothing of the rest."""
    graph = import_graph()
    for module, deps in graph.items():
        if module.startswith("phase4.monitor.drift"):
            assert all(d.startswith("phase4.monitor.drift") for d in deps), (module, deps)
        if module.startswith("phase4.probes"):
            assert all(d.startswith("phase4.probes") for d in deps), (module, deps)


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, ["a", "b", "c"]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], cycle: list[str]) -> None:
    assert strongly_connected(graph) == [cycle]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
