"""Timers: planned as rows when a dossier enters a state, fired by the sweep when due.

The row is the truth; APScheduler only wakes the sweep (scheduler.py). Entering a state inserts
its reminders, its deadline (or certificate expiry) and its first escalation, each remembering the
audit entry (``entry_seq``) that created it; leaving the state cancels them. A sweep fires what is
due once, however long the machine was off: a reminder whose deadline has passed is superseded by
the deadline notice, and a repeating escalation that missed several repeats is sent once and
re-planned from now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .calendar import WorkCalendar, add_months

if TYPE_CHECKING:
    from .definitions import DeadlineDef, StateDef

#: How a period in months is counted, as ``dossier show`` explains it (Vietnamese, for officers).
CIVIL_CODE_MONTHS = (
    "Bộ luật Dân sự 2015, Điều 147–148: thời hạn tính bằng tháng bắt đầu từ ngày tiếp theo và "
    "kết thúc lúc 24 giờ ngày tương ứng của tháng cuối cùng (hết ngày cuối tháng nếu tháng đó "
    "không có ngày tương ứng)"
)

#: Office reminders and escalations go out at the start of the working day, local time.
OFFICE_HOUR = time(8, 0)


@dataclass(frozen=True)
class Deadline:
    """A computed deadline: the instant a dossier becomes overdue, and how it was reached."""

    at: datetime
    last_day: date
    note: dict[str, Any]

    @cached_property
    def note_json(self) -> str:
        """``note`` as the dossier row stores it (computed once: deadlines are shared, below)."""
        return json.dumps(self.note, ensure_ascii=False)

    @cached_property
    def note_canonical(self) -> str:
        """``note`` as an audit snapshot records it (``store.dumps``: sorted keys, compact),
        computed once for the dossiers sharing this deadline (``audit.entry_row``'s
        ``after_texts``)."""
        from .store import dumps

        return dumps(self.note)


#: The timers one deadline plans, without the per-dossier columns: (kind, due_at, auto_trigger,
#: repeat_working_days), in the order ``_rows`` inserts them.
_Planned = tuple[tuple[str, datetime, str | None, int | None], ...]


def compute_deadline(
    spec: DeadlineDef, entered_at: datetime, data: dict[str, Any], cal: WorkCalendar
) -> Deadline | None:
    """Deadline of ``spec`` for a state entered at ``entered_at``; None if its start is unknown.

    It depends only on ``spec`` and the start date, so it is computed once per (spec, start)
    for a calendar and shared (``WorkCalendar.memo``): on a busy day thousands of dossiers
    enter the same state and would otherwise count the same working days again, each time.

    N working days from an entry on day D end with the N-th working day after D; the dossier is
    overdue from 00:00 local the next day. Months count calendar months from the start date,
    clamped (31 Jan + 1 month = 28/29 Feb), and run through the end of the corresponding day
    (Civil Code Art. 147-148): the instant is 00:00 local the day after it.
    """
    start = _start(spec, entered_at, data, cal)
    return None if start is None else _deadline(spec, start, cal)[0]


def _start(
    spec: DeadlineDef, entered_at: datetime, data: Mapping[str, Any], cal: WorkCalendar
) -> date | None:
    """The day a deadline counts from: its data field's date, else the day of state entry."""
    if spec.from_field is not None:
        raw = data.get(spec.from_field)
        if raw is None:
            return None
        return date.fromisoformat(str(raw))
    return cal.local_date(entered_at)


def _deadline(spec: DeadlineDef, start: date, cal: WorkCalendar) -> tuple[Deadline, _Planned]:
    """The deadline of ``spec`` from ``start`` and the timers it plans, remembered per calendar."""
    key = ("deadline", spec, start)
    found: tuple[Deadline, _Planned] | None = cal.memo.get(key)
    if found is None:
        deadline = _compute(spec, start, cal)
        found = cal.remember(key, (deadline, _planned(spec, deadline, cal)))
    return found


