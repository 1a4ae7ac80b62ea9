"""Working days in Vietnam and the deadlines counted in them (unit tests: no database, no server).

The holiday data comes from the ``holidays`` package's VN calendar: Tết, the Hùng Kings'
commemoration, 30 April, 1 May and National Day are off, observed and substituted days off too,
and make-up Saturdays (``weekend_workdays``) are worked.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import WORKFLOWS

from ocop_workflow.calendar import WorkCalendar, add_months
from ocop_workflow.definitions import Registry
from ocop_workflow.timers import compute_deadline, plan

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar("Asia/Ho_Chi_Minh", "VN")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(WORKFLOWS)


def local(text: str) -> datetime:
    """An instant written in Vietnamese local time, as the aware UTC datetime the core uses."""
    return datetime.fromisoformat(text).replace(tzinfo=HCM).astimezone(UTC)


# --- which days are worked ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 2, 16),  # Tết 2026: Lunar New Year's Eve (Monday) …
        date(2026, 2, 17),
        date(2026, 2, 18),
        date(2026, 2, 19),
        date(2026, 2, 20),  # … to the fourth day of Tết (Friday)
        date(2026, 4, 27),  # Hùng Kings' commemoration (26 April, a Sunday) observed on Monday
        date(2026, 4, 30),  # Liberation Day
        date(2026, 5, 1),  # International Labour Day
        date(2026, 8, 31),  # day off swapped for the make-up Saturday 22 August
        date(2026, 9, 1),  # National Day holiday
        date(2026, 9, 2),  # National Day
        date(2026, 1, 1),  # New Year's Day
    ],
)
def test_public_holidays_and_days_off_are_not_working_days(cal: WorkCalendar, day: date) -> None:
    assert day.weekday() < 5, "a weekday: only the holiday makes it a day off"
    assert not cal.is_working_day(day)
    assert cal.why_off(day) not in (None, "Thứ Bảy", "Chủ nhật")


def test_tet_2026_is_named_as_the_reason_for_each_day_off(cal: WorkCalendar) -> None:
    off = cal.days_off_between(date(2026, 2, 13), date(2026, 2, 23))
    days = [d.day for d in off]
    assert days == [date(2026, 2, d) for d in (14, 15, 16, 17, 18, 19, 20, 21, 22)]
    reasons = {d.day: d.why for d in off}
    assert reasons[date(2026, 2, 14)] == "Thứ Bảy"
    assert reasons[date(2026, 2, 15)] == "Chủ nhật"
    # in Vietnamese, as officers name them
    assert reasons[date(2026, 2, 16)] == "Giao thừa Tết Nguyên Đán"
    assert reasons[date(2026, 2, 18)] == "Mùng hai Tết Nguyên Đán"
    assert all("Tết Nguyên Đán" in reasons[date(2026, 2, d)] for d in range(16, 21))


def test_make_up_saturday_2026_01_10_is_a_working_day(cal: WorkCalendar) -> None:
    saturday = date(2026, 1, 10)
    assert saturday.weekday() == 5
    assert cal.is_working_day(saturday)
    assert cal.why_off(saturday) is None
    assert not cal.is_working_day(date(2026, 1, 17)), "an ordinary Saturday stays off"
    # The Friday before counts the make-up Saturday as its next working day.
    assert cal.add_working_days(date(2026, 1, 9), 1) == saturday


def test_ordinary_weekdays_are_working_days_and_weekends_are_not(cal: WorkCalendar) -> None:
    assert cal.is_working_day(date(2026, 3, 2))  # a Monday in March
    assert not cal.is_working_day(date(2026, 3, 7))
    assert cal.why_off(date(2026, 3, 7)) == "Thứ Bảy"
    assert cal.why_off(date(2026, 3, 8)) == "Chủ nhật"


# --- counting working days ----------------------------------------------------------------------


def test_adding_working_days_from_a_friday_skips_the_weekend(cal: WorkCalendar) -> None:
    friday = date(2026, 3, 6)
    assert cal.add_working_days(friday, 0) == friday
    assert cal.add_working_days(friday, 1) == date(2026, 3, 9)  # Monday
    assert cal.add_working_days(friday, 5) == date(2026, 3, 13)  # next Friday
    assert cal.add_working_days(friday, 6) == date(2026, 3, 16)


def test_adding_working_days_from_the_friday_before_tet_skips_the_whole_holiday(
    cal: WorkCalendar,
) -> None:
    friday = date(2026, 2, 13)
    assert cal.add_working_days(friday, 1) == date(2026, 2, 23)  # Monday after Tết
    assert cal.add_working_days(friday, 20) == date(2026, 3, 20)


def test_adding_working_days_across_30_april_and_1_may(cal: WorkCalendar) -> None:
    # Wed 29 April 2026 → Thu 30 Apr and Fri 1 May off, weekend → Mon 4 May is the first.
    assert cal.add_working_days(date(2026, 4, 29), 1) == date(2026, 5, 4)
    # Fri 24 April → Mon 27 (Hùng Kings observed) off → Tue 28 April is the first.
    assert cal.add_working_days(date(2026, 4, 24), 1) == date(2026, 4, 28)


def test_adding_working_days_across_holidays_counts_the_make_up_saturday(
    cal: WorkCalendar,
) -> None:
    # Fri 28 Aug 2026 → Mon 31 Aug (swapped), Tue 1 and Wed 2 Sep off → Thu 3 Sep.
    assert cal.add_working_days(date(2026, 8, 28), 1) == date(2026, 9, 3)
    # From Thu 20 Aug: Fri 21, Sat 22 (make-up), Mon 24 … three working days end on Mon 24.
    assert cal.add_working_days(date(2026, 8, 20), 3) == date(2026, 8, 24)
    # From Wed 7 Jan 2026: Thu 8, Fri 9, Sat 10 (make-up) … three working days end on Sat 10.
    assert cal.add_working_days(date(2026, 1, 7), 3) == date(2026, 1, 10)


def test_negative_working_days_are_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 3, 2), -1)
    with pytest.raises(ValueError):
        cal.working_day_counting_back(date(2026, 3, 2), 0)


def test_counting_back_includes_the_last_day_and_skips_days_off(cal: WorkCalendar) -> None:
    last = date(2026, 3, 20)  # a Friday
    assert cal.working_day_counting_back(last, 1) == last
    assert cal.working_day_counting_back(last, 5) == date(2026, 3, 16)
    assert cal.working_day_counting_back(last, 6) == date(2026, 3, 13)
    # From Mon 23 Feb, the first working day after Tết, back over Tết and the weekend.
    assert cal.working_day_counting_back(date(2026, 2, 23), 2) == date(2026, 2, 13)


def test_counting_back_from_a_day_off_starts_at_the_working_day_before_it(
    cal: WorkCalendar,
) -> None:
    assert cal.working_day_counting_back(date(2026, 2, 18), 1) == date(2026, 2, 13)
    assert cal.working_day_counting_back(date(2026, 3, 8), 1) == date(2026, 3, 6)


# --- calendar months ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 7, 1), 36, date(2029, 7, 1)),
        (date(2027, 2, 28), 36, date(2030, 2, 28)),
        (date(2028, 2, 29), 36, date(2031, 2, 28)),  # 29 Feb clamps in a common year
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
        (date(2026, 5, 10), 0, date(2026, 5, 10)),
    ],
)
def test_adding_months_clamps_to_the_end_of_a_shorter_month(
    start: date, months: int, expected: date
) -> None:
    assert add_months(start, months) == expected


# --- instants -----------------------------------------------------------------------------------


def test_the_end_of_a_day_is_midnight_local_which_is_17h_utc_the_day_before(
    cal: WorkCalendar,
) -> None:
    end = cal.end_of(date(2026, 3, 20))
    assert end == datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
    assert end.astimezone(HCM).isoformat() == "2026-03-21T00:00:00+07:00"
    assert cal.local_date(datetime(2026, 3, 20, 16, 59, tzinfo=UTC)) == date(2026, 3, 20)
    assert cal.local_date(datetime(2026, 3, 20, 17, 0, tzinfo=UTC)) == date(2026, 3, 21)


# --- deadlines of the shipped workflow ----------------------------------------------------------


def test_business_plan_entered_the_friday_before_tet_is_due_after_the_holiday(
    cal: WorkCalendar, registry: Registry
) -> None:
    spec = registry.get("ocop-1489").state("business_plan").deadline
    assert spec is not None
    deadline = compute_deadline(spec, local("2026-02-13T10:30"), {}, cal)
    assert deadline is not None
    assert deadline.last_day == date(2026, 3, 20)
    assert deadline.at == datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
    assert deadline.at.astimezone(HCM).isoformat() == "2026-03-21T00:00:00+07:00"
    note = deadline.note
    assert note["start"] == "2026-02-13"
    assert note["last_day"] == "2026-03-20"
    assert "20 working days" in note["rule"]
    off = dict((day, why) for day, why in note["days_off"])
    assert all(f"2026-02-{d}" in off for d in range(16, 21))
    assert off["2026-02-17"] == "Tết Nguyên Đán"
    # 5 weekdays of Tết plus 5 weekends between 13 Feb and 20 Mar.
    assert len(note["days_off"]) == 5 + 10


def test_an_entry_late_in_the_evening_counts_from_its_local_date(
    cal: WorkCalendar, registry: Registry
) -> None:
    """23:30 local on Friday 13 Feb is 16:30 UTC the same day; 00:30 local on Saturday 14 Feb is
    17:30 UTC on Friday 13 Feb — the local date decides, not the UTC one."""
    spec = registry.get("ocop-1489").state("business_plan").deadline
    assert spec is not None
    late_friday = compute_deadline(spec, local("2026-02-13T23:30"), {}, cal)
    early_saturday = compute_deadline(spec, local("2026-02-14T00:30"), {}, cal)
    assert late_friday is not None and early_saturday is not None
    assert late_friday.last_day == date(2026, 3, 20)
    # Saturday is not a working day: the count starts as from Saturday, the same 20th day.
    assert early_saturday.last_day == date(2026, 3, 20)
    early_monday_after_tet = compute_deadline(spec, local("2026-02-23T00:10"), {}, cal)
    assert early_monday_after_tet is not None
    assert early_monday_after_tet.last_day == date(2026, 3, 23)


def test_certificate_validity_runs_through_the_end_of_the_corresponding_day(
    cal: WorkCalendar, registry: Registry
) -> None:
    """Civil Code Art. 147-148: 36 months from 1/7/2026 end at 24:00 on 1/7/2029."""
    spec = registry.get("ocop-1489").state("promotion").deadline
    assert spec is not None
    issued = {"certified_on": "2026-07-01"}
    deadline = compute_deadline(spec, local("2026-07-01T09:00"), issued, cal)
    assert deadline is not None
    assert deadline.at.astimezone(HCM).isoformat() == "2029-07-02T00:00:00+07:00"
    assert deadline.last_day == date(2029, 7, 1)
    assert "Điều 147–148" in deadline.note["period"]
    # no corresponding day: the last day of that month (31/8/2026 + 6 months → 28/2/2027)
    short = compute_deadline(spec, local("2026-08-31T09:00"), {"certified_on": "2026-08-31"}, cal)
    assert short is not None and short.last_day == date(2029, 8, 31)
    # Without the issue date there is nothing to count from.
    assert compute_deadline(spec, local("2026-07-01T09:00"), {}, cal) is None


def test_planning_business_plan_timers_gives_reminders_deadline_and_escalation(
    cal: WorkCalendar, registry: Registry
) -> None:
    state = registry.get("ocop-1489").state("business_plan")
    entered = local("2026-02-13T10:30")
    deadline, rows = plan(
        state, dossier_id="OCOP-2026-0001", entry_seq=2, entered_at=entered, data={}, cal=cal
    )
    assert deadline is not None
    assert deadline.at.astimezone(HCM).isoformat() == "2026-03-21T00:00:00+07:00"
    planned = [(r["kind"], r["due_at"].astimezone(HCM).isoformat()) for r in rows]
    assert planned == [
        ("reminder", "2026-03-16T08:00:00+07:00"),  # 5 working days before, counting the last
        ("reminder", "2026-03-20T08:00:00+07:00"),  # 1 working day before: the last day itself
        ("deadline", "2026-03-21T00:00:00+07:00"),
        ("escalation", "2026-03-27T08:00:00+07:00"),  # 5 working days after the last day
    ]
    assert all(
        r["due_at"].tzinfo is not None and r["due_at"].utcoffset() == timedelta(0) for r in rows
    ), "stored in UTC"
    assert rows[2]["due_at"] == datetime(2026, 3, 20, 17, 0, tzinfo=UTC)
    assert {r["entry_seq"] for r in rows} == {2}
    assert {r["deadline_at"] for r in rows} == {deadline.at}
    assert rows[3]["repeat_working_days"] == 5
    assert all(r["auto_trigger"] is None for r in rows)


def test_planning_certificate_timers_gives_a_notice_30_days_before_and_the_expiry(
    cal: WorkCalendar, registry: Registry
) -> None:
    state = registry.get("ocop-1489").state("promotion")
    deadline, rows = plan(
        state,
        dossier_id="OCOP-2026-0001",
        entry_seq=9,
        entered_at=local("2026-07-01T09:00"),
        data={"certified_on": "2026-07-01"},
        cal=cal,
    )
    assert deadline is not None
    planned = [
        (r["kind"], r["due_at"].astimezone(HCM).isoformat(), r["auto_trigger"]) for r in rows
    ]
    assert planned == [
        ("expiry_notice", "2029-06-02T00:00:00+07:00", None),
        ("expiry", "2029-07-02T00:00:00+07:00", "expire"),
    ]


def test_reminders_already_past_at_entry_are_not_planned(
    cal: WorkCalendar, registry: Registry
) -> None:
    """A certificate re-evaluated 10 days before it lapses: the 30-day notice is history."""
    state = registry.get("ocop-1489").state("evaluation_commune")
    _, rows = plan(
        state,
        dossier_id="OCOP-2026-0001",
        entry_seq=12,
        entered_at=local("2029-06-21T09:00"),
        data={"certified_on": "2026-07-01"},
        cal=cal,
    )
    kinds = [r["kind"] for r in rows]
    assert "expiry_notice" not in kinds
    assert kinds.count("expiry") == 1
    expiry = next(r for r in rows if r["kind"] == "expiry")
    assert expiry["auto_trigger"] is None, "a watched certificate never fires a trigger"
    assert kinds.count("deadline") == 1
