"""State diagrams of a workflow: Mermaid and Graphviz DOT text, SVG through Graphviz if present."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from .definitions import WorkflowDef
from .errors import EnvironmentProblem, MissingTool, UsageError

FORMATS = ("mermaid", "dot", "svg")


def mermaid(wf: WorkflowDef) -> str:
    lines = ["stateDiagram-v2", f"    %% {wf.name} ({wf.version})"]
    for state in wf.states.values():
        lines.append(f"    {state.name} : {state.label_vi}")
    lines.append(f"    [*] --> {wf.initial.name}")
    for t in wf.transitions:
        lines.append(f"    {t.source} --> {t.dest} : {t.trigger}")
    for state in wf.states.values():
        if state.final:
            lines.append(f"    {state.name} --> [*]")
    return "\n".join(lines) + "\n"


#: Box colours per stage (the HTML report uses the same), grey for final states.
STAGE_FILL = {
    "registration": "#8ecae6",
    "business_plan": "#219ebc",
    "production": "#ffb703",
    "evaluation": "#fb8500",
    "promotion": "#2a9d8f",
    "review": "#6a4c93",
}
FINAL_FILL = "#bdbdbd"
WITHDRAW_NOTE = "withdraw (rút hồ sơ) is possible from every non-final state and is not drawn"


def wrap(text: str, width: int = 26) -> list[str]:
    """Words on lines of at most ``width`` characters (a longer word keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def edges(
    wf: WorkflowDef, *, skip: tuple[str, ...] = ("withdraw",)
) -> dict[tuple[str, str], list[str]]:
    """(source, dest) → the triggers between them: one arrow per pair, its label all of them."""
    out: dict[tuple[str, str], list[str]] = {}
    for t in wf.transitions:
        if t.trigger in skip:
            continue
        triggers = out.setdefault((t.source, t.dest), [])
        if t.trigger not in triggers:
            triggers.append(t.trigger)
    return out


def dot(wf: WorkflowDef) -> str:
    """Graphviz DOT: Vietnamese state names (the id below, small), one labelled arrow per pair of
    states. ``withdraw``, possible from every non-final state, is left out and said so."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def node(name: str) -> str:
        return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else quote(name)

    def html(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    lines = [
        f"digraph {quote(wf.name)} {{",
        "    rankdir=TB; nodesep=0.3; ranksep=0.45;",
        f"    label={quote(WITHDRAW_NOTE)};",
        '    labelloc=b; fontsize=10; fontname="Noto Sans,DejaVu Sans,sans-serif";',
        '    node [shape=box, style="rounded,filled", fontname="Noto Sans,DejaVu Sans,sans-serif",'
        ' fontsize=11, margin="0.12,0.06"];',
        '    edge [fontname="Noto Sans,DejaVu Sans,sans-serif", fontsize=9, color="#666666",'
        ' fontcolor="#333333"];',
    ]
    for state in wf.states.values():
        fill = FINAL_FILL if state.final else STAGE_FILL.get(state.stage, "#dddddd")
        label = "<br/>".join(html(line) for line in wrap(state.label_vi))
        small = f'<br/><font point-size="8" color="#333333">{html(state.name)}</font>'
        extra = ", peripheries=2" if state.final else ""
        lines.append(
            f"    {node(state.name)} [label=<{label}{small}>, fillcolor={quote(fill)}, "
            f'id={quote("state-" + state.name)}, class="state"{extra}];'
        )
    for (source, dest), triggers in edges(wf).items():
        lines.append(f"    {node(source)} -> {node(dest)} [label={quote(' / '.join(triggers))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(wf: WorkflowDef, fmt: str) -> str:
    if fmt == "mermaid":
        return mermaid(wf)
    if fmt == "dot":
        return dot(wf)
    if fmt == "svg":
        return svg(wf)
    raise UsageError(f"format '{fmt}': use one of {', '.join(FORMATS)}", fields=("format",))


def svg(wf: WorkflowDef) -> str:
    """Graphviz's layout of ``dot(wf)`` as SVG text.

    Laid out once per distinct DOT text (``layout``): a server answers every
    ``GET /workflows/{name}/diagram?format=svg`` and every HTML report with it, and a process of
    Graphviz per request would let any token holder keep the server's cores busy."""
    if shutil.which("dot") is None:
        raise MissingTool(
            "an svg diagram needs Graphviz's `dot` on PATH (apt-get install graphviz); "
            "formats dot and mermaid need nothing",
            fields=("format",),
        )
    return layout(dot(wf))


@functools.lru_cache(maxsize=32)
def layout(text: str) -> str:
    """``dot -Tsvg`` of a DOT text (a failure is raised, never remembered)."""
    binary = shutil.which("dot") or "dot"
    done = subprocess.run(
        [binary, "-Tsvg"], input=text, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise MissingTool(f"graphviz failed: {said[0] if said else f'exit {done.returncode}'}")
    return done.stdout


def inline_svg(wf: WorkflowDef) -> str | None:
    """Graphviz's layout as an ``<svg>`` element to put in a page, or None without Graphviz."""
    if shutil.which("dot") is None:
        return None
    try:
        text = svg(wf)
    except (EnvironmentProblem, subprocess.TimeoutExpired, OSError):
        return None
    start = text.find("<svg")
    return None if start < 0 else text[start:]
