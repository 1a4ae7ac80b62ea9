"""``ocop workflow migrate``: move dossiers in flight to another rule version or file content.

A plan file maps each state of the old rules that dossiers are in to a state of the new rules
(and renames or drops data fields, renames product groups). Nothing is guessed: a dossier in a
state the plan does not map, carrying a field the new rules do not know, or in a product group
they do not have, makes the whole run refuse (exit 4) before anything is written — the dry run
(``--dry-run``) shows the same pre-flight report without writing.

The real run migrates each dossier in its own transaction: one ``migrate`` audit entry (actor,
reason; the plan's SHA-256 and both rule versions and content hashes in the entry's snapshot and
reason), its pending timers cancelled and planned again under the new rules, and the dossier
pinned to the new file's version and content hash. A dossier staying in a state of the same
name keeps its state entry time (its deadline counts as before, under the new rules); one moved
to another state enters it now.

Dossiers in a final state are not migrated: they finished under their rules. With ``--from`` and
``--to`` the same workflow, only the dossiers pinned to other content or another version of its
file are migrated (the way to make an in-place edit effective for them, audited).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import audit, timers
from .config import User
from .errors import Conflict, OcopError, TransitionRefused, UsageError
from .inputs import check_text, read_small_file, toml_document
from .store import dossier_t, dumps, timer_t

if TYPE_CHECKING:
    from .definitions import WorkflowDef
    from .engine import Engine

MIGRATE_TRIGGER = "migrate"
#: A plan is a few kilobytes; a FIFO, /dev/zero or a huge file is not one.
PLAN_MAX_BYTES = 1 << 20
_PLAN_KEYS = {"plan", "states", "fields", "groups"}


@dataclass(frozen=True)
class Plan:
    path: Path
    sha256: str
    source: str
    target: str
    states: Mapping[str, str]
    same_names: bool
    renames: Mapping[str, str]
    drops: frozenset[str]
    groups: Mapping[str, str]

    def state_for(self, state: str, target: WorkflowDef) -> str | None:
        if state in self.states:
            return self.states[state]
        if self.same_names and state in target.states:
            return state
        return None


@dataclass
class DossierMove:
    """The pre-flight report of one dossier (the real run adds ``migrated`` / ``error``)."""

    id: str
    from_state: str
    to_state: str | None
    from_version: str
    to_version: str
    problems: list[str] = field(default_factory=list)
    timers_cancelled: int = 0
    timers_planned: list[dict[str, str]] = field(default_factory=list)
    deadline_at: str | None = None
    guards_failing: dict[str, list[str]] = field(default_factory=dict)
    documents_missing: list[str] = field(default_factory=list)
    fields_renamed: dict[str, str] = field(default_factory=dict)
    fields_dropped: list[str] = field(default_factory=list)
    group: str | None = None
    migrated: bool = False
    error: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.from_state,
            "to": self.to_state,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "problems": self.problems,
            "timers_cancelled": self.timers_cancelled,
            "timers_planned": self.timers_planned,
            "deadline_at": self.deadline_at,
            "guards_failing": self.guards_failing,
            "documents_missing": self.documents_missing,
            "fields_renamed": self.fields_renamed,
            "fields_dropped": self.fields_dropped,
            "group": self.group,
            "migrated": self.migrated,
            "error": self.error,
        }


def resolve_plan(text: str) -> Path:
    """A plan: the name of a shipped plan (``ocop-148-to-ocop-1489``), else a file path.

    A bare name that a shipped plan has is that plan, even if a file of that name lies in the
    working folder (a planted file must not stand in for the plan the README names); write
    ``./NAME`` to mean the file.
    """
    path = Path(text)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", text):
        return path
    from importlib import resources

    shipped = Path(str(resources.files("ocop_workflow").joinpath("data", "plans", f"{text}.toml")))
    return shipped if shipped.is_file() else path


def load_plan(path: Path, source: WorkflowDef, target: WorkflowDef) -> Plan:
    """Read and check a plan file against both workflows; UsageError (exit 2) names each problem."""
    raw_bytes = read_small_file(path, "plan", PLAN_MAX_BYTES, missing=UsageError)
    raw = toml_document(raw_bytes, f"plan {path}")
    problems: list[str] = []
    for key in raw:
        if key not in _PLAN_KEYS:
            problems.append(f"unknown table [{key}] (known: {', '.join(sorted(_PLAN_KEYS))})")
    head = raw.get("plan", {})
    if not isinstance(head, dict):
        head = {}
        problems.append("[plan] must be a table")
    for key in head:
        if key not in {"from", "to", "title", "same_names"}:
            problems.append(f"[plan]: unknown key '{key}'")
    if head.get("from") != source.name or head.get("to") != target.name:
        problems.append(
            f"[plan] says from = {head.get('from')!r}, to = {head.get('to')!r}; the migration "
            f"asked is from {source.name} to {target.name}"
        )
    same_names = head.get("same_names", False)
    if not isinstance(same_names, bool):
        problems.append("[plan]: 'same_names' must be true or false")
        same_names = False
    states = _str_table(raw.get("states", {}), "[states]", problems)
    for old, new in states.items():
        if old not in source.states:
            problems.append(f"[states]: '{old}' is not a state of {source.name}")
        elif new not in target.states:
            problems.append(f"[states]: {old} = '{new}': not a state of {target.name}")
        else:
            wrong = mapping_problem(source, target, old, new)
            if wrong:
                problems.append(f"[states]: {old} = '{new}': {wrong}")
    fields = raw.get("fields", {})
    if not isinstance(fields, dict):
        problems.append("[fields] must be a table with rename = {…} and drop = […]")
        fields = {}
    for key in fields:
        if key not in {"rename", "drop"}:
            problems.append(f"[fields]: unknown key '{key}' (known: drop, rename)")
    renames = _str_table(fields.get("rename", {}), "[fields] rename", problems)
    targets: dict[str, str] = {}
    for old, new in renames.items():
        if new in targets:
            problems.append(
                f"[fields] rename: {targets[new]} and {old} both become '{new}': one would "
                "overwrite the other"
            )
        targets.setdefault(new, old)
        if new not in target.fields:
            problems.append(f"[fields] rename: {old} = '{new}': not a field of {target.name}")
        elif target.fields[new].protected and not (
            old in source.fields and source.fields[old].protected
        ):
            problems.append(
                f"[fields] rename: {old} = '{new}': '{new}' is protected (set only by the "
                f"engine, e.g. the council's scoring): a plan cannot fill it from '{old}'"
            )
    drops = fields.get("drop", [])
    if not isinstance(drops, list) or not all(isinstance(d, str) for d in drops):
        problems.append("[fields] drop must be a list of field names")
        drops = []
    groups = _str_table(raw.get("groups", {}), "[groups]", problems)
    for old, new in groups.items():
        if target.groups and new not in target.groups:
            problems.append(f"[groups]: {old} = '{new}': not a product group of {target.name}")
    if problems:
        raise UsageError(f"plan {path}: " + "; ".join(problems), fields=("plan",))
    return Plan(
        path=path,
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        source=source.name,
        target=target.name,
        states=states,
        same_names=same_names,
        renames=renames,
        drops=frozenset(drops),
        groups=groups,
    )


def mapping_problem(source: WorkflowDef, target: WorkflowDef, old: str, new: str) -> str | None:
    """Why state ``old`` may not become ``new``, or None.

    A migration re-homes a dossier under new rules; it never moves it on through the cycle (that
    is ``advance``, with its roles, guards and council). So the new state is never final and
    never of a later stage than the old one (in the new rules' order of stages): mapping
    ``business_plan`` to ``promotion`` would certify a product no council scored, mapping to
    ``closed`` would end a dossier nobody decided on. Back to an earlier stage is allowed (the
    dossier passes those checks again).
    """
    was, becomes = source.states[old], target.states[new]
    if becomes.final:
        return f"a final state of {target.name}: a migration never finishes a dossier"
    if was.stage not in target.stages:
        return (
            f"'{old}' is in stage '{was.stage}', which {target.name} does not have: the plan "
            "cannot tell whether this moves the dossier on"
        )
    if target.stages.index(becomes.stage) > target.stages.index(was.stage):
        return (
            f"stage '{becomes.stage}' comes after '{was.stage}': a migration never moves a "
            "dossier on (that is an advance, with its guards and roles)"
        )
    return None


def _str_table(raw: Any, item: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        problems.append(f'{item} must be a table of name = "name"')
        return {}
    return dict(raw)


def migrate(
    engine: Engine,
    *,
    source_name: str,
    target_name: str,
    plan_path: str | Path,
    actor: User,
    now: datetime,
    dry_run: bool,
    reason: str | None = None,
) -> dict[str, Any]:
    """Pre-flight every dossier on ``source_name``; unless ``dry_run``, migrate each in turn.

    Raises TransitionRefused (exit 4) when anything is unmapped — nothing is written then.
    """
    engine.policy.check_migrate(actor)
    if reason is not None:
        check_text(reason, "reason", multiline=True, max_len=1000, field="reason")
        if not reason.strip():
            raise UsageError(
                "the reason must be a non-empty text of at most 1000 characters",
                fields=("reason",),
            )
    source = engine.registry.get(source_name)
    target = engine.registry.get(target_name)
    plan = load_plan(resolve_plan(str(plan_path)), source, target)
    with engine.store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(_candidates(source, target))]
    moves = [_preflight(engine, plan, source, target, row, now) for row in rows]
    document: dict[str, Any] = {
        "from": source.name,
        "to": target.name,
        "from_version": source.version,
        "to_version": target.version,
        "from_sha256": source.sha256,
        "to_sha256": target.sha256,
        "plan": str(plan_path),
        "plan_sha256": plan.sha256,
        "dry_run": dry_run,
        "dossiers": [m.document() for m in moves],
        "refused": sum(1 for m in moves if m.problems),
        "migrated": 0,
        "failed": 0,
    }
    if document["refused"]:
        first = next(m for m in moves if m.problems)
        error = TransitionRefused(
            f"migration refused: {document['refused']} dossier(s) cannot be mapped "
            f"(first: {first.id}: {first.problems[0]}); nothing was changed",
            [f"{m.id}: {p}" for m in moves for p in m.problems],
        )
        error.document = document  # type: ignore[attr-defined]
        raise error
    if dry_run:
        return document
    for move in moves:
        try:
            with engine.store.write() as conn:
                _apply(engine, conn, plan, source, target, move, actor, now, reason)
            move.migrated = True
        except OcopError as exc:  # this dossier changed meanwhile: the others still go on
            move.error = exc.message
    document["dossiers"] = [m.document() for m in moves]
    document["migrated"] = sum(1 for m in moves if m.migrated)
    document["failed"] = sum(1 for m in moves if m.error)
    return document


def _candidates(source: WorkflowDef, target: WorkflowDef) -> sa.Select[Any]:
    d = dossier_t.c
    finals = [s.name for s in source.states.values() if s.final]
    query = sa.select(dossier_t).where(d.workflow == source.name).order_by(d.id)
    if finals:
        query = query.where(d.state.notin_(finals))
    if source.name == target.name:  # a content migration: only dossiers on other content
        query = query.where(
            sa.or_(
                d.workflow_version != target.version,
                sa.and_(d.workflow_sha256.is_not(None), d.workflow_sha256 != target.sha256),
            )
        )
    return query


def _preflight(
    engine: Engine,
    plan: Plan,
    source: WorkflowDef,
    target: WorkflowDef,
    row: dict[str, Any],
    now: datetime,
) -> DossierMove:
    from .engine import guard_failures

    new_state = plan.state_for(row["state"], target)
    move = DossierMove(
        id=row["id"],
        from_state=row["state"],
        to_state=new_state,
        from_version=row["workflow_version"],
        to_version=target.version,
    )
    if new_state is None:
        move.problems.append(
            f"state '{row['state']}' is not mapped by the plan (add it under [states])"
        )
    elif row["state"] in source.states:
        wrong = mapping_problem(source, target, row["state"], new_state)
        if wrong:
            move.problems.append(f"state '{row['state']}' → '{new_state}': {wrong}")
    data, renamed, dropped, unmapped, clashes = map_data(
        plan, source, target, json.loads(row["data"])
    )
    move.fields_renamed, move.fields_dropped = renamed, dropped
    for name in unmapped:
        move.problems.append(
            f"field '{name}' is not a field of {target.name} (rename or drop it under [fields])"
        )
    move.problems.extend(clashes)
    move.problems.extend(_refused_values(target, data))
    group = plan.groups.get(row["product_group"], row["product_group"])
    move.group = group
    if group is not None and target.groups and group not in target.groups:
        move.problems.append(
            f"product group '{group}' is not a group of {target.name} (map it under [groups])"
        )
    if new_state is None or move.problems:
        return move
    state = target.state(new_state)
    entered = row["state_entered_at"] if new_state == row["state"] else now
    with engine.store.read() as conn:
        move.timers_cancelled = int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    timer_t.c.dossier_id == row["id"], timer_t.c.status == "pending"
                )
            ).scalar_one()
        )
    deadline, planned = timers.plan(
        state,
        dossier_id=row["id"],
        entry_seq=0,
        entered_at=entered,
        data=data,
        cal=engine.calendar,
    )
    move.timers_planned = [
        {"kind": r["kind"], "due_at": r["due_at"].isoformat()} for r in _future(planned, now)
    ]
    move.deadline_at = deadline.at.isoformat() if deadline else None
    moved_row = {**row, "state": new_state, "product_group": group}
    for transition in target.transitions_from(new_state):
        if transition.automatic:
            continue
        # a reason is given ("(pre-flight)"), so reason_given never fails here
        failing = [
            f.text for f in guard_failures(target, transition, moved_row, data, "(pre-flight)")
        ]
        if failing:
            move.guards_failing[transition.trigger] = failing
    present = {d.get("kind") for d in data.get("documents", [])}
    move.documents_missing = [k for k in target.required_documents(group) if k not in present]
    return move


def map_data(
    plan: Plan, source: WorkflowDef, target: WorkflowDef, data: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[str], list[str], list[str]]:
    """(new data, renamed, dropped, unmapped, clashes): declared fields of the old rules the new
    ones lack must be renamed or dropped; engine-kept keys (documents, scoring, …) carry over;
    a rename onto a field the dossier already holds would overwrite it (a clash)."""
    out: dict[str, Any] = {}
    renamed: dict[str, str] = {}
    dropped: list[str] = []
    unmapped: list[str] = []
    clashes: list[str] = []
    for key, value in data.items():
        if key in plan.drops:
            dropped.append(key)
        elif key in plan.renames:
            new = plan.renames[key]
            kept = new in data and new not in plan.renames and new not in plan.drops
            if kept:  # the dossier already holds that field: the rename would overwrite it
                clashes.append(f"field '{new}' already holds a value: renaming '{key}' onto it")
                continue
            out[new] = value
            renamed[key] = new
        elif key in source.fields and key not in target.fields:
            unmapped.append(key)
        else:
            out[key] = value
    return out, renamed, dropped, unmapped, clashes


def _refused_values(target: WorkflowDef, data: Mapping[str, Any]) -> list[str]:
    """Each value the new rules' field checks refuse (type, choices, bounds): a renamed text
    may not be an e-mail address, a carried-over number may exceed a new maximum."""
    problems = []
    for name, value in data.items():
        spec = target.fields.get(name)
        if spec is None or isinstance(value, dict | list) or value is None:
            continue
        try:
            spec.parse(value if isinstance(value, str) else repr(value))
        except UsageError as exc:
            problems.append(
                f"field '{name}' = {value!r} is refused by {target.name}: "
                + exc.message.split(": ", 1)[-1]
            )
    return problems


def _future(planned: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Reminders already past are not sent late; deadlines, expiry, escalations always kept."""
    return [
        r for r in planned if r["kind"] not in {"reminder", "expiry_notice"} or r["due_at"] > now
    ]


def _apply(
    engine: Engine,
    conn: Connection,
    plan: Plan,
    source: WorkflowDef,
    target: WorkflowDef,
    move: DossierMove,
    actor: User,
    now: datetime,
    reason: str | None,
) -> None:
    from .engine import snapshot

    row = engine.store.lock_dossier(conn, move.id)
    if row is None:
        raise Conflict(f"dossier {move.id} was removed meanwhile")
    if row["state"] != move.from_state or row["workflow"] != source.name:
        raise Conflict(f"dossier {move.id} moved meanwhile (now {row['state']}): run again")
    assert move.to_state is not None
    before = json.loads(row["data"])
    data, _, _, unmapped, clashes = map_data(plan, source, target, before)
    if unmapped or clashes:
        first = (unmapped or clashes)[0]
        raise Conflict(f"dossier {move.id} changed meanwhile ({first}): run again")
    state = target.state(move.to_state)
    entered = row["state_entered_at"] if move.to_state == row["state"] else now
    seq = int(row["audit_seq"] or 0) + 1
    deadline, planned = timers.plan(
        state,
        dossier_id=move.id,
        entry_seq=seq,
        entered_at=entered,
        data=data,
        cal=engine.calendar,
    )
    new_row = {
        **row,
        "workflow": target.name,
        "workflow_version": target.version,
        "workflow_sha256": target.sha256,
        "state": state.name,
        "stage": state.stage,
        "product_group": move.group,
        "state_entered_at": entered,
        "state_entry_seq": seq,
        "deadline_at": deadline.at if deadline else None,
        "deadline_note": timers.deadline_note_json(deadline),
        "calendar_fingerprint": engine.calendar.fingerprint,
        "data": dumps(data),
        "version": row["version"] + 1,
        "updated_at": now,
    }
    rules = {
        "plan_sha256": plan.sha256,
        "from": {
            "workflow": source.name,
            "version": row["workflow_version"],
            "sha256": row["workflow_sha256"],
        },
        "to": {"workflow": target.name, "version": target.version, "sha256": target.sha256},
    }
    after = {**snapshot(new_row, data), "migration": rules}
    text = (
        f"{reason.strip() + ' — ' if reason else ''}migrate {source.name} {row['workflow_version']}"
        f" (sha256 {(row['workflow_sha256'] or '?')[:12]}) → {target.name} {target.version} "
        f"(sha256 {target.sha256[:12]}), plan sha256 {plan.sha256}"
    )
    audit.append(
        conn,
        dossier_id=move.id,
        head=(row["audit_seq"], row["audit_hash"]),
        trigger=MIGRATE_TRIGGER,
        from_state=row["state"],
        to_state=state.name,
        actor=actor.key,
        reason=text,
        at=now,
        data_after=after,
    )
    conn.execute(
        timer_t.update()
        .where(timer_t.c.dossier_id == move.id, timer_t.c.status == "pending")
        .values(status="cancelled")
    )
    future = _future(planned, now)
    if future:
        conn.execute(timer_t.insert(), timers.mark_waking(future))
    columns = {k: v for k, v in new_row.items() if k in dossier_t.c and k != "id"}
    updated = conn.execute(
        dossier_t.update()
        .where(dossier_t.c.id == move.id, dossier_t.c.version == row["version"])
        .values(**columns)
    )
    if updated.rowcount != 1:
        raise Conflict(f"dossier {move.id} changed while it was migrated; run again")
