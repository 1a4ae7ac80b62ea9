"""The engine: register a dossier, fire a trigger, list what may fire — each one transaction.

``advance`` is permission → guards → the ``transitions`` machine → audit entry → timers → the
dossier row updated under an optimistic version check, all in one database transaction (design.md).
Any refusal raises before anything is written, and a lost race (zero rows updated) rolls the whole
transaction back: the database is exactly as before. Events are logged only after commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import audit, timers
from .config import SYSTEM_ACTOR, Config, User
from .definitions import Registry, TransitionDef, WorkflowDef
from .errors import (
    Conflict,
    NotFound,
    TransitionRefused,
    UsageError,
    WorkflowFileError,
)
from .guards import GUARDS, Failure, GuardContext
from .inputs import check_text, nfc
from .log import get_logger
from .machine import move, transition_of
from .policy import CERTIFICATE_FIELDS, Policy, advance_problems
from .store import (
    CoreWrites,
    SqliteWrites,
    Store,
    audit_t,
    counter_t,
    dossier_t,
    dumps,
    insert_ignore,
    timer_t,
)
from .views import dossier_not_found

if TYPE_CHECKING:
    from .calendar import WorkCalendar

#: The scheduler's identity: fires automatic transitions (``expire``); no login can claim it.
SYSTEM = User(
    key=SYSTEM_ACTOR,
    name="Hệ thống OCOP",
    roles=frozenset({SYSTEM_ACTOR}),
    communes=frozenset({"*"}),
)
#: Dossier ids: matched whole (``fullmatch``: a trailing newline is not part of an id).
DOSSIER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class NewDossier:
    """A new dossier, checked and ready to insert (by ``register`` or an import)."""

    workflow: WorkflowDef
    state: str
    dossier_id: str | None
    product: str
    producer: str
    commune: str
    group: str | None
    values: dict[str, Any]
    #: What makes it a records migration (a state mid-cycle, protected fields); empty if none.
    migration: tuple[str, ...] = ()


@dataclass(frozen=True)
class Moved:
    """What ``advance`` did, as shown by ``dossier advance --json``."""

    id: str
    trigger: str
    from_state: str
    to_state: str
    seq: int
    at: datetime
    deadline_at: datetime | None
    actor: str
    version: int


def snapshot(
    row: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    *,
    note: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dossier row as an audit entry records it before and after a change.

    Every column that is not recomputed from the chain itself (id = the chain's dossier, state =
    the entry's ``to``, version = the entry's seq, created_at / updated_at = the first / last
    entry's time) is here, so ``audit verify`` can compare a whole row with its last entry. The
    keys after ``data`` were added later: entries written before carry only the first five, and
    verify checks of them only what they hold (their hashes are unchanged). ``data`` and
    ``note`` are the row's ``data`` and ``deadline_note`` already parsed, when the caller has
    them (``note`` only when the row has one).
    """
    deadline = row.get("deadline_at")
    if note is None and row.get("deadline_note") is not None:
        note = json.loads(row["deadline_note"])
    return {
        "product": row["product"],
        "producer": row["producer"],
        "commune": row["commune"],
        "group": row["product_group"],
        "data": dict(json.loads(row["data"]) if data is None else data),
        "workflow": row["workflow"],
        "workflow_version": row["workflow_version"],
        "workflow_sha256": row.get("workflow_sha256"),
        "stage": row["stage"],
        "state_entered_at": audit.iso_utc(row["state_entered_at"]),
        "state_entry_seq": row["state_entry_seq"],
        "deadline_at": None if deadline is None else audit.iso_utc(deadline),
        "deadline_note": None if note is None else dict(note),
    }


#: Kept for callers of the earlier name; the rule lives in :mod:`ocop_workflow.policy`.
permission_problems = advance_problems


