"""Re-planning deadlines when the calendar changes under them (a day-off decision added later).

Every dossier stores the fingerprint of the calendar its pending timers were planned under
(``dossier.calendar_fingerprint``). When the government announces a swap after dossiers were
planned — or an office adds a local day off, or the ``holidays`` package is upgraded — the
fingerprint no longer matches; the next sweep re-plans those dossiers' timers from their state
entry, exactly as entering the state now would, so a deadline never falls on a day off.

A dossier whose deadline actually moves gets a ``replan`` entry in its audit chain (actor
``system``, from = to = its state, the reason naming the old and new last day and the days off
that moved it): a deadline that changes is never silent. One whose timers come out the same just
records the new fingerprint. A deadline already passed (its deadline timer fired) is left as it
was: the dossier is overdue under the calendar that held when it fell due.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import audit, timers
from .config import SYSTEM_ACTOR
from .errors import OcopError
from .store import dossier_t, dumps, timer_t

if TYPE_CHECKING:
    from .engine import Engine

REPLAN_TRIGGER = "replan"
#: After a scan finds nothing to re-plan, the same engine (a worker's) skips the scan for this
#: long. Every writer stamps its calendar's fingerprint on the dossiers it plans, so only a
#: process running another calendar can leave work behind, and the scan reads the whole dossier
#: table: an idle sweep must stay in milliseconds (bench/sweep.py, ``empty_sweep_ms``).
RECHECK_AFTER = timedelta(minutes=5)
_DEADLINE_KINDS = frozenset({"deadline", "expiry"})
_REMINDER_KINDS = frozenset({"reminder", "expiry_notice"})


def replan_for_calendar(engine: Engine, now: datetime, *, limit: int = 500) -> int:
    """Re-plan every dossier planned under another calendar; returns how many deadlines moved.

    A long-running worker keeps the calendar of its start. If config.toml's calendar changed
    since, its calendar is stale: re-planning with it would move back what the officers' commands
    (reading the new config) just planned, so it re-plans nothing and says to restart it.
    """
    fingerprint = engine.calendar.fingerprint
    clean = engine.__dict__.get("_replan_clean")
    if clean is not None and clean[0] == fingerprint and clean[1] <= now < clean[1] + RECHECK_AFTER:
        return 0  # (before reading config.toml again: an idle sweep stays in milliseconds)
    if _config_drifted(engine):
        _log().warning(
            "replan.config_changed",
            config=str(engine.config.path),
            hint="the calendar in config.toml changed since this process started: restart it",
        )
        return 0
    moved = 0
    skipped: list[str] = []
    while True:
        with engine.store.write() as conn:
            query = (
                sa.select(dossier_t)
                .where(
                    sa.or_(
                        dossier_t.c.calendar_fingerprint.is_(None),
                        dossier_t.c.calendar_fingerprint != fingerprint,
                    )
                )
                .order_by(dossier_t.c.id)
                .limit(limit)
            )
            if skipped:
                query = query.where(dossier_t.c.id.notin_(skipped))
            rows = conn.execute(engine.store.claim_query(query)).all()
            if not rows:
                if not skipped:
                    engine.__dict__["_replan_clean"] = (fingerprint, now)
                return moved
            for row in rows:
                try:
                    if _replan_one(engine, conn, dict(row._mapping), now, fingerprint):
                        moved += 1
                except OcopError as exc:  # its workflow file is broken: leave it, say so
                    skipped.append(row.id)
                    _log().warning("replan.skipped", dossier=row.id, error=exc.message)


def _replan_one(
    engine: Engine, conn: Connection, row: dict[str, Any], now: datetime, fingerprint: str
) -> bool:
    cal = engine.calendar
    pending = conn.execute(
        sa.select(timer_t).where(
            timer_t.c.dossier_id == row["id"],
            timer_t.c.status == "pending",
            timer_t.c.entry_seq == row["state_entry_seq"],
        )
    ).all()
    state = None
    if any(t.kind in _DEADLINE_KINDS for t in pending):
        state = engine.registry.get(row["workflow"]).states.get(row["state"])
    if state is None:  # nothing still to come that a calendar decides
        _mark(conn, row, fingerprint)
        return False
    data = json.loads(row["data"])
    deadline, planned = timers.plan(
        state,
        dossier_id=row["id"],
        entry_seq=row["state_entry_seq"],
        entered_at=row["state_entered_at"],
        data=data,
        cal=cal,
    )
    kept = [
        {**r, "created_at": now}
        for r in planned
        if r["kind"] not in _REMINDER_KINDS or r["due_at"] > now
    ]
    if _same(pending, kept) and _at(row["deadline_at"]) == (deadline.at if deadline else None):
        _mark(conn, row, fingerprint)
        return False
    conn.execute(
        timer_t.update().where(timer_t.c.id.in_([t.id for t in pending])).values(status="cancelled")
    )
    if kept:
        conn.execute(timer_t.insert(), timers.mark_waking(kept))
    old_last = _last_day(row)
    new_last = deadline.last_day if deadline else None
    start = date.fromisoformat(deadline.note["start"]) if deadline else None
    reason = _reason(engine, start, old_last, new_last, legacy=row["calendar_fingerprint"] is None)
    from .engine import snapshot

    after = dict(data)
    if (
        state.deadline is not None
        and state.deadline.certificate
        and old_last is not None
        and new_last is not None
        and data.get("valid_until") == old_last.isoformat()
    ):
        # the certificate's "valid until" was the old count's last day: it follows the new count
        after["valid_until"] = new_last.isoformat()
    changes = {
        "data": dumps(after),
        "deadline_at": deadline.at if deadline else row["deadline_at"],
        "deadline_note": timers.deadline_note_json(deadline) if deadline else row["deadline_note"],
        "calendar_fingerprint": fingerprint,
        "version": row["version"] + 1,
        "updated_at": now,
    }
    audit.append(
        conn,
        dossier_id=row["id"],
        trigger=REPLAN_TRIGGER,
        from_state=row["state"],
        to_state=row["state"],
        actor=SYSTEM_ACTOR,
        reason=reason,
        at=now,
        data_after=snapshot({**row, **changes}, after),
    )
    conn.execute(dossier_t.update().where(dossier_t.c.id == row["id"]).values(**changes))
    _log().info("dossier.replanned", dossier=row["id"], reason=reason)
    return True


def _config_drifted(engine: Engine) -> bool:
    """Whether config.toml's calendar is no longer the one this process runs on.

    The file is read again with no environment: what is compared (the calendar, its holidays
    and time zone) comes from the file alone — the variables a config reads
    (``OCOP_DATABASE_URL``, the channels' secrets) neither set it nor fail a load — and the
    sweep, below the edges, reads no environment of its own."""
    from .config import load_config

    path = engine.config.path
    if not path.is_file():  # a config built in memory (tests, the library): nothing to compare
        return False
    try:
        fresh = load_config(path, env={})
    except OcopError:
        return True  # a broken file now: certainly not the calendar this process runs on
    return (fresh.calendar_days, fresh.holidays, fresh.timezone) != (
        engine.config.calendar_days,
        engine.config.holidays,
        engine.config.timezone,
    )


def _mark(conn: Connection, row: dict[str, Any], fingerprint: str) -> None:
    conn.execute(
        dossier_t.update()
        .where(dossier_t.c.id == row["id"])
        .values(calendar_fingerprint=fingerprint)
    )


def _same(pending: Sequence[Any], planned: Sequence[dict[str, Any]]) -> bool:
    old = sorted((t.kind, _at(t.due_at)) for t in pending)
    new = sorted((r["kind"], _at(r["due_at"])) for r in planned)
    return old == new


def _at(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0)


def _last_day(row: dict[str, Any]) -> date | None:
    try:
        note = json.loads(row["deadline_note"] or "{}")
        return date.fromisoformat(note["last_day"])
    except (ValueError, KeyError, TypeError):
        return None


def _reason(
    engine: Engine, start: date | None, old: date | None, new: date | None, *, legacy: bool
) -> str:
    """Vietnamese, for the officer reading the history: what moved, and which days did it.

    ``legacy``: planned before calendars were recorded (schema before 0003), so the change may
    also come from how periods are counted now (months: Civil Code Art. 147-148), not a new
    decision — the text says so instead of claiming the calendar changed.
    """
    cal = engine.calendar
    cause = (
        "Hạn được tính lại theo lịch ngày nghỉ và cách tính thời hạn hiện hành"
        if legacy
        else "Lịch ngày nghỉ thay đổi, hạn được tính lại"
    )
    text = (
        f"{cause}: ngày cuối "
        f"{old.strftime('%d/%m/%Y') if old else '?'} → {new.strftime('%d/%m/%Y') if new else '?'}"
    )
    if start and old and new:
        named = [
            f"{d.day.strftime('%d/%m/%Y')} {d.why} ({src[1]})"
            for d in cal.days_off_between(start, max(old, new))
            if (src := cal.named(d.day)) is not None and d.day.weekday() < 5
        ]
        if named:
            text += "; ngày nghỉ: " + "; ".join(named)
    return text


def _log() -> Any:
    import structlog

    return structlog.get_logger("ocop")
