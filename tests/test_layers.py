"""The layers: no import cycles; the edges call the facade, nothing below it; only the edges read
the environment and the wall clock.

documents, audit, engine and views once imported each other in a circle; a cycle makes the
import order matter and a module unusable on its own. Imports under ``if TYPE_CHECKING`` are
annotations, not dependencies, and do not count.

The worker once took ``ocop.engine`` to call ``sweep.run_sweep`` and ``checkpoint.write_scheduled``
itself, ``ocop sweep`` counted its due timers with ``sweep.count_due`` on the CLI's engine and
the demo read the timer table through ``ocop.store``; the sweep's check for a changed calendar
read ``os.environ`` (``load_config`` without an ``env``). These tests read the source (``ast``),
so such a path around the facade fails here, not at the next audit.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "ocop_workflow"
CORE = {
    "service", "clock", "config", "engine", "documents", "audit", "views", "policy", "store",
    "auth", "server", "client", "council", "sweep", "timers", "definitions", "guards",
}  # fmt: skip


class _RunTime(ast.NodeVisitor):
    """Visits what runs: the body of ``if TYPE_CHECKING`` (annotations only) is skipped."""

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)


class _Imports(_RunTime):
    """The package's own modules a module imports at run time."""

    def __init__(self) -> None:
        self.found: set[str] = set()

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


# --- the edges call the facade --------------------------------------------------------------

#: The edges (README "Design": the CLI, the worker, the demo and the server all call ``Ocop``):
#: each builds the facade from a ``Config`` and a ``Clock`` and calls it, nothing below it.
EDGES = {"app", "cli", "cli_base", "cli_calendar", "client", "demo", "scheduler", "server"}
#: What the facade holds. With one of them in hand an edge can call anything below the facade
#: around it (``sweep.run_sweep(ocop.engine, now)``, ``get_dossier(ocop.store, …)``).
INSIDES = {"engine", "store", "checked_store"}
#: Where an edge still reaches inside, and why. Each must still occur: one moved behind the
#: facade leaves this list.
REACHES_INSIDE = {
    # App's ``engine``, ``store`` and ``checked_store``: the tests' handles on a workspace
    # (conftest's ``Workspace.app``); no command uses them (the cli modules are checked).
    ("app", ".engine"),
    ("app", ".store"),
    ("app", ".checked_store"),
    # The server's own read path (plain readers on the store's pool: ``pg_reads``,
    # ``page_batch``), its dialect and schema checks at start, and ``prepared``, which builds
    # the engine before the first request.
    ("server", ".engine"),
    ("server", ".store"),
    ("server", "pg_reads.PgReads"),
}


class _Reaches(_RunTime):
    """What one module touches at run time: the names it imports from the package, the
    package modules it imports whole (by the name it gives them), the attributes it reads."""

    def __init__(self) -> None:
        self.names: set[tuple[str, str]] = set()
        self.modules: dict[str, str] = {}
        self.attributes: list[ast.Attribute] = []

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level != 1:
            return
        for alias in node.names:
            if node.module:
                self.names.add((node.module, alias.name))
            else:
                self.modules[alias.asname or alias.name] = alias.name

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.attributes.append(node)
        self.generic_visit(node)


def _works_below_the_facade(value: Any) -> bool:
    """A table, the ``Store`` or ``Engine`` class, or a function or class that works on one
    (its first parameter an ``Engine``, a ``Store`` or a ``Connection``): the facade's to call."""
    import sqlalchemy as sa

    from ocop_workflow.engine import Engine
    from ocop_workflow.store import Store

    if isinstance(value, sa.Table) or value in (Engine, Store):
        return True
    if not callable(value):
        return False
    try:
        parameters = list(inspect.signature(value).parameters.values())
    except (TypeError, ValueError):
        return False
    first = str(parameters[0].annotation) if parameters else ""
    return re.search(r"\b(Engine|Store|Connection)\b", first) is not None