def check_dossier_id(dossier_id: str) -> str:
    """A dossier id given by a user: letters, digits and ``. _ -``, matched whole.

    The office's own form ``OCOP-<year>-<n>`` only in capitals: ``ocop-2026-0002`` would
    otherwise pre-empt, in another case, the id the office gives next (two dossiers nobody can
    tell apart on paper). Other ids are unique whatever their case (:func:`taken_ids`).
    """
    if not DOSSIER_ID.fullmatch(dossier_id) or ".." in dossier_id:
        raise UsageError(
            f"id {dossier_id!r}: use letters, digits and . _ - (at most 64 characters)"
        )
    if _OFFICE_ID.fullmatch(dossier_id) and dossier_id != dossier_id.upper():
        raise UsageError(
            f"id {dossier_id}: ids of the office's form are written in capitals "
            f"({dossier_id.upper()})"
        )
    return dossier_id


_OFFICE_ID = re.compile(r"ocop-\d{4}-\d+", re.IGNORECASE)


def taken(dossier_id: str) -> str:
    """A taken id, said in the caller's own spelling: the stored one (ids are unique whatever
    their case) would tell someone who may not see that dossier more than that it exists."""
    return f"id {dossier_id} is taken (ids are unique whatever their case)"


def taken_ids(conn: Connection, ids: Iterable[str]) -> set[str]:
    """The given ids (as given) equal to an existing dossier's id ignoring case.

    Ids are ASCII, so ``lower()`` folds them alike on SQLite and PostgreSQL; the unique index
    on ``lower(id)`` (migration 0006) answers the look-up and refuses a twin inserted by a
    concurrent registration. The office's generated ids are looked up exactly (they are in
    capitals and no given id may be their other case).
    """
    wanted = {i.lower(): i for i in ids}
    found: set[str] = set()
    keys = list(wanted)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for existing in conn.execute(
            sa.select(dossier_t.c.id).where(sa.func.lower(dossier_t.c.id).in_(chunk))
        ).scalars():
            found.add(wanted[existing.lower()])
    return found


