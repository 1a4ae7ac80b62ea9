"""Working days in the business time zone: the ``holidays`` package under government decisions.

Vietnamese administrative deadlines count working days (ngày làm việc): weekends and public
holidays, including observed and substituted days off, do not count; make-up Saturdays do. The
Labour Code's holidays come from the ``holidays`` package; the government's yearly swaps, the
announced Tết periods and a province's own days come from :mod:`calendar_data`, which decides a
date over the package (and drops the package entries no text supports). Holiday data is loaded
lazily per year, so a calendar spanning decades costs only the years it touches.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from .calendar_data import WEEKDAY_NAMES, CalendarData, DayDecision
from .errors import ConfigError

_DAY = timedelta(days=1)
_T = TypeVar("_T")
#: Entries ``WorkCalendar.memo`` holds at most (a few per state with a deadline and day).
MEMO_LIMIT = 4096


@dataclass(frozen=True)
class DayOff:
    day: date
    why: str


LABOUR_CODE = "Bộ luật Lao động 2019, Điều 112"
LABOUR_CODE_2012 = "Bộ luật Lao động 2012, Điều 115"

#: The names of Saturday and Sunday (``calendar_data.WEEKDAY_NAMES``).
WEEKEND_NAMES = frozenset(WEEKDAY_NAMES[5:])


class WorkCalendar:
    """Working-day arithmetic for one country's holidays in one time zone."""

    def __init__(
        self,
        timezone: str = "Asia/Ho_Chi_Minh",
        country: str = "VN",
        local: tuple[DayDecision, ...] = (),
        data: CalendarData | None = None,
    ) -> None:
        import holidays

        from . import calendar_data

        self.tz = ZoneInfo(timezone)
        self.country = country
        self.data = data if data is not None else calendar_data.load(country, local)
        self._period_days = {
            p.start + timedelta(days=k): p
            for p in self.data.periods
            for k in range((p.end - p.start).days + 1)
        }
        self._working: dict[date, bool] = {}
        self._after: dict[tuple[date, int], date] = {}
        self._off_between: dict[tuple[date, date], tuple[DayOff, ...]] = {}
        #: Results computed from this calendar and a few hashable inputs (the deadlines of
        #: :mod:`timers`), shared by every dossier that needs the same one; see ``remember``.
        self.memo: dict[Hashable, Any] = {}
        try:
            # Holiday names in Vietnamese where the country's calendar has them: officers read
            # "Mùng hai Tết Nguyên Đán" in `dossier show`, not "Lunar New Year".
            languages = getattr(getattr(holidays, country, None), "supported_languages", ())
            self._holidays: Any = holidays.country_holidays(
                country, language="vi" if "vi" in languages else None
            )
        except NotImplementedError:
            raise ConfigError(
                f"config key 'engine.holidays': unknown country '{country}'"
            ) from None

    # --- days -----------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """SHA-256 of what decides the working days; stored with every planned deadline."""
        return self.data.fingerprint

    def is_working_day(self, day: date) -> bool:
        # Remembered: a deadline computation asks about the same few weeks thousands of times.
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = self._decide(day)
        return known

    def _decide(self, day: date) -> bool:
        decision = self.data.days.get(day)
        if decision is not None:
            return not decision.off
        if day in self._period_days:
            return False
        if self.data.unconfirmed_for(day, self._package_name(day)) is not None:
            return day.weekday() < 5
        return bool(self._holidays.is_working_day(day))

    def _package_name(self, day: date) -> str | None:
        name = self._holidays.get(day)
        if name:
            return str(name)
        if day.weekday() >= 5 and self._holidays.is_working_day(day):
            return "làm bù"  # a make-up Saturday of the package
        return None

    def why_off(self, day: date) -> str | None:
        """Why ``day`` is not worked (holiday name, or the weekday), None for a working day."""
        if self.is_working_day(day):
            return None
        named = self.named(day)
        if named is None or (
            day.weekday() >= 5 and day not in self.data.days and self._package_name(day) is None
        ):
            return WEEKDAY_NAMES[day.weekday()]  # a weekend inside a Tết period is a weekend
        return named[0]

    def named(self, day: date) -> tuple[str, str] | None:
        """(name, source) of a day some text makes off or worked; None for an ordinary day."""
        decision = self.data.days.get(day)
        if decision is not None:
            return decision.name, decision.source
        period = self._period_days.get(day)
        package = self._package_name(day)
        if package is not None and self.data.unconfirmed_for(day, package) is not None:
            package = None
        if period is not None:
            return (package or period.name), period.source
        if package is None or package == "làm bù":
            if package == "làm bù":
                return "Làm bù", LABOUR_CODE + " (gói holidays)"
            return None
        return package, LABOUR_CODE if day.year >= 2021 else LABOUR_CODE_2012

    def year(self, year: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """Every named day off and every worked weekend day of ``year``: (days_off, worked)."""
        days_off: list[dict[str, str]] = []
        worked: list[dict[str, str]] = []
        day = date(year, 1, 1)
        while day.year == year:
            named = self.named(day)
            if named is not None:
                entry = {"date": day.isoformat(), "name": named[0], "source": named[1]}
                if not self.is_working_day(day):
                    days_off.append(entry)
                elif day.weekday() >= 5:
                    worked.append(entry)
            day += _DAY
        return days_off, worked

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after ``start`` (``start`` itself not counted); n=0 → start."""
        if n < 0:
            raise ValueError("n must be >= 0")
        found = self._after.get((start, n))
        if found is not None:
            return found
        day, left = start, n
        while left > 0:
            day += _DAY
            if self.is_working_day(day):
                left -= 1
        self._after[(start, n)] = day
        return day

    def working_day_counting_back(self, last: date, k: int) -> date:
        """The k-th working day counting back from ``last`` inclusive (k=1 → ``last``)."""
        if k < 1:
            raise ValueError("k must be >= 1")
        day = last
        while not self.is_working_day(day):
            day -= _DAY
        while k > 1:
            day -= _DAY
            if self.is_working_day(day):
                k -= 1
        return day

    def days_off_between(self, start: date, end: date) -> list[DayOff]:
        """Non-working days strictly after ``start`` up to ``end`` inclusive, with the reason."""
        # Remembered: every advance into a timed state explains the same few weeks again.
        known = self._off_between.get((start, end))
        if known is None:
            out: list[DayOff] = []
            day = start + _DAY
            while day <= end:
                why = self.why_off(day)
                if why is not None:
                    out.append(DayOff(day, why))
                day += _DAY
            known = self._off_between[(start, end)] = tuple(out)
        return list(known)

    def remember(self, key: Hashable, value: _T) -> _T:
        """Keep ``value`` in ``memo`` under ``key``; the memo is emptied when it grows past
        ``MEMO_LIMIT`` entries, so a worker running for years does not keep every day's plan."""
        if len(self.memo) >= MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = value
        return value

    # --- instants -------------------------------------------------------------------------

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def at(self, day: date, clock: time = time(0, 0)) -> datetime:
        """``day`` at ``clock`` in the business time zone, as an aware UTC instant."""
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(UTC)

    def end_of(self, day: date) -> datetime:
        """The instant ``day`` is over: 00:00 local on the next calendar day."""
        return self.at(day + _DAY)


def add_months(day: date, months: int) -> date:
    """Calendar-month arithmetic that clamps: 31 Jan + 1 month = 28/29 Feb."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    last = _stdlib_calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))