def reaches_inside(module: str) -> set[str]:
    """Where ``module`` takes what the facade holds (``.store``), or imports what works on
    it (``sweep.run_sweep``)."""
    visitor = _Reaches()
    visitor.visit(ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8")))
    found = {f".{a.attr}" for a in visitor.attributes if a.attr in INSIDES}
    names = set(visitor.names)
    for node in visitor.attributes:  # checkpoint.build, imported as ``from . import checkpoint``
        if isinstance(node.value, ast.Name) and node.value.id in visitor.modules:
            names.add((visitor.modules[node.value.id], node.attr))
    for source, name in names:
        value = getattr(importlib.import_module(f"ocop_workflow.{source}"), name, None)
        if _works_below_the_facade(value):
            found.add(f"{source}.{name}")
    return found


def test_the_edges_reach_the_database_only_through_the_facade() -> None:
    """The worker sweeps with ``Ocop.sweep``, ``ocop sweep`` counts with ``Ocop.count_due``,
    the demo reads with ``Ocop.dossier``/``Ocop.timers``: no edge holds an engine or a store."""
    assert {p.stem for p in PACKAGE.glob("cli*.py")} <= EDGES
    found = {(edge, what) for edge in sorted(EDGES) for what in reaches_inside(edge)}
    assert found - REACHES_INSIDE == set()
    assert REACHES_INSIDE - found == set(), "moved behind the facade: drop it from the list"


# --- only the edges read the environment and the wall clock ---------------------------------

#: Who reads the environment or the wall clock, and why: the edges, which decide both and hand
#: them down (README "Design": one facade, one clock). Anything else gets ``env`` and ``now``.
READS_THE_WORLD = {
    ("app", "App.__init__"),  # the command line's environment (OCOP_CONFIG, OCOP_USER, …)
    ("cli", "main"),  # OCOP_DEBUG: a bug's traceback
    ("cli", "serve"),  # OCOP_CONFIG handed to the server's processes
    ("server", "app_from_env"),  # a server process's config and clock
    ("clock", "SystemClock.now"),  # the wall clock itself
    ("clock", "clock_from_env"),  # its default env, and a command's one instant
    ("config", "load_config"),  # its default env: OCOP_DATABASE_URL, the channels' secrets
    ("log", "json_line"),  # a log line's own timestamp
}
#: Read the environment (``env`` defaults to ``os.environ``) unless handed one.
ENV_DEFAULTS = {"load_config", "clock_from_env"}
_ENVIRONMENT = {"environ", "environb", "getenv", "putenv", "unsetenv"}
_WALL_CLOCK = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "localtime", "gmtime", "ctime", "asctime", "strftime"},
}


class _WorldReads(ast.NodeVisitor):
    """Each read of the environment or the wall clock, named by the function it is in."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.found: list[tuple[str, str]] = []  # (qualified function name, what)

    def _note(self, what: str) -> None:
        self.found.append((".".join(self.scope) or "<module>", what))

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "os" and {a.name for a in node.names} & _ENVIRONMENT:
            self._note("from os import the environment")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = node.value.attr if isinstance(node.value, ast.Attribute) else None
        owner = node.value.id if isinstance(node.value, ast.Name) else owner
        if owner == "os" and node.attr in _ENVIRONMENT:
            self._note(f"os.{node.attr}")
        elif owner is not None and node.attr in _WALL_CLOCK.get(owner, ()):
            self._note(f"{owner}.{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        handed = len(node.args) >= 2 or any(k.arg == "env" for k in node.keywords)
        if name in ENV_DEFAULTS and not handed:
            self._note(f"{name}() without env")
        self.generic_visit(node)


def world_reads() -> Iterator[tuple[str, str, str]]:
    """(module, function, what) for every module of the package, its migrations included."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        visitor = _WorldReads()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        for function, what in visitor.found:
            yield module, function, what


def test_only_the_edges_read_the_environment_or_the_wall_clock() -> None:
    """Below the edges "now" is a ``Clock`` and the environment an ``env`` handed down; a call of
    ``load_config``/``clock_from_env`` without ``env`` reads ``os.environ`` and counts as one."""
    found = list(world_reads())
    reads = {(m, f) for m, f, _ in found}
    elsewhere = sorted(
        (m, f, what) for m, f, what in found if (m, f) not in READS_THE_WORLD and m not in EDGES
    )
    assert elsewhere == []
    at_edges = sorted(
        (m, f, what)
        for m, f, what in found
        if (m, f) not in READS_THE_WORLD and not what.endswith("without env")
    )
    assert at_edges == [], "an edge's read of the environment or the clock: name it above"
    assert READS_THE_WORLD - reads == set(), "no longer read there: drop it from the list"