def _compute(spec: DeadlineDef, start: date, cal: WorkCalendar) -> Deadline:
    note: dict[str, Any] = {
        "rule": spec.describe(),
        "basis": spec.basis,
        "start": start.isoformat(),
    }
    if spec.unit == "working_days":
        last_day = cal.add_working_days(start, spec.amount)
        at = cal.end_of(last_day)
        note["days_off"] = [
            [d.day.isoformat(), d.why] for d in cal.days_off_between(start, last_day)
        ]
    elif spec.unit == "days":
        last_day = start + timedelta(days=spec.amount)
        at = cal.end_of(last_day)
    else:
        # Civil Code 2015 Art. 147-148: a period in months starts the day after the event and
        # ends at 24:00 of the corresponding day of its last month (the month's last day when
        # it has none): 36 months from 17/11/2020 run through the whole of 17/11/2023.
        last_day = add_months(start, spec.amount)
        at = cal.end_of(last_day)
        note["period"] = CIVIL_CODE_MONTHS
    note["last_day"] = last_day.isoformat()
    return Deadline(at=at, last_day=last_day, note=note)


def plan(
    state: StateDef,
    *,
    dossier_id: str,
    entry_seq: int,
    entered_at: datetime,
    data: dict[str, Any],
    cal: WorkCalendar,
) -> tuple[Deadline | None, list[dict[str, Any]]]:
    """The deadline of ``state`` and the timer rows to insert on entering it.

    Besides the state's own deadline, a state may *watch* a certificate (its expiry keeps being
    announced while a renewal or upgrade is evaluated); a watch never sets the dossier's deadline
    and never fires a trigger. A reminder already due at ``entered_at`` is not planned.
    """
    rows: list[dict[str, Any]] = []
    deadline = None
    specs = (state.deadline, *state.watches) if state.deadline is not None else state.watches
    for spec in specs:
        start = _start(spec, entered_at, data, cal)
        if start is None:
            continue
        found, planned = _deadline(spec, start, cal)
        if spec is state.deadline:
            deadline = found
        for kind, due, auto_trigger, repeat in planned:
            if kind in _REMINDERS and due <= entered_at:
                continue
            rows.append(
                {
                    "dossier_id": dossier_id,
                    "state": state.name,
                    "entry_seq": entry_seq,
                    "status": "pending",
                    "created_at": entered_at,
                    "auto_trigger": auto_trigger,
                    "repeat_working_days": repeat,
                    "deadline_at": found.at,
                    "kind": kind,
                    "due_at": due,
                }
            )
    return deadline, mark_waking(rows)


def mark_waking(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (one dossier's new timers) with ``wake`` 1 on the one due first, None on the rest.

    The sweep finds a dossier's due timers through its waking timer (``store.Timer.wake``), so
    every batch of timers inserted after the dossier's pending ones were cancelled must mark
    its earliest: call this again on a plan filtered after ``plan``.
    """
    first = None
    for row in rows:
        row["wake"] = None
        if first is None or row["due_at"] < first["due_at"]:  # the earliest; the first of ties
            first = row
    if first is not None:
        first["wake"] = 1
    return rows


_REMINDERS = frozenset({"reminder", "expiry_notice"})


def _planned(spec: DeadlineDef, deadline: Deadline, cal: WorkCalendar) -> _Planned:
    """The reminders (all of them: ``plan`` drops those already due), the deadline or expiry,
    and the first escalation of one deadline."""
    planned: list[tuple[str, datetime, str | None, int | None]] = []
    reminder_kind = "expiry_notice" if spec.certificate else "reminder"
    for offset in spec.remind_before:
        if spec.remind_unit == "working_days":
            due = cal.at(cal.working_day_counting_back(deadline.last_day, offset), OFFICE_HOUR)
        else:
            due = deadline.at - timedelta(days=offset)
        planned.append((reminder_kind, due, None, None))
    planned.append(
        ("expiry" if spec.certificate else "deadline", deadline.at, spec.on_expiry, None)
    )
    if spec.escalate_every is not None:
        due = next_escalation(deadline.last_day, spec.escalate_every, cal)
        planned.append(("escalation", due, None, spec.escalate_every))
    return tuple(planned)


def next_escalation(after: date, every: int, cal: WorkCalendar) -> datetime:
    """Start of the working day ``every`` working days after ``after``."""
    return cal.at(cal.add_working_days(after, every), OFFICE_HOUR)


def deadline_note_json(deadline: Deadline | None) -> str | None:
    return None if deadline is None else deadline.note_json
