"""The sweep: claim due timers, fire each once, write their notifications, then deliver.

Claiming and firing happen in one transaction per batch. What is claimed is each due dossier's
waking timer (its pending timer due first, the only one in the due index: migration 0007); the
batch then fires every due timer of those dossiers and marks each one's next waking timer. On
PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED`` and the batch's dossiers are locked ``SKIP
LOCKED`` too: any number of workers on any number of machines sweep side by side, a timer is
fired by exactly one of them, and a sweeper never waits for a dossier an officer is moving (a
timer of a busy dossier simply waits for the next sweep), so sweeps and officers cannot deadlock.
On SQLite ``BEGIN IMMEDIATE`` serialises the whole batch.

After downtime the first sweep fires what is due once: reminders whose deadline has passed, or
that a later reminder of the same state entry replaces, are marked ``superseded``; a repeating
escalation is sent once and its next repeat planned from now, not from when it was due.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import messages, timers
from .config import User
from .definitions import WorkflowDef
from .errors import NotFound, OcopError, UsageError, WorkflowFileError
from .store import PENDING, WAKING, dossier_t, insert_ignore, notification_t, pending_due, timer_t

if TYPE_CHECKING:
    from .engine import Engine

REMINDER_KINDS = frozenset({"reminder", "expiry_notice"})


@dataclass
class SweepCounts:
    timers_fired: int = 0
    timers_superseded: int = 0
    timers_stale: int = 0
    timers_deferred: int = 0
    auto_transitions: int = 0
    notifications_written: int = 0
    notifications_sent: int = 0
    notifications_failed: int = 0
    notifications_dead: int = 0
    deadlines_replanned: int = 0
    #: Due timers left pending because their dossier's workflow file does not load.
    timers_held: int = 0
    #: Workflow name → {"problem", "timers_held"}: files that did not load in this sweep.
    workflows_unavailable: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, other: SweepCounts) -> None:
        for name in self.__dataclass_fields__:
            if name != "workflows_unavailable":
                setattr(self, name, getattr(self, name) + getattr(other, name))
        for workflow, held in other.workflows_unavailable.items():
            mine = self.workflows_unavailable.setdefault(
                workflow, {"problem": held["problem"], "timers_held": 0}
            )
            mine["timers_held"] += held["timers_held"]

    def hold(self, workflow: str, problem: str, count: int) -> None:
        """``count`` due timers of a dossier on ``workflow``, which cannot load, stay pending."""
        self.timers_held += count
        held = self.workflows_unavailable.setdefault(
            workflow, {"problem": problem, "timers_held": 0}
        )
        held["timers_held"] += count

    def document(self) -> dict[str, Any]:
        """The interface keys first (interface.md), then the details.

        ``workflows_unavailable`` lists each workflow whose file did not load, why, and how many
        due timers of its dossiers were held (left pending for the next sweep).
        """
        keys = ("timers_fired", "notifications_sent", "notifications_failed", "notifications_dead")
        rest = [k for k in self.__dataclass_fields__ if k not in keys]
        out: dict[str, Any] = {k: getattr(self, k) for k in (*keys, *rest)}
        out["workflows_unavailable"] = [
            {"workflow": name, **held} for name, held in sorted(self.workflows_unavailable.items())
        ]
        return out


def run_sweep(
    engine: Engine,
    now: datetime,
    *,
    deliver: bool = True,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SweepCounts:
    """Fire every due timer (in batches until none is left), then deliver the outbox.

    ``progress`` is told how many timers each batch settled (the CLI draws a bar with it).
    """
    counts = SweepCounts()
    size = batch_size or engine.config.sweep_batch_size
    from .replan import replan_for_calendar

    engine.registry.retry_unavailable()  # a file fixed since the last sweep is read again
    # first: a day-off decision added since the timers were planned moves them before they fire
    counts.deadlines_replanned = replan_for_calendar(engine, now, limit=size)
    while True:
        batch = fire_due(engine, now, limit=size, held=set(counts.workflows_unavailable))
        counts.add(batch)
        claimed = (
            batch.timers_fired + batch.timers_superseded + batch.timers_stale + batch.timers_held
        )
        if progress is not None:
            progress(claimed)
        if claimed == 0:
            break
    if counts.workflows_unavailable:
        _count_held(engine, now, counts)
    if deliver:
        from .notify import deliver_pending

        while True:
            delivered = deliver_pending(
                engine.store,
                engine.config.notifications,
                now,
                tz=ZoneInfo(engine.config.timezone),
            )
            counts.notifications_sent += delivered.sent
            counts.notifications_failed += delivered.failed
            counts.notifications_dead += delivered.dead
            if delivered.sent + delivered.failed + delivered.dead == 0:
                break
    _log_sweep(counts)
    return counts


def _count_held(engine: Engine, now: datetime, counts: SweepCounts) -> None:
    """Every due timer an unavailable workflow holds (not only those one batch met)."""
    query = (
        sa.select(dossier_t.c.workflow, sa.func.count())
        .select_from(timer_t.join(dossier_t, dossier_t.c.id == timer_t.c.dossier_id))
        .where(
            pending_due(now),
            dossier_t.c.workflow.in_(sorted(counts.workflows_unavailable)),
        )
        .group_by(dossier_t.c.workflow)
    )
    with engine.store.read() as conn:
        held: dict[str, int] = {str(w): int(n) for w, n in conn.execute(query)}
    for workflow, entry in counts.workflows_unavailable.items():
        entry["timers_held"] = int(held.get(workflow, 0))
    counts.timers_held = sum(e["timers_held"] for e in counts.workflows_unavailable.values())


def count_due(engine: Engine, now: datetime) -> int:
    """How many timers are due (for a progress bar; the index answers it)."""
    with engine.store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(timer_t).where(pending_due(now))
            ).scalar_one()
        )


def fire_due(
    engine: Engine, now: datetime, *, limit: int, held: set[str] | frozenset[str] = frozenset()
) -> SweepCounts:
    """One batch: claim up to ``limit`` due timers and fire them, in one transaction.

    Timers of dossiers on a workflow in ``held`` (found unavailable earlier in this sweep) are
    not claimed again; a workflow found unavailable in this batch holds its dossiers' timers:
    they stay pending, counted in ``timers_held``, and fire once the file loads again.
    """
    store = engine.store
    counts = SweepCounts()
    # Due dossiers are found through their waking timers (one per dossier, ix_timer_wake); the
    # batch is then every due timer of the dossiers claimed (_rest_due).
    query = sa.select(timer_t).where(WAKING, timer_t.c.due_at <= now)
    if held:
        query = query.where(
            timer_t.c.dossier_id.not_in(
                sa.select(dossier_t.c.id).where(dossier_t.c.workflow.in_(sorted(held)))
            )
        )
    with store.write() as conn:
        claimed = conn.execute(
            store.claim_query(query.order_by(timer_t.c.due_at, timer_t.c.id).limit(limit))
        ).all()
        if not claimed:
            return counts
        dossiers = _lock_dossiers(engine, conn, sorted({t.dossier_id for t in claimed}))
        due = sorted([*claimed, *_rest_due(conn, claimed, now)], key=lambda t: (t.due_at, t.id))
        by_dossier: dict[str, list[Any]] = defaultdict(list)
        for timer in due:
            by_dossier[timer.dossier_id].append(timer)
        firing = _Firing(engine, conn, now, counts)
        for dossier_id in sorted(by_dossier):
            row = dossiers.get(dossier_id)
            if row is None:  # an officer is moving it right now: next sweep
                counts.timers_deferred += len(by_dossier[dossier_id])
                continue
            firing.dossier(row, by_dossier[dossier_id])
        firing.flush()
        locked = [
            d for d in by_dossier if (found := dossiers.get(d)) is not None and found is not _GONE
        ]
        _wake_next(conn, locked)
    return counts


def _lock_dossiers(engine: Engine, conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    """The batch's dossiers by id; ``_GONE`` for deleted ones; absent when busy (PostgreSQL).

    On PostgreSQL the rows are locked ``SKIP LOCKED``: a dossier an officer is moving right now
    is left out, and its timers wait for the next sweep instead of the sweeper waiting for it.
    """
    c = dossier_t.c
    query = sa.select(
        c.id,
        c.product,
        c.producer,
        c.commune,
        c.workflow,
        c.workflow_version,
        c.workflow_sha256,
        c.state,
        c.state_entry_seq,
        c.data,
    ).where(c.id.in_(ids))
    if not engine.store.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    found: dict[str, Any] = {row.id: row._mapping for row in conn.execute(query)}
    missing = set(ids) - set(found)
    if missing and not engine.store.is_sqlite:
        missing -= set(
            conn.execute(sa.select(dossier_t.c.id).where(dossier_t.c.id.in_(missing))).scalars()
        )
    for dossier_id in missing:
        found[dossier_id] = _GONE
    return found


_GONE: Mapping[str, Any] = {"state": None, "state_entry_seq": None}


def _rest_due(conn: Connection, claimed: Sequence[Any], now: datetime) -> list[Any]:
    """The other due timers of the claimed timers' dossiers (the batch fires them together).

    Only a dossier's waking timer is claimed through the index; the dossier is locked by then
    (``_lock_dossiers``), so nobody else fires or cancels these meanwhile.
    """
    ids = sorted({t.dossier_id for t in claimed})
    batch = {t.id for t in claimed}
    query = sa.select(timer_t).where(
        timer_t.c.dossier_id.in_(ids), PENDING, timer_t.c.due_at <= now
    )
    return [row for row in conn.execute(query) if row.id not in batch]


def _wake_next(conn: Connection, dossier_ids: Sequence[str]) -> None:
    """Mark each dossier's pending timer due first as waking (``Timer.wake``) after a batch
    fired, superseded or re-planned its timers (a dossier with none left has none): one
    statement for the whole batch."""
    if not dossier_ids:
        return
    pending = timer_t.alias("pending")
    ranked = (
        sa.select(
            pending.c.id,
            pending.c.wake,
            sa.func.row_number()
            .over(partition_by=pending.c.dossier_id, order_by=(pending.c.due_at, pending.c.id))
            .label("rank"),
        )
        .where(
            pending.c.dossier_id.in_(sorted(dossier_ids)),
            pending.c.status == sa.literal_column("'pending'"),
        )
        .subquery()
    )
    first = sa.select(ranked.c.id).where(ranked.c.rank == 1, ranked.c.wake.is_(None))
    conn.execute(timer_t.update().where(timer_t.c.id.in_(first)).values(wake=1))


class _Firing:
    """Fires the timers of one batch, buffering row updates and outbox inserts."""

    def __init__(
        self,
        engine: Engine,
        conn: Connection,
        now: datetime,
        counts: SweepCounts,
        others: Mapping[str, list[Any]] | None = None,
    ):
        self.others = others or {}
        self.engine = engine
        self.conn = conn
        self.now = now
        self.counts = counts
        self.tz = ZoneInfo(engine.config.timezone)
        self.marks: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.new_timers: list[dict[str, Any]] = []
        self._recipients: dict[tuple[Any, ...], list[tuple[str, str]]] = {}

    def mark(self, rows: Sequence[Any], status: str) -> None:
        for timer in rows:
            self._mark(timer, status)

    def _mark(self, timer: Any, status: str) -> None:
        self.marks.append(
            {
                "b_id": timer.id,
                "b_status": status,
                "b_fired_at": self.now,
                "b_late": (self.now - timer.due_at).total_seconds(),
            }
        )
        if status == "fired":
            self.counts.timers_fired += 1
        elif status == "superseded":
            self.counts.timers_superseded += 1
        else:
            self.counts.timers_stale += 1

    def dossier(self, row: Mapping[str, Any], due: list[Any]) -> None:
        if row is _GONE:
            self.mark(due, "stale")
            return
        try:
            wf = self.engine.registry.get(row["workflow"])
        except (WorkflowFileError, NotFound, UsageError) as exc:
            # Only this workflow's dossiers wait; the rest of the batch fires (run_sweep
            # warns about it every sweep and lists it in workflows_unavailable).
            self.counts.hold(row["workflow"], exc.message, len(due))
            return
        if row["workflow_version"] != wf.version:
            # Officers are refused until the file is sorted out (Registry.for_dossier); the
            # timers planned under the dossier's own rules still fire, so no deadline is lost.
            _log().warning(
                "sweep.workflow_version_changed",
                dossier=row["id"],
                workflow=wf.name,
                dossier_version=row["workflow_version"],
                file_version=wf.version,
            )
        elif row.get("workflow_sha256") and wf.sha256 and row["workflow_sha256"] != wf.sha256:
            _log().warning(  # the same for a file edited in place under the same version
                "sweep.workflow_content_changed",
                dossier=row["id"],
                workflow=wf.name,
                dossier_sha256=row["workflow_sha256"],
                file_sha256=wf.sha256,
            )
        current = [
            t for t in due if t.entry_seq == row["state_entry_seq"] and t.state == row["state"]
        ]
        self.mark([t for t in due if t not in current], "stale")
        if not current:
            return
        later = [
            t
            for t in self.others.get(row["id"], [])
            if t.entry_seq == row["state_entry_seq"] and t.state == row["state"]
        ]
        superseded = self._superseded(current, later)
        for timer in current:
            if timer.id in superseded:
                self._mark(timer, "superseded")
            else:
                self._fire(wf, row, timer)
        for timer in current:
            if timer.auto_trigger:
                self._auto_transition(row, timer)

    def _superseded(self, current: list[Any], later: Sequence[Any] = ()) -> set[int]:
        """Reminders not worth sending: their deadline is due too, or passed, or a later one is.

        Reminders belong to the deadline they announce (a state may have its own deadline and a
        certificate it watches), so they are compared per ``deadline_at``.
        """
        out: set[int] = set()
        mine = {t.id for t in current}
        groups: dict[Any, list[Any]] = defaultdict(list)
        for timer in [*current, *later]:
            groups[timer.deadline_at].append(timer)
        for deadline_at, group in groups.items():
            reminders = [t for t in group if t.kind in REMINDER_KINDS]
            if not reminders:
                continue
            if any(t.kind not in REMINDER_KINDS for t in group) or (
                deadline_at is not None and deadline_at <= self.now
            ):
                out.update(t.id for t in reminders if t.id in mine)
                continue
            latest = max(reminders, key=lambda t: (t.due_at, t.id))
            out.update(t.id for t in reminders if t.id != latest.id and t.id in mine)
        return out

    def _fire(self, wf: WorkflowDef, row: Mapping[str, Any], timer: Any) -> None:
        state = wf.state(timer.state)
        subject, body = messages.compose(
            timer.kind,
            workflow=wf,
            state=state,
            dossier=row,
            deadline_at=timer.deadline_at,
            now=self.now,
            tz=self.tz,
        )
        extra_roles = (
            state.deadline.escalate_to if state.deadline and timer.kind == "escalation" else ()
        )
        if timer.kind in messages.CERTIFICATE_KINDS:
            extra_roles = (*extra_roles, "producer")
        for channel, recipient in self.recipients(wf, row, timer.state, extra_roles):
            self.outbox.append(
                {
                    "key": f"timer-{timer.id}/{channel}/{recipient}",
                    "dossier_id": row["id"],
                    "timer_id": timer.id,
                    "kind": timer.kind,
                    "channel": channel,
                    "recipient": recipient,
                    "subject": subject,
                    "body": body,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": self.now,
                    "created_at": self.now,
                }
            )
        if timer.repeat_working_days:
            cal = self.engine.calendar
            self.new_timers.append(
                {
                    "dossier_id": timer.dossier_id,
                    "state": timer.state,
                    "entry_seq": timer.entry_seq,
                    "kind": timer.kind,
                    "due_at": timers.next_escalation(
                        cal.local_date(self.now), timer.repeat_working_days, cal
                    ),
                    "deadline_at": timer.deadline_at,
                    "status": "pending",
                    "auto_trigger": None,
                    "repeat_working_days": timer.repeat_working_days,
                    "created_at": self.now,
                    "wake": None,  # _wake_next marks the dossier's next after the batch
                }
            )
        self._mark(timer, "fired")

    def recipients(
        self, wf: WorkflowDef, row: Mapping[str, Any], state: str, extra_roles: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        """``recipients`` remembered per batch: most timers share workflow, state and commune."""
        key = (wf.name, state, row["commune"], row["producer"], extra_roles, row["data"])
        found = self._recipients.get(key)
        if found is None:
            found = self._recipients[key] = recipients(self.engine, wf, row, state, extra_roles)
        return found

    def _auto_transition(self, row: Mapping[str, Any], timer: Any) -> None:
        """Fire the state's automatic trigger (e.g. ``expire``) as ``system``, audited."""
        from .engine import SYSTEM, log_moved

        self.flush()  # the move cancels the state's timers: record this batch's work first
        savepoint = self.conn.begin_nested()
        try:
            moved = self.engine.advance_in(
                self.conn,
                row["id"],
                timer.auto_trigger,
                SYSTEM,
                now=self.now,
                pinned=False,
                reason=f"{timer.kind} timer {timer.id} due {timer.due_at.isoformat()}",
            )
        except OcopError as exc:
            savepoint.rollback()
            _log().warning(
                "timer.auto_transition_refused",
                dossier=row["id"],
                timer=timer.id,
                trigger=timer.auto_trigger,
                error=exc.message,
            )
            return
        savepoint.commit()
        self.counts.auto_transitions += 1
        log_moved(moved)

    def flush(self) -> None:
        if self.marks:
            self.conn.execute(
                timer_t.update()
                .where(timer_t.c.id == sa.bindparam("b_id"), PENDING)
                .values(
                    status=sa.bindparam("b_status"),
                    fired_at=sa.bindparam("b_fired_at"),
                    late_seconds=sa.bindparam("b_late"),
                ),
                self.marks,
            )
            self.marks = []
        if self.outbox:
            self.counts.notifications_written += insert_ignore(
                self.conn, notification_t, self.outbox, ["key"]
            )
            self.outbox = []
        if self.new_timers:
            self.conn.execute(timer_t.insert(), self.new_timers)
            self.new_timers = []


