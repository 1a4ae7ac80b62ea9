"""Read-side queries: dossiers, history, timers and the outbox, as the typed outputs of
:mod:`~ocop_workflow.shapes` (whose ``to_json`` is what ``--json`` prints and the API returns).

Nothing here writes, and nothing here imports the state-machine or calendar libraries, so reading
commands start fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NotFound, UsageError
from .render import when
from .shapes import Dossier, DossierDetail, HistoryEntry, NextTrigger, Notification, Timer

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .config import Config
    from .definitions import Registry
    from .store import Store


class Reads(Protocol):
    """The few reads ``dossier show`` and ``dossier list`` need: ``CoreReads`` (SQLAlchemy,
    every database) or ``sqlite_reads.SqliteReads`` (plain sqlite3, no SQLAlchemy import)."""

    def dossier(self, dossier_id: str) -> dict[str, Any] | None: ...
    def ids_meant(self, wanted: str) -> list[str]: ...
    def communes(self) -> set[str]: ...
    def dossiers(self, filters: DossierFilter, now: datetime) -> Iterator[dict[str, Any]]: ...
    def pending_timers(self, dossier_id: str) -> Iterator[dict[str, Any]]: ...
    def first_entry(self, dossier_id: str) -> dict[str, Any] | None: ...


class CoreReads:
    """``Reads`` over a ``Store``: SQLAlchemy Core statements, any dialect."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def dossier(self, dossier_id: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        from .store import dossier_t

        with self.store.read() as conn:
            row = conn.execute(sa.select(dossier_t).where(dossier_t.c.id == dossier_id)).first()
        return None if row is None else dict(row._mapping)

    def ids_meant(self, wanted: str) -> list[str]:
        with self.store.read() as conn:
            return _ids_meant(conn, wanted)

    def communes(self) -> set[str]:
        import sqlalchemy as sa

        from .store import dossier_t

        with self.store.read() as conn:
            return set(conn.execute(sa.select(dossier_t.c.commune).distinct()).scalars())

    def dossiers(self, filters: DossierFilter, now: datetime) -> Iterator[dict[str, Any]]:
        import sqlalchemy as sa

        from .store import dossier_t

        query = _filtered(sa.select(dossier_t).order_by(dossier_t.c.id), filters, now)
        with self.store.read() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield dict(row._mapping)

    def pending_timers(self, dossier_id: str) -> Iterator[dict[str, Any]]:
        import sqlalchemy as sa

        from .store import PENDING, timer_t

        query = (
            sa.select(timer_t)
            .where(timer_t.c.dossier_id == dossier_id, PENDING)
            .order_by(timer_t.c.due_at, timer_t.c.id)
        )
        with self.store.read() as conn:
            for row in conn.execute(query):
                yield dict(row._mapping)

    def first_entry(self, dossier_id: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        from .store import audit_t

        with self.store.read() as conn:
            first = conn.execute(
                sa.select(
                    audit_t.c.trigger, audit_t.c.actor, audit_t.c.at, audit_t.c.data_after
                ).where(audit_t.c.dossier_id == dossier_id, audit_t.c.seq == 1)
            ).first()
        return None if first is None else dict(first._mapping)


def as_reads(source: Store | Reads) -> Reads:
    """A ``Store`` given where reads are wanted is read through SQLAlchemy Core. (Not an
    ``isinstance`` test: that would import ``store``, hence SQLAlchemy, on the thin path.)"""
    if hasattr(source, "ids_meant"):
        return source  # type: ignore[return-value]
    return CoreReads(source)


@dataclass(frozen=True)
class DossierFilter:
    state: str | None = None
    stage: str | None = None
    commune: str | None = None
    workflow: str | None = None
    overdue: bool = False

    def check(self, registry: Registry) -> None:
        """A misspelt workflow, state or stage is an error (exit 3), not an empty answer.

        An officer who asks for state ``bussiness_plan`` must not conclude that nothing is
        waiting. The commune is free text on the dossier, so an unknown one is just no match.
        """
        from .errors import WorkflowFileError

        try:
            workflows = [registry.get(self.workflow)] if self.workflow else registry.loadable()
        except WorkflowFileError:  # its file does not load: list its dossiers unchecked
            return
        if not self.workflow and registry.unavailable():
            return  # the state may be one of a workflow that cannot load now: no false "no such"
        scope = f"workflow {self.workflow}" if self.workflow else "any workflow"
        if self.state is not None and not any(self.state in wf.states for wf in workflows):
            raise NotFound(f"no state '{self.state}' in {scope}", fields=("state",))
        if self.stage is not None and not any(self.stage in wf.stages for wf in workflows):
            raise NotFound(f"no stage '{self.stage}' in {scope}", fields=("stage",))

    def check_commune(
        self,
        config: Config,
        reads: Store | Reads,
        limited: Callable[[], tuple[Store, sa.ColumnElement[bool]] | None] | None = None,
    ) -> None:
        """The commune asked for must be a known one: "Ia le" is a typo to point out, not "none".

        Known: ``[communes] names`` when configured, else the communes of the configuration and,
        for a commune not among them, of the dossiers on file — only of those the reader may
        read (``limited``: called only then, the store and the policy's read filter, or None
        for one who reads them all): to one who reads some dossiers, a commune known only from
        dossiers they may not see is as unknown as one that never was, or "known: …" and 404
        against 200 would tell them where the others' dossiers are.
        """
        if self.commune is None:
            return
        from .communes import check_commune

        known = set(config.known_communes())
        if self.commune not in known and not config.communes_closed:
            scope = limited() if limited is not None else None
            if scope is None:
                known |= as_reads(reads).communes()
            else:
                import sqlalchemy as sa

                from .store import dossier_t

                store, readable = scope
                query = sa.select(dossier_t.c.commune).where(readable).distinct()
                with store.read() as conn:
                    known |= set(conn.execute(query).scalars())
        check_commune(self.commune, known, closed=True)


#: The columns of ``dossier list --format csv|xlsx`` (and of an import file: see importer.py).
DOSSIER_COLUMNS = (
    "id",
    "product",
    "producer",
    "commune",
    "group",
    "workflow",
    "state",
    "state_label",
    "stage",
    "state_entered_at",
    "deadline_at",
    "overdue",
    "version",
    "data",
)


def dossier_of(row: Mapping[str, Any], registry: Registry, now: datetime, tz: tzinfo) -> Dossier:
    """A dossier row as ``register``, ``show`` and ``list`` give it."""
    state = registry.state_of(row["workflow"], row["state"])
    deadline = row["deadline_at"]
    final = state.final if state else False
    entered_at = row["state_entered_at"]
    return Dossier(
        id=row["id"],
        product=row["product"],
        producer=row["producer"],
        commune=row["commune"],
        group=row["product_group"],
        workflow=row["workflow"],
        workflow_version=row["workflow_version"],
        state=row["state"],
        state_label=state.label_vi if state else row["state"],
        stage=row["stage"],
        final=final,
        state_entered_at=None if entered_at is None else entered_at.astimezone(tz),
        deadline_at=None if deadline is None else deadline.astimezone(tz),
        overdue=bool(deadline is not None and not final and deadline <= now),
        version=row["version"],
        data=json.loads(row["data"]),
    )


def get_dossier(store: Store | Reads, dossier_id: str, *, hint: bool = True) -> Mapping[str, Any]:
    """The dossier row; NotFound naming the id meant when only its case differs (``hint``: off
    where existence must not leak — the server does not hint at a dossier one may not see)."""
    reads = as_reads(store)
    row = reads.dossier(dossier_id)
    if row is None:
        if not hint:
            raise NotFound(f"dossier {dossier_id} not found")
        raise _not_found(dossier_id, reads.ids_meant(dossier_id.strip().upper()))
    return row


def _not_found(dossier_id: str, meant: list[str]) -> NotFound:
    near = f" (did you mean {' or '.join(meant)}?)" if meant else ""
    return NotFound(f"dossier {dossier_id} not found{near}")


def dossier_not_found(conn: sa.Connection, dossier_id: str) -> NotFound:
    """ "dossier X not found", with the ids meant when only case or spaces differ.

    Ids are ASCII (engine._ID), so SQL ``lower`` folds them the same on every database, and the
    unique index on ``lower(id)`` (migration 0006) answers: a typo costs no table scan.
    """
    return _not_found(dossier_id, _ids_meant(conn, dossier_id.strip().upper()))


def _ids_meant(conn: sa.Connection, wanted: str) -> list[str]:
    """The ids (at most three) that are ``wanted`` but for case."""
    import sqlalchemy as sa

    from .store import dossier_t

    return list(
        conn.execute(
            sa.select(dossier_t.c.id)
            .where(sa.func.lower(dossier_t.c.id) == wanted.lower())
            .order_by(dossier_t.c.id)
            .limit(3)
        ).scalars()
    )


def _filtered(query: Any, filters: DossierFilter, now: datetime) -> Any:
    from .store import dossier_t

    for column, value in (
        (dossier_t.c.state, filters.state),
        (dossier_t.c.stage, filters.stage),
        (dossier_t.c.commune, filters.commune),
        (dossier_t.c.workflow, filters.workflow),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.overdue:
        query = query.where(dossier_t.c.deadline_at <= now)
    return query


def list_dossiers(
    store: Store | Reads,
    registry: Registry,
    filters: DossierFilter,
    now: datetime,
    tz: tzinfo,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Iterator[Dossier]:
    """The dossiers ``filters`` select (and ``keep``, given a row, keeps), streamed."""
    for row in as_reads(store).dossiers(filters, now):
        if keep is not None and not keep(row):
            continue
        dossier = dossier_of(row, registry, now, tz)
        if filters.overdue and not dossier.overdue:
            continue
        yield dossier


def show_dossier(
    store: Store | Reads,
    registry: Registry,
    dossier_id: str,
    now: datetime,
    tz: tzinfo,
    row: Mapping[str, Any] | None = None,
) -> DossierDetail:
    """The dossier, how its deadline was reached, its pending timers, its possible triggers.

    ``row``: the dossier's row when the caller has just read it (one query fewer)."""
    reads = as_reads(store)
    row = get_dossier(reads, dossier_id) if row is None else row
    dossier = dossier_of(row, registry, now, tz)
    deadline = json.loads(row["deadline_note"]) if row["deadline_note"] else None
    timers = tuple(Timer.from_row(t, tz) for t in reads.pending_timers(dossier_id))
    attached = dossier.data.get("documents", [])
    from .documents import checklist
    from .errors import OcopError

    unavailable = None
    try:
        wf = registry.get(row["workflow"])
    except OcopError as exc:  # a reading command still shows what the database holds
        unavailable = exc.message
        documents = checklist({}, (), attached)
        next_triggers: tuple[NextTrigger, ...] = ()
    else:
        documents = checklist(wf.documents, wf.required_documents(row["product_group"]), attached)
        next_triggers = tuple(
            NextTrigger(t.trigger, t.dest, tuple(t.roles), t.label_vi)
            for t in wf.transitions_from(row["state"])
        )
    return DossierDetail(
        dossier=dossier,
        deadline=deadline,
        timers=timers,
        documents=tuple(documents),
        documents_missing=(
            () if unavailable else tuple(d["kind"] for d in documents if not d["present"])
        ),
        next_triggers=next_triggers,
        entered=entered(reads, dossier_id, tz),
        workflow_unavailable=unavailable,
    )


def entered(store: Store | Reads, dossier_id: str, tz: tzinfo) -> dict[str, Any] | None:
    """How the dossier came in, from its first audit entry: ``register`` or ``import`` (with
    the file, its SHA-256 and the line, which the entry's hash covers)."""
    first = as_reads(store).first_entry(dossier_id)
    if first is None:
        return None
    out: dict[str, Any] = {
        "by": first["trigger"],
        "actor": first["actor"],
        "at": when(first["at"], tz),
    }
    if first["trigger"] == "import":
        source = _source(first["data_after"])
        out.update({k: source.get(k) for k in ("file", "sha256", "line")})
    return out


def _source(data_after: str | None) -> dict[str, Any]:
    try:
        source = json.loads(data_after or "{}").get("source")
    except (ValueError, AttributeError):
        return {}
    return source if isinstance(source, dict) else {}


def imported(store: Store, dossier_id: str | None = None) -> list[dict[str, Any]]:
    """Every dossier that entered by import, with its source file, SHA-256 and line: what
    ``audit verify`` lists so an auditor sees which dossiers did not start with ``register``."""
    import sqlalchemy as sa

    from .store import audit_t

    query = (
        sa.select(audit_t.c.dossier_id, audit_t.c.data_after)
        .where(audit_t.c.seq == 1, audit_t.c.trigger == "import")
        .order_by(audit_t.c.dossier_id)
    )
    if dossier_id is not None:
        query = query.where(audit_t.c.dossier_id == dossier_id)
    with store.read() as conn:
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        source = _source(row.data_after)
        out.append(
            {"dossier": row.dossier_id, **{k: source.get(k) for k in ("file", "sha256", "line")}}
        )
    return out


def history(store: Store, dossier_id: str, tz: tzinfo) -> list[HistoryEntry]:
    import sqlalchemy as sa

    from .audit import history_entries
    from .store import audit_t

    get_dossier(store, dossier_id)
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_t).where(audit_t.c.dossier_id == dossier_id).order_by(audit_t.c.seq)
        ).all()
        return list(history_entries(conn, rows, tz))


def list_timers(
    store: Store,
    tz: tzinfo,
    *,
    dossier_id: str | None = None,
    due_before: datetime | None = None,
    include_all: bool = False,
    visible: sa.ColumnElement[bool] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Timer]:
    """Timers, soonest first; only those of the dossiers ``visible`` selects (``of_visible``),
    ``limit`` of them from ``offset`` on."""
    import sqlalchemy as sa

    from .store import PENDING, pending_due, timer_t

    query = sa.select(timer_t).order_by(timer_t.c.due_at, timer_t.c.id)
    if dossier_id is not None:
        query = query.where(timer_t.c.dossier_id == dossier_id)
    if not include_all:
        query = query.where(PENDING)
    if due_before is not None:  # pending ones through the waking timers' index
        query = query.where(
            timer_t.c.due_at <= due_before if include_all else pending_due(due_before)
        )
    query = _page(of_visible(query, timer_t, visible), limit, offset)
    with store.read() as conn:
        for row in conn.execution_options(yield_per=1000).execute(query):
            yield Timer.from_row(dict(row._mapping), tz)


def of_visible(query: Any, table: sa.Table, visible: sa.ColumnElement[bool] | None) -> Any:
    """``query`` on a table of rows about dossiers (timers, the outbox), kept to the rows of
    dossiers that exist and that ``visible`` (a clause on ``dossier_t``: the policy's
    ``read_filter``, or true) selects; None keeps every row, even one of no dossier.

    Joined in the database: a reader of a few dossiers costs one statement reading those,
    not a read of the province's rows and one more per dossier to sort them."""
    if visible is None:
        return query
    from .store import dossier_t

    return query.join(dossier_t, dossier_t.c.id == table.c.dossier_id).where(visible)


def _page(query: Any, limit: int | None, offset: int) -> Any:
    """One page of ``query`` (its ORDER BY must be total), or all of it without a ``limit``."""
    if limit is not None:
        query = query.limit(limit)
    return query.offset(offset) if offset else query


NOTIFICATION_STATUSES = ("pending", "sent", "dead")


def list_notifications(
    store: Store,
    tz: tzinfo,
    *,
    status: str | None = None,
    dossier_id: str | None = None,
    visible: sa.ColumnElement[bool] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Notification]:
    """Outbox entries, oldest first; only those of the dossiers ``visible`` selects
    (``of_visible``), ``limit`` of them from ``offset`` on."""
    if status is not None and status not in NOTIFICATION_STATUSES:
        raise UsageError(
            f"status '{status}': use one of {', '.join(NOTIFICATION_STATUSES)}", fields=("status",)
        )
    import sqlalchemy as sa

    from .store import notification_t

    query = sa.select(notification_t).order_by(notification_t.c.id)
    if status is not None:
        query = query.where(notification_t.c.status == status)
    if dossier_id is not None:
        query = query.where(notification_t.c.dossier_id == dossier_id)
    query = _page(of_visible(query, notification_t, visible), limit, offset)
    with store.read() as conn:
        for row in conn.execution_options(yield_per=1000).execute(query):
            yield Notification.from_row(row, tz)
