"""``ocop workflow show`` and ``validate``: a workflow described for people, files checked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .definitions import check_workflow_file

if TYPE_CHECKING:
    from .app import App
    from .definitions import WorkflowDef
    from .service import Ocop
    from .shapes import WorkflowDetail, WorkflowSummary


def _file(ocop: Ocop, wf: WorkflowDef) -> str:
    """Where the workflow was loaded from: its path for a command on this machine; for the
    server's callers (``conceal``), only the file's name — the server's own folders are
    nobody's business but its operator's."""
    return wf.path.name if ocop.conceal else str(wf.path)


def summary(app: Ocop, wf: WorkflowDef) -> WorkflowSummary:
    """One row of ``workflow list`` (and of ``GET /api/v1/workflows``)."""
    from .shapes import WorkflowSummary

    return WorkflowSummary(
        name=wf.name,
        version=wf.version,
        title=wf.title,
        default=wf.name == app.config.default_workflow,
        states=len(wf.states),
        triggers=len(wf.triggers),
        file=_file(app, wf),
    )


def describe(app: Ocop, name: str, clause: Any = None) -> WorkflowDetail:
    """``workflow show``: the workflow, and the dossiers on it — those ``clause`` (a policy's
    read filter) selects, when the reader may not see them all."""
    from .shapes import WorkflowDetail, WorkflowField, WorkflowState, WorkflowTransition

    wf = app.registry.get(name)
    count, ids, by_version = _dossiers_on(app, wf.name, clause)
    return WorkflowDetail(
        name=wf.name,
        version=wf.version,
        title=wf.title,
        legal_basis=wf.legal_basis,
        file=_file(app, wf),
        sha256=wf.sha256,
        default=wf.name == app.config.default_workflow,
        stages=tuple(wf.stages),
        states=tuple(
            WorkflowState(
                name=s.name,
                stage=s.stage,
                label_vi=s.label_vi,
                label_en=s.label_en,
                initial=s.initial,
                final=s.final,
                level=s.level,
                recognise_stars=tuple(s.recognise_stars),
                deadline=s.deadline.describe() if s.deadline else None,
            )
            for s in wf.states.values()
        ),
        transitions=tuple(
            WorkflowTransition(
                trigger=t.trigger,
                source=t.source,
                dest=t.dest,
                roles=tuple(t.roles),
                guards=tuple(t.guards),
                label=t.label_vi,
            )
            for t in wf.transitions
        ),
        fields={
            f.name: WorkflowField(type=f.type, label=f.label, protected=f.protected)
            for f in wf.fields.values()
        },
        dossiers=count,
        dossier_ids=ids,
        dossiers_by_version=by_version,
        dossiers_on_other_content=changed_under(app, wf, clause),
    )


def changed_under(app: App | Ocop, wf: WorkflowDef, clause: Any = None) -> list[str] | None:
    """Ids of the running dossiers pinned to another content (or version) of ``wf``'s file.

    They are refused every officer action until ``ocop workflow migrate`` puts them on the file
    as it is now (or the file is restored). None when there is no database to ask.
    """
    import sqlalchemy as sa

    from .errors import EnvironmentProblem
    from .store import dossier_t

    d = dossier_t.c
    query = (
        sa.select(d.id)
        .where(
            d.workflow == wf.name,
            d.state.notin_([s.name for s in wf.states.values() if s.final]),
            sa.or_(
                d.workflow_version != wf.version,
                sa.and_(d.workflow_sha256.is_not(None), d.workflow_sha256 != wf.sha256),
            ),
        )
        .order_by(d.id)
    )
    if clause is not None:
        query = query.where(clause)
    try:
        store = app.checked_store()
        with store.read() as conn:
            return list(conn.execute(query).scalars())
    except EnvironmentProblem:
        return None


def _dossiers_on(
    app: App | Ocop, name: str, clause: Any = None
) -> tuple[int | None, list[str], dict[str, int]]:
    """Which dossiers are pinned to this workflow, and on which version of its file.

    A dossier stays on the rule version it was registered under, so an officer changing rules
    needs to see which files are still in use. ``dossiers`` is None when there is no database
    yet (``ocop init`` not run): the workflow can be read before anything is stored.
    Returns (how many, their ids, how many per version).
    """
    import sqlalchemy as sa

    from .errors import EnvironmentProblem
    from .store import dossier_t

    d = dossier_t.c
    query = sa.select(d.id, d.workflow_version).where(d.workflow == name).order_by(d.id)
    if clause is not None:
        query = query.where(clause)
    try:
        store = app.checked_store()
        with store.read() as conn:
            rows = conn.execute(query).all()
    except EnvironmentProblem:
        return None, [], {}
    by_version: dict[str, int] = {}
    for row in rows:
        by_version[row.workflow_version] = by_version.get(row.workflow_version, 0) + 1
    return len(rows), [row.id for row in rows], by_version


def validate(
    app: App, paths: tuple[str, ...], *, installed: bool = True
) -> tuple[list[str], list[str]]:
    """Check files (folders: every ``*.toml`` in them); returns (files checked, problems).

    A valid file that dossiers run on under other content (edited in place) is a problem too,
    naming them: those dossiers are refused until migrated (``ocop workflow migrate``).
    Without paths: the shipped folder and the configured one. A name used twice is a problem
    within one folder (or among the paths given), not across the shipped and configured
    folders, where the configured file overrides the shipped one by design.

    ``installed`` False (an officer's machine acting through a server, with no config): only the
    files given are checked, on their own — there is no configured folder or database here.
    """
    if not installed and not paths:
        from .errors import UsageError

        raise UsageError(
            "give the workflow files or folders to check: acting through a server, this machine "
            "has no configured workflows folder"
        )
    groups: list[list[Path]] = []
    if paths:
        group: list[Path] = []
        for raw in paths:
            path = Path(raw)
            group.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
        groups.append(group)
    else:
        groups = [sorted(folder.glob("*.toml")) for folder in app.registry.folders]
    problems: list[str] = []
    for group in groups:
        names: dict[str, Path] = {}
        for path in group:
            definition, found = check_workflow_file(path)
            problems.extend(found)
            if definition is None:
                continue
            if definition.name in names:
                problems.append(
                    f"{path}: [workflow]: name '{definition.name}' is also used by "
                    f"{names[definition.name]}"
                )
            names[definition.name] = path
            # only the files dossiers run on (the shipped one, or the configured folder's that
            # overrides it): a draft elsewhere, or an overridden shipped file, is no edit in place
            effective = app.registry.path_of(definition.name) if installed else None
            in_use = effective is not None and effective.resolve() == path.resolve()
            affected = changed_under(app, definition) if in_use else None
            if affected:
                shown = ", ".join(affected[:10]) + (", …" if len(affected) > 10 else "")
                problems.append(
                    f"{path}: changed in place under {len(affected)} dossier(s) on "
                    f"{definition.name} ({shown}): they are refused until "
                    f"`ocop workflow migrate --from {definition.name} --to {definition.name} "
                    "--plan PLAN.toml` puts them on the file as it is now"
                )
    targets = [str(p) for group in groups for p in group]
    if not targets:
        problems.append("no workflow files found")
    return targets, problems
