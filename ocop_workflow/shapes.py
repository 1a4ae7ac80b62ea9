"""The facade's outputs as plain typed objects, each with the one definition of its JSON shape.

:class:`~ocop_workflow.service.Ocop` returns these; ``--json`` prints ``to_json()``, the tables are
printed from that same document, and the server returns it — so the CLI, the CLI through the
server and the API cannot drift apart. The shapes are those interface.md and the README promise
(keys may be added, never removed or renamed).

Nothing here touches the database: a shape is built from rows the reading functions
(views.py, audit.py, …) already fetched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import VerifyReport
    from .checkpoint import Checkpoint
    from .engine import Moved


def _iso(instant: datetime | None) -> str | None:
    """An instant already in the business time zone, as JSON gives it: ISO 8601 with offset."""
    return None if instant is None else instant.isoformat()


def _local(instant: datetime | None, tz: tzinfo) -> datetime | None:
    return None if instant is None else instant.astimezone(tz)


@dataclass(frozen=True)
class Dossier:
    """A dossier as ``register`` returns it and ``dossier list`` lists it. Times are in the
    business time zone (``[engine] timezone``)."""

    id: str
    product: str
    producer: str
    commune: str
    group: str | None
    workflow: str
    workflow_version: str
    state: str
    state_label: str
    stage: str
    final: bool
    state_entered_at: datetime | None
    deadline_at: datetime | None
    overdue: bool
    version: int
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "product": self.product,
            "producer": self.producer,
            "commune": self.commune,
            "group": self.group,
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "state": self.state,
            "state_label": self.state_label,
            "stage": self.stage,
            "final": self.final,
            "state_entered_at": _iso(self.state_entered_at),
            "deadline_at": _iso(self.deadline_at),
            "overdue": self.overdue,
            "version": self.version,
            "data": self.data,
        }


@dataclass(frozen=True)
class Timer:
    """A reminder, deadline, escalation or expiry timer (``timers list``, ``dossier show``)."""

    id: int
    dossier: str
    kind: str
    state: str
    due_at: datetime | None
    deadline_at: datetime | None
    status: str
    auto_trigger: str | None
    fired_at: datetime | None
    late_seconds: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], tz: tzinfo) -> Timer:
        return cls(
            id=row["id"],
            dossier=row["dossier_id"],
            kind=row["kind"],
            state=row["state"],
            due_at=_local(row["due_at"], tz),
            deadline_at=_local(row["deadline_at"], tz),
            status=row["status"],
            auto_trigger=row["auto_trigger"],
            fired_at=_local(row["fired_at"], tz),
            late_seconds=row["late_seconds"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dossier": self.dossier,
            "kind": self.kind,
            "state": self.state,
            "due_at": _iso(self.due_at),
            "deadline_at": _iso(self.deadline_at),
            "status": self.status,
            "auto_trigger": self.auto_trigger,
            "fired_at": _iso(self.fired_at),
            "late_seconds": self.late_seconds,
        }


@dataclass(frozen=True)
class NextTrigger:
    """A transition leaving the dossier's state (``dossier show``: who may fire it)."""

    trigger: str
    to: str
    roles: tuple[str, ...]
    label: str

    def to_json(self) -> dict[str, Any]:
        roles = list(self.roles)
        return {"trigger": self.trigger, "to": self.to, "roles": roles, "label": self.label}


@dataclass(frozen=True)
class DossierDetail:
    """``dossier show``: the dossier, how its deadline was reached, its pending timers, its
    documents against the checklist, the triggers from its state, how it came in."""

    dossier: Dossier
    deadline: Mapping[str, Any] | None
    timers: tuple[Timer, ...]
    documents: tuple[Mapping[str, Any], ...]
    documents_missing: tuple[str, ...]
    next_triggers: tuple[NextTrigger, ...]
    entered: Mapping[str, Any] | None
    #: Why the dossier's workflow file does not load now (the rest is what the database holds).
    workflow_unavailable: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.dossier.to_json()
        out["deadline"] = self.deadline
        out["timers"] = [t.to_json() for t in self.timers]
        if self.workflow_unavailable is not None:
            out["workflow_unavailable"] = self.workflow_unavailable
        out["documents"] = [dict(d) for d in self.documents]
        out["documents_missing"] = list(self.documents_missing)
        out["next_triggers"] = [t.to_json() for t in self.next_triggers]
        out["entered"] = self.entered
        return out


@dataclass(frozen=True)
class Page:
    """One page of ``dossier list`` (``GET /dossiers``): the items, and the total that matched."""

    items: Sequence[Dossier]
    total: int
    limit: int | None
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [d.to_json() for d in self.items],
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class Advanced:
    """What ``dossier advance`` did (``POST …/advance``): the engine's ``Moved``, its times in
    the business time zone."""

    id: str
    trigger: str
    from_state: str
    to_state: str
    seq: int
    at: datetime
    deadline_at: datetime | None
    actor: str
    version: int

    @classmethod
    def from_moved(cls, moved: Moved, tz: tzinfo) -> Advanced:
        """The same fields as ``moved`` (one per field of this class), its instants in ``tz``."""
        same = {f.name: getattr(moved, f.name) for f in fields(cls)}
        return cls(
            **{**same, "at": moved.at.astimezone(tz), "deadline_at": _local(moved.deadline_at, tz)}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "from": self.from_state,
            "to": self.to_state,
            "seq": self.seq,
            "at": _iso(self.at),
            "deadline_at": _iso(self.deadline_at),
            "actor": self.actor,
            "version": self.version,
        }


