"""``ocop workflow show`` and ``validate``: a workflow described for people, files checked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .definitions import check_workflow_file

if TYPE_CHECKING:
    from .app import App


def describe(app: App, name: str) -> dict[str, Any]:
    wf = app.registry.get(name)
    document: dict[str, Any] = {
        "name": wf.name,
        "version": wf.version,
        "title": wf.title,
        "legal_basis": wf.legal_basis,
        "file": str(wf.path),
        "default": wf.name == app.config.default_workflow,
        "stages": list(wf.stages),
        "states": [
            {
                "name": s.name,
                "stage": s.stage,
                "label_vi": s.label_vi,
                "label_en": s.label_en,
                "initial": s.initial,
                "final": s.final,
                "level": s.level,
                "recognise_stars": list(s.recognise_stars),
                "deadline": s.deadline.describe() if s.deadline else None,
            }
            for s in wf.states.values()
        ],
        "transitions": [
            {
                "trigger": t.trigger,
                "from": t.source,
                "to": t.dest,
                "roles": list(t.roles),
                "guards": list(t.guards),
                "label": t.label_vi,
            }
            for t in wf.transitions
        ],
        "fields": {
            f.name: {"type": f.type, "label": f.label, "protected": f.protected}
            for f in wf.fields.values()
        },
        "dossiers": _dossier_count(app, wf.name),
    }
    return document


def _dossier_count(app: App, name: str) -> int | None:
    """How many dossiers are pinned to this workflow (None when there is no database yet)."""
    import sqlalchemy as sa

    from .errors import EnvironmentProblem
    from .store import dossier_t

    try:
        store = app.checked_store()
        with store.read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(dossier_t.c.workflow == name)
                ).scalar_one()
            )
    except EnvironmentProblem:
        return None


def validate(app: App, paths: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Check files (folders: every ``*.toml`` in them); returns (files checked, problems)."""
    targets: list[Path] = []
    for raw in paths or (str(app.config.workflows_dir),):
        path = Path(raw)
        if path.is_dir():
            targets.extend(sorted(path.glob("*.toml")))
        else:
            targets.append(path)
    problems: list[str] = []
    names: dict[str, Path] = {}
    for path in targets:
        definition, found = check_workflow_file(path)
        problems.extend(found)
        if definition is not None:
            if definition.name in names:
                problems.append(
                    f"{path}: [workflow]: name '{definition.name}' is also used by "
                    f"{names[definition.name]}"
                )
            names[definition.name] = path
    if not targets:
        problems.append("no workflow files found")
    return [str(p) for p in targets], problems
