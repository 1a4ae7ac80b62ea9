"""State diagrams of a workflow: Mermaid and Graphviz DOT text, SVG through Graphviz if present."""

from __future__ import annotations

import shutil
import subprocess

from .definitions import WorkflowDef
from .errors import EnvironmentProblem, UsageError

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


def dot(wf: WorkflowDef) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"digraph {quote(wf.name)} {{",
        "    rankdir=LR;",
        "    node [shape=box, style=rounded];",
    ]
    for state in wf.states.values():
        shape = ", peripheries=2" if state.final else ""
        label = quote(f"{state.label_vi}\\n({state.name})")
        lines.append(f"    {state.name} [label={label}{shape}];")
    for t in wf.transitions:
        lines.append(f"    {t.source} -> {t.dest} [label={quote(t.trigger)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(wf: WorkflowDef, fmt: str) -> str:
    if fmt == "mermaid":
        return mermaid(wf)
    if fmt == "dot":
        return dot(wf)
    if fmt == "svg":
        return svg(wf)
    raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")


def svg(wf: WorkflowDef) -> str:
    binary = shutil.which("dot")
    if binary is None:
        raise EnvironmentProblem(
            "--format svg needs Graphviz's `dot` on PATH (apt-get install graphviz); "
            "--format dot or mermaid need nothing"
        )
    done = subprocess.run(
        [binary, "-Tsvg"], input=dot(wf), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise EnvironmentProblem(f"graphviz failed: {done.stderr.strip().splitlines()[0]}")
    return done.stdout
