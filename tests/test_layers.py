"""The core modules import each other in one direction only (no import cycles).

documents, audit, engine and views once imported each other in a circle; a cycle makes the
import order matter and a module unusable on its own. Imports under ``if TYPE_CHECKING`` are
annotations, not dependencies, and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ocop_workflow"
CORE = {
    "service", "clock", "config", "engine", "documents", "audit", "views", "policy", "store",
    "auth", "server", "client", "council", "sweep", "timers", "definitions", "guards",
}  # fmt: skip


class _Imports(ast.NodeVisitor):
    """The package's own modules a module imports at run time."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 1:
            if node.module:
                self.found.add(node.module.split(".")[0])
            else:
                self.found.update(alias.name for alias in node.names)


def dependencies() -> dict[str, set[str]]:
    modules: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        modules[path.stem] = visitor.found
    return {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}


def cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start → … → start, if one exists."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    """Every module, the command line's and the calendar's included (``cli`` ↔ ``cli_calendar``
    and ``calendar`` ↔ ``calendar_data`` once were cycles through imports inside functions)."""
    graph = dependencies()
    assert set(graph) >= CORE
    cycles = {m: cycle_through(graph, m) for m in sorted(graph)}
    assert {m: c for m, c in cycles.items() if c} == {}