@dataclass(frozen=True)
class TriggerOption:
    """``dossier triggers``: one trigger from the current state, for one person: may they fire
    it now, and every reason why not."""

    trigger: str
    to: str
    label: str
    allowed: bool
    reasons: tuple[str, ...]
    needs_reason: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "to": self.to,
            "label": self.label,
            "allowed": self.allowed,
            "reasons": list(self.reasons),
            "needs_reason": self.needs_reason,
        }


@dataclass(frozen=True)
class Notification:
    """An outbox entry (``notifications list``)."""

    id: int
    dossier: str | None
    channel: str
    recipient: str
    subject: str
    status: str
    attempts: int
    key: str
    kind: str
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: Any, tz: tzinfo) -> Notification:
        return cls(
            id=row.id,
            dossier=row.dossier_id,
            channel=row.channel,
            recipient=row.recipient,
            subject=row.subject,
            status=row.status,
            attempts=row.attempts,
            key=row.key,
            kind=row.kind,
            next_attempt_at=_local(row.next_attempt_at, tz),
            sent_at=_local(row.sent_at, tz),
            last_error=row.last_error,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dossier": self.dossier,
            "channel": self.channel,
            "recipient": self.recipient,
            "subject": self.subject,
            "status": self.status,
            "attempts": self.attempts,
            "key": self.key,
            "kind": self.kind,
            "next_attempt_at": _iso(self.next_attempt_at),
            "sent_at": _iso(self.sent_at),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Initialized:
    """``ocop init``: the database's schema created or upgraded, and what its owner is warned
    of (not part of the JSON document, which the command prints on stdout)."""

    database: str  # the URL as shown: its password masked
    revision_before: str | None
    revision: str
    #: The warning when the SQLite file is readable or writable by other logins, else None.
    exposed: str | None = None
    #: Connected to PostgreSQL as a superuser, who can rewrite the audit trail.
    superuser: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "revision_before": self.revision_before,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class Verification:
    """``audit verify``: the hash chains recomputed (against the signed checkpoints given), and
    the dossiers that entered by import rather than ``register`` (an auditor's first question)."""

    report: VerifyReport
    imported: tuple[Mapping[str, Any], ...] = ()
    checkpoints: tuple[Checkpoint, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def dossiers_checked(self) -> int:
        return self.report.dossiers_checked

    @property
    def entries_checked(self) -> int:
        return self.report.entries_checked

    def to_json(self) -> dict[str, Any]:
        out = {**self.report.document(), "imported": [dict(i) for i in self.imported]}
        if self.checkpoints:  # only when verified against some: the plain shape is unchanged
            out["checkpoints"] = [c.document() for c in self.checkpoints]
        return out


@dataclass(frozen=True)
class Attached:
    """``dossier attach`` (``POST …/documents``): the document recorded on the dossier, or the
    one already there with the same kind and content (then nothing was written: no ``seq``)."""

    dossier: str
    kind: str
    name: str
    size: int
    sha256: str
    at: str
    by: str
    already_attached: bool
    #: The audit entry that recorded it; None when it was already attached.
    seq: int | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any], tz: tzinfo) -> Attached:
        """From the document as the dossier's data records it (its instant in UTC, as stored
        and hashed), the instant told in ``tz`` like every other."""
        return cls(
            dossier=document["dossier"],
            kind=document["kind"],
            name=document["name"],
            size=document["size"],
            sha256=document["sha256"],
            at=datetime.fromisoformat(document["at"]).astimezone(tz).isoformat(),
            by=document["by"],
            already_attached=bool(document["already_attached"]),
            seq=document.get("seq"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "at": self.at,
            "by": self.by,
            "dossier": self.dossier,
        }
        if self.seq is not None:
            out["seq"] = self.seq
        out["already_attached"] = self.already_attached
        return out


@dataclass(frozen=True)
class Scoring:
    """``ocop score`` (a member's score, the chair's close or re-score): the dossier's scorings
    by evaluation level, and the resulting score and stars once a round is closed."""

    dossier: str
    scoring: Mapping[str, Any]
    score: float | None
    stars: int | None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Scoring:
        return cls(document["dossier"], document["scoring"], document["score"], document["stars"])

    def to_json(self) -> dict[str, Any]:
        return {
            "dossier": self.dossier,
            "scoring": self.scoring,
            "score": self.score,
            "stars": self.stars,
        }


@dataclass(frozen=True)
class Progress:
    """``report progress``: each target of the plan year, reached and left, by commune and
    stage; where the counted dossiers are now; the overdue and the longest-stuck dossiers."""

    year: int
    generated_at: str
    targets: tuple[Mapping[str, Any], ...]
    communes: tuple[str, ...]
    stages: tuple[str, ...]
    by_stage: Mapping[str, int]
    by_state: Mapping[str, int]
    overdue: tuple[Mapping[str, Any], ...]
    stuck: tuple[Mapping[str, Any], ...]
    dossiers: int
    audit_entries: int

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Progress:
        return cls(
            year=document["year"],
            generated_at=document["generated_at"],
            targets=tuple(document["targets"]),
            communes=tuple(document["communes"]),
            stages=tuple(document["stages"]),
            by_stage=document["by_stage"],
            by_state=document["by_state"],
            overdue=tuple(document["overdue"]),
            stuck=tuple(document["stuck"]),
            dossiers=document["dossiers"],
            audit_entries=document["audit_entries"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "generated_at": self.generated_at,
            "targets": list(self.targets),
            "communes": list(self.communes),
            "stages": list(self.stages),
            "by_stage": self.by_stage,
            "by_state": self.by_state,
            "overdue": list(self.overdue),
            "stuck": list(self.stuck),
            "dossiers": self.dossiers,
            "audit_entries": self.audit_entries,
        }


@dataclass(frozen=True)
class WorkflowSummary:
    """One row of ``workflow list`` (``GET /workflows``)."""

    name: str
    version: str
    title: str
    default: bool
    states: int
    triggers: int
    file: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "default": self.default,
            "states": self.states,
            "triggers": self.triggers,
            "file": self.file,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One audit entry as ``dossier history --json`` shows it, the API returns it and
    ``audit export`` writes it for auditors.

    ``data_before`` is the dossier's data before the change: the entry's own stored copy when
    it has one (written by an earlier version, ``data_before_stored`` true), else the previous
    entry's ``data`` — the entry's hash then covers ``data_before: null`` (audit.py).
    """

    dossier: str
    seq: int
    trigger: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    at: datetime
    data: Mapping[str, Any]
    data_before: Mapping[str, Any] | None
    data_before_stored: bool
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "dossier": self.dossier,
            "seq": self.seq,
            "trigger": self.trigger,
            "from": self.from_state,
            "to": self.to_state,
            "actor": self.actor,
            "reason": self.reason,
            "at": _iso(self.at),
            "data": self.data,
            "data_before": self.data_before,
            "data_before_stored": self.data_before_stored,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class WorkflowState:
    """One state of ``workflow show``: where it sits in the cycle, its labels and deadline."""

    name: str
    stage: str
    label_vi: str
    label_en: str
    initial: bool
    final: bool
    level: str | None
    recognise_stars: Sequence[int]
    deadline: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "label_vi": self.label_vi,
            "label_en": self.label_en,
            "initial": self.initial,
            "final": self.final,
            "level": self.level,
            "recognise_stars": list(self.recognise_stars),
            "deadline": self.deadline,
        }


@dataclass(frozen=True)
class WorkflowTransition:
    """One trigger of ``workflow show``: from where to where, who may fire it, its guards."""

    trigger: str
    source: str
    dest: str
    roles: Sequence[str]
    guards: Sequence[str]
    label: str

    def to_json(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "from": self.source,
            "to": self.dest,
            "roles": list(self.roles),
            "guards": list(self.guards),
            "label": self.label,
        }


@dataclass(frozen=True)
class WorkflowField:
    """One declared field of a workflow's dossier data (``protected``: set by the engine only)."""

    type: str
    label: str
    protected: bool

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "label": self.label, "protected": self.protected}


@dataclass(frozen=True)
class WorkflowDetail:
    """``workflow show`` (``GET /workflows/{name}``): the definition, and the dossiers on it
    that the reader may see.

    ``dossiers`` is None when there is no database to ask (``ocop init`` not run);
    ``dossiers_on_other_content`` likewise — the running dossiers pinned to another content
    of the file, refused until ``ocop workflow migrate``.
    """

    name: str
    version: str
    title: str
    legal_basis: str
    file: str
    sha256: str
    default: bool
    stages: Sequence[str]
    states: Sequence[WorkflowState]
    transitions: Sequence[WorkflowTransition]
    fields: Mapping[str, WorkflowField]
    dossiers: int | None
    dossier_ids: Sequence[str]
    dossiers_by_version: Mapping[str, int]
    dossiers_on_other_content: Sequence[str] | None

    def to_json(self) -> dict[str, Any]:
        changed = self.dossiers_on_other_content
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "legal_basis": self.legal_basis,
            "file": self.file,
            "sha256": self.sha256,
            "default": self.default,
            "stages": list(self.stages),
            "states": [s.to_json() for s in self.states],
            "transitions": [t.to_json() for t in self.transitions],
            "fields": {name: f.to_json() for name, f in self.fields.items()},
            "dossiers": self.dossiers,
            "dossier_ids": list(self.dossier_ids),
            "dossiers_by_version": dict(self.dossiers_by_version),
            "dossiers_on_other_content": None if changed is None else list(changed),
        }