def recipients(
    engine: Engine,
    wf: WorkflowDef,
    dossier: Mapping[str, Any],
    state_name: str,
    extra_roles: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """(channel, recipient) pairs for a notification about ``dossier`` in ``state_name``.

    Who: the users who may fire the state's outgoing triggers (those marked ``remind``) and
    whose communes cover the dossier (a producer only for its own organisation), the users of
    ``extra_roles`` (escalations), and the producer's e-mail from the dossier data. Each channel
    says where a user's copy goes (:meth:`channels.Channel.address`): on the email channel an
    address, on the file and webhook channels the user's key.
    """
    from .policy import advance_problems

    config = engine.config
    outgoing = [t for t in wf.transitions_from(state_name) if t.remind]
    users: list[User] = []
    for user in config.users.values():
        acts = any(not advance_problems(user, t, dossier) for t in outgoing)
        escalated = bool(user.roles & set(extra_roles)) and user.covers(dossier["commune"])
        if escalated and user.roles & set(extra_roles) == {"producer"}:
            escalated = user.organisation == dossier["producer"]  # only its own producer
        if acts or escalated:
            users.append(user)
    data = json.loads(dossier["data"]) if isinstance(dossier["data"], str) else dossier["data"]
    producer_email = data.get("producer_email")
    pairs: list[tuple[str, str]] = []
    from .channels import channel as channel_named

    for channel in config.notifications.channels:
        address = channel_named(channel).address
        seen: set[str] = set()
        for user in users:
            target = address(user)
            if target and target not in seen:
                seen.add(target)
                pairs.append((channel, target))
        if (
            producer_email
            and producer_email not in seen
            and not any(u.email == producer_email for u in users)
        ):
            seen.add(producer_email)
            pairs.append((channel, producer_email))
    return pairs


def _log_sweep(counts: SweepCounts) -> None:
    for workflow, held in sorted(counts.workflows_unavailable.items()):
        _log().warning(
            "sweep.workflow_unavailable",
            workflow=workflow,
            problem=held["problem"],
            timers_held=held["timers_held"],
        )
    document = counts.document()
    if any(document.values()):
        _log().info("sweep.done", **document)


def _log() -> Any:
    import structlog

    return structlog.get_logger("ocop.sweep")