class Engine:
    """Commands that change dossiers. The clock is injected: ``clock()`` is "now" everywhere."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        config: Config,
        clock: Callable[[], datetime],
        calendar: WorkCalendar | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.config = config
        self.clock = clock
        #: Who may do what; every writing method below asks it first.
        self.policy = Policy(config, registry)
        if calendar is not None:
            self.__dict__["calendar"] = calendar

    @cached_property
    def calendar(self) -> WorkCalendar:
        from .calendar import WorkCalendar

        return WorkCalendar(
            self.config.timezone, self.config.holidays, local=self.config.calendar_days
        )

    # --- register ---------------------------------------------------------------------------

    def register(
        self,
        actor: User,
        *,
        product: str,
        producer: str,
        commune: str,
        group: str | None = None,
        workflow: str | None = None,
        dossier_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new dossier in its workflow's initial state, with the first audit entry.

        ``data`` (data field → value) is checked against the workflow's fields.
        """
        wf = self.registry.get(self.config.default_workflow if workflow is None else workflow)
        values = wf.parse_values(data or {})
        new = self.check_new(
            actor,
            product=product,
            producer=producer,
            commune=commune,
            group=group,
            workflow=workflow,
            dossier_id=dossier_id,
            values=values,
        )
        now = self.clock()
        with self.store.write() as conn:
            row = self.insert_new(conn, new, actor, now)
        _log().info(
            "dossier.registered",
            dossier=row["id"],
            actor=actor.key,
            workflow=row["workflow"],
            to=row["state"],
        )
        return row

    def check_new(
        self,
        actor: User,
        *,
        product: str,
        producer: str,
        commune: str,
        group: str | None,
        workflow: str | None,
        dossier_id: str | None,
        values: dict[str, Any],
        state: str | None = None,
        entered_at: datetime | None = None,
    ) -> NewDossier:
        """Everything about a new dossier that can be checked before touching the database.

        The policy decides last, on the checked values: a dossier given a ``state`` other than
        the initial one, an ``entered_at`` or a protected field is a records migration.
        """
        wf = self.registry.get(self.config.default_workflow if workflow is None else workflow)
        for name, value in (
            ("product", product),
            ("producer", producer),
            ("commune", commune),
        ):
            check_text(value, name)
            if not value.strip():
                raise UsageError(f"{name} must not be empty")
        if group is not None:
            check_text(group, "group")
        if dossier_id is not None:
            check_dossier_id(dossier_id)
        if wf.groups and group is not None and group not in wf.groups:
            raise UsageError(
                f"group {group}: unknown product group for {wf.name} "
                f"(groups: {', '.join(wf.groups)})"
            )
        target = wf.state(state) if state is not None else wf.initial
        self.config.check_commune(nfc(commune.strip()))  # before the scope: a typo is not a refusal
        migration = []
        if target.name != wf.initial.name:
            migration.append(f"state {target.name}")
        if entered_at is not None:
            migration.append("state_entered_at")
        protected = [name for name in values if name in wf.fields and wf.fields[name].protected]
        if protected:
            migration.append("protected field(s) " + ", ".join(protected))
        official = [name for name in values if name in CERTIFICATE_FIELDS]
        if official:  # a new dossier with a certificate's numbers records a certified one
            migration.append("the certificate's " + ", ".join(official))
        new = NewDossier(
            workflow=wf,
            state=target.name,
            dossier_id=dossier_id,
            product=nfc(product.strip()),
            producer=nfc(producer.strip()),
            commune=nfc(commune.strip()),
            group=None if group is None else nfc(group),
            values=values,
            migration=tuple(migration),
        )
        self.check_new_allowed(actor, new)
        return new

    def check_new_allowed(self, actor: User, new: NewDossier) -> None:
        """The policy's word on creating ``new`` as ``actor`` (exit 6 when refused)."""
        self.policy.check_create(
            actor, producer=new.producer, commune=new.commune, migration=new.migration
        )

    def insert_new(
        self,
        conn: Connection,
        new: NewDossier,
        actor: User,
        now: datetime,
        *,
        entered_at: datetime | None = None,
        trigger: str = "register",
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Insert a checked new dossier, its first audit entry and its state's timers."""
        self.check_new_allowed(actor, new)
        if new.dossier_id is None:
            dossier_id = self.next_ids(conn, now, 1)[0]
        elif taken_ids(conn, [new.dossier_id]):
            raise Conflict(f"{taken(new.dossier_id)}: choose another id")
        else:
            dossier_id = new.dossier_id
        row, entry, timer_rows = self.new_rows(
            new, dossier_id, actor, now, entered_at=entered_at, trigger=trigger, reason=reason
        )
        try:
            conn.execute(dossier_t.insert(), [row])
        except sa.exc.IntegrityError:  # another officer registered this id a moment ago
            remedy = (
                "choose another id"
                if new.dossier_id
                else "registered at the same moment: try again"
            )
            raise Conflict(f"{taken(dossier_id)}: {remedy}") from None
        conn.execute(audit_t.insert(), [entry])
        if timer_rows:
            conn.execute(timer_t.insert(), timer_rows)
        return row

    def new_rows(
        self,
        new: NewDossier,
        dossier_id: str,
        actor: User,
        now: datetime,
        *,
        entered_at: datetime | None = None,
        trigger: str = "register",
        reason: str | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """The dossier row, its first audit entry and its timers — built, not yet written.

        ``source`` (an import's file, SHA-256 and line) is recorded in the first entry's
        ``data_after`` under ``source``, covered by the chain's hash: the trail proves where a
        dossier that did not start with ``register`` came from.
        """
        state = new.workflow.state(new.state)
        entered = entered_at or now
        row = {
            "id": dossier_id,
            "product": new.product,
            "producer": new.producer,
            "commune": new.commune,
            "product_group": new.group,
            "workflow": new.workflow.name,
            "workflow_version": new.workflow.version,
            "workflow_sha256": new.workflow.sha256 or None,
            "state": state.name,
            "stage": state.stage,
            "state_entered_at": entered,
            "state_entry_seq": 1,
            "version": 1,
            "data": dumps(new.values),
            "created_at": now,
            "updated_at": now,
        }
        deadline, timer_rows = timers.plan(
            state,
            dossier_id=dossier_id,
            entry_seq=1,
            entered_at=entered,
            data=new.values,
            cal=self.calendar,
        )
        row["deadline_at"] = deadline.at if deadline else None
        row["deadline_note"] = timers.deadline_note_json(deadline)
        row["calendar_fingerprint"] = self.calendar.fingerprint
        entry = audit.entry_row(
            dossier_id=dossier_id,
            seq=1,
            prev_hash=audit.GENESIS,
            trigger=trigger,
            from_state=None,
            to_state=state.name,
            actor=actor.key,
            reason=reason,
            at=now,
            data_before=None,
            data_after=(
                snapshot(row, new.values)
                if source is None
                else {**snapshot(row, new.values), "source": dict(source)}
            ),
        )
        return row, entry, timer_rows

    def next_ids(self, conn: Connection, now: datetime, count: int) -> list[str]:
        """Reserve ``count`` new dossier ids ``OCOP-<year>-<n>`` (one counter update)."""
        year = self.calendar.local_date(now).year
        name = f"dossier:{year}"
        insert_ignore(conn, counter_t, {"name": name, "value": 0}, ["name"])
        ids: list[str] = []
        while len(ids) < count:
            wanted = count - len(ids)
            conn.execute(
                counter_t.update()
                .where(counter_t.c.name == name)
                .values(value=counter_t.c.value + wanted)
            )
            last = conn.execute(
                sa.select(counter_t.c.value).where(counter_t.c.name == name)
            ).scalar_one()
            candidates = [f"OCOP-{year}-{n:04d}" for n in range(last - wanted + 1, last + 1)]
            taken = set(
                conn.execute(
                    sa.select(dossier_t.c.id).where(dossier_t.c.id.in_(candidates))
                ).scalars()
            )
            ids += [c for c in candidates if c not in taken]
        return ids

    # --- advance ----------------------------------------------------------------------------

    def advance(
        self,
        dossier_id: str,
        trigger: str,
        actor: User,
        *,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        expect_version: int | None = None,
        hint: bool = True,
    ) -> Moved:
        """Fire ``trigger`` on a dossier as ``actor``, in one transaction.

        ``hint``: a dossier not found names the ids meant (a read after the transaction); off
        where existence must not leak (the server)."""
        now = self.clock()
        try:
            with self.store.writes() as writes:
                moved = self.advance_in(
                    writes,
                    dossier_id,
                    trigger,
                    actor,
                    now=now,
                    reason=reason,
                    data=data,
                    expect_version=expect_version,
                )
        except NotFound as missing:
            if missing.message != f"dossier {dossier_id} not found" or not hint:
                raise
            # the transaction is over: look for the id meant ("ocop-2026-0001") in a read
            with self.store.read() as conn:
                raise dossier_not_found(conn, dossier_id) from None
        log_moved(moved)
        return moved

    def advance_in(
        self,
        conn: Connection | CoreWrites | SqliteWrites,
        dossier_id: str,
        trigger: str,
        actor: User,
        *,
        now: datetime,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        expect_version: int | None = None,
        pinned: bool = True,
    ) -> Moved:
        """The body of ``advance`` inside the caller's transaction (the sweep reuses it).

        ``pinned=False`` (the sweep's automatic transitions only) fires a timer planned under
        the dossier's own rules even if its workflow file has since changed version: a
        certificate must not outlive its expiry because someone edited a file.
        """
        writes = CoreWrites(self.store, conn) if isinstance(conn, Connection) else conn
        found = writes.lock_dossier(dossier_id)
        if found is None:
            raise NotFound(f"dossier {dossier_id} not found")
        row = found
        if expect_version is not None and row["version"] != expect_version:
            raise Conflict(
                f"dossier {dossier_id} is at version {row['version']}, not {expect_version}: "
                "it changed since you looked; check it again"
            )
        wf = self.registry.for_dossier(row) if pinned else self.registry.get(row["workflow"])
        transition = transition_of(wf, trigger, row["state"]) or self._transition(
            wf, trigger, row["state"]
        )
        self.policy.check_advance(actor, transition, row)
        if reason is not None:
            check_text(reason, "reason", multiline=True, field="reason")
        before = json.loads(row["data"])
        if data:
            protected = actor is SYSTEM
            updates = wf.parse_values(data, allow_protected=protected)
            self.policy.check_data(actor, transition, updates)
            after = {**before, **updates}
        else:  # nothing to parse (most advances): the same as merging an empty parse
            after = dict(before)
        today = self.calendar.local_date(now)
        for name in transition.stamp:
            after[name] = today.isoformat()
        if transition.certificate_months is not None:
            issue_certificate(after, before, today, transition.certificate_months)
        failures = guard_failures(wf, transition, row, after, reason)
        if failures:
            raise refused(f"'{trigger}' refused for dossier {dossier_id}", failures)
        dest = move(wf, row["state"], trigger)
        dest_state = wf.state(dest)
        # The entry's seq is the chain head + 1 (the head was read under the dossier lock): the
        # timers and the row need it, and the entry records the row as it will be.
        seq = int(row["audit_seq"] or 0) + 1
        deadline, timer_rows = timers.plan(
            dest_state,
            dossier_id=dossier_id,
            entry_seq=seq,
            entered_at=now,
            data=after,
            cal=self.calendar,
        )
        moved_row = {
            "state": dest,
            "stage": dest_state.stage,
            "state_entered_at": now,
            "state_entry_seq": seq,
            "deadline_at": deadline.at if deadline else None,
            "deadline_note": timers.deadline_note_json(deadline),
            "data": dumps(after),
            "version": row["version"] + 1,
            "updated_at": now,
            # a dossier older than the content pin adopts the file it was just moved under
            "workflow_sha256": row["workflow_sha256"] or (wf.sha256 if pinned else None),
        }
        entry = audit.entry_row(
            dossier_id=dossier_id,
            seq=seq,
            prev_hash=row["audit_hash"] or audit.GENESIS,
            trigger=trigger,
            from_state=row["state"],
            to_state=dest,
            actor=actor.key,
            reason=reason,
            at=now,
            data_after=snapshot(
                {**row, **moved_row}, after, note=None if deadline is None else deadline.note
            ),
            # the texts already made: the data stored in the row, the deadline's shared note
            after_texts=(
                {"data": moved_row["data"]}
                if deadline is None
                else {"data": moved_row["data"], "deadline_note": deadline.note_canonical}
            ),
        )
        writes.insert(audit_t, [entry])
        writes.cancel_timers(dossier_id)
        writes.insert(timer_t, timer_rows)
        updated = writes.move_dossier(
            dossier_id,
            row["version"],
            {**moved_row, "calendar_fingerprint": self.calendar.fingerprint},
        )
        if updated != 1:
            raise Conflict(f"dossier {dossier_id} changed while it was being moved; try again")
        return Moved(
            id=dossier_id,
            trigger=trigger,
            from_state=row["state"],
            to_state=dest,
            seq=seq,
            at=now,
            deadline_at=deadline.at if deadline else None,
            actor=actor.key,
            version=row["version"] + 1,
        )

    def amend(
        self,
        dossier_id: str,
        actor: User,
        event: str,
        change: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
        *,
        reason: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Change a dossier's data without moving it (a score, a document), audited as ``event``.

        ``change(row, data)`` returns the new data or raises an :class:`OcopError`; it runs inside
        the transaction with the dossier locked, so what it checks cannot change under it.
        The policy is asked first (:meth:`Policy.check_amend`): an event it does not know is
        refused. Returns (audit seq, new data).
        """
        if reason is not None:
            check_text(reason, "reason", multiline=True)
        now = self.clock()
        with self.store.write() as conn:
            row = self.store.lock_dossier(conn, dossier_id)
            if row is None:
                raise dossier_not_found(conn, dossier_id)
            self.policy.check_amend(actor, event, row)
            after = change(row, json.loads(row["data"]))
            seq, _ = audit.append(
                conn,
                dossier_id=dossier_id,
                head=(row["audit_seq"], row["audit_hash"]),
                trigger=event,
                from_state=row["state"],
                to_state=row["state"],
                actor=actor.key,
                reason=reason,
                at=now,
                data_after=snapshot(row, after),
            )
            updated = conn.execute(
                dossier_t.update()
                .where(dossier_t.c.id == dossier_id, dossier_t.c.version == row["version"])
                .values(data=dumps(after), version=row["version"] + 1, updated_at=now)
            )
            if updated.rowcount != 1:
                raise Conflict(f"dossier {dossier_id} changed meanwhile; try again")
        _log().info("dossier.amended", dossier=dossier_id, change=event, actor=actor.key, seq=seq)
        return seq, after

    @staticmethod
    def _transition(wf: WorkflowDef, trigger: str, state: str) -> TransitionDef:
        transition = wf.transition(trigger, state)
        if transition is None:
            possible = ", ".join(t.trigger for t in wf.transitions_from(state)) or "none"
            raise TransitionRefused(
                f"'{trigger}' is not allowed from state {state} (possible from {state}: {possible})"
            )
        return transition

    # --- what may fire ----------------------------------------------------------------------

    def triggers(self, dossier_id: str, actor: User) -> list[dict[str, Any]]:
        """Each trigger from the current state: may ``actor`` fire it now, and if not, why not."""
        with self.store.read() as conn:
            found = conn.execute(sa.select(dossier_t).where(dossier_t.c.id == dossier_id)).first()
            if found is None:
                raise dossier_not_found(conn, dossier_id)
        row = dict(found._mapping)
        held: list[str] = []
        try:
            wf = self.registry.for_dossier(row)
        except WorkflowFileError as exc:  # still a reading command: say why nothing may fire
            wf, held = self.registry.get(row["workflow"]), [exc.message]
        data = json.loads(row["data"])
        out = []
        for transition in wf.transitions_from(row["state"]):
            reasons = held + advance_problems(actor, transition, row)
            needs_reason = "reason_given" in transition.guards
            reasons += [
                failure.text
                for failure in guard_failures(
                    wf, transition, row, data, "(given)" if needs_reason else None
                )
            ]
            out.append(
                {
                    "trigger": transition.trigger,
                    "to": transition.dest,
                    "label": transition.label_vi,
                    "allowed": not reasons,
                    "reasons": reasons,
                    "needs_reason": needs_reason,
                }
            )
        return out


def issue_certificate(
    after: dict[str, Any], before: Mapping[str, Any], today: Any, months: int
) -> None:
    """Record a new certificate; the one it supersedes (an upgrade, a renewal) is kept in
    ``previous_certificates`` so the dossier tells its whole certificate history."""

    from .calendar import add_months

    if before.get("certificate_no") and before.get("certified_on"):
        previous = list(before.get("previous_certificates", []))
        previous.append(
            {
                key: before.get(key)
                for key in (
                    "certificate_no",
                    "decision_no",
                    "certified_on",
                    "valid_until",
                    "certificate_stars",
                )
            }
        )
        after["previous_certificates"] = previous
    after["certified_on"] = today.isoformat()
    after["certificate_stars"] = after.get("stars")
    # valid through the end of the corresponding day (Civil Code Art. 147-148; timers.py)
    after["valid_until"] = add_months(today, months).isoformat()


def guard_failures(
    wf: WorkflowDef,
    transition: TransitionDef,
    dossier: Mapping[str, Any],
    data: Mapping[str, Any],
    reason: str | None,
) -> list[Failure]:
    """Every failed guard of ``transition``, in the order the workflow file lists them, each
    named by its guard (``reason_given: …``)."""
    if not transition.guards:  # most transitions have none: no context to build
        return []
    ctx = GuardContext(
        workflow=wf,
        transition=transition,
        state=wf.state(transition.source),
        dossier=dossier,
        data=data,
        reason=reason,
    )
    failures = []
    for name in transition.guards:
        found = GUARDS[name](ctx)
        if isinstance(found, Failure):
            failures.append(Failure(f"{name}: {found.text}", found.fields))
        elif found is not None:
            failures.append(Failure(f"{name}: {found}", ()))
    return failures


def refused(what: str, failures: list[Failure]) -> TransitionRefused:
    """One refusal naming every failed guard, and every input that would fix one (once each):
    the caller fixes them all in one go."""
    reasons = [failure.text for failure in failures]
    fields = dict.fromkeys(field for failure in failures for field in failure.fields)
    return TransitionRefused(f"{what}: " + "; ".join(reasons), reasons, fields=tuple(fields))


def log_moved(moved: Moved) -> None:
    _log().info(
        "dossier.advanced",
        dossier=moved.id,
        trigger=moved.trigger,
        actor=moved.actor,
        from_state=moved.from_state,
        to_state=moved.to_state,
        seq=moved.seq,
    )


def _log() -> Any:
    return get_logger("ocop.engine")
