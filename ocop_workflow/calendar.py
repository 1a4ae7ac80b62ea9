"""Working days in the business time zone, from the ``holidays`` package's calendar.

Vietnamese administrative deadlines count working days (ngày làm việc): weekends and public
holidays, including observed and substituted days off, do not count; make-up Saturdays
(``weekend_workdays``) do. Holiday data is loaded lazily per year, so importing this module is
cheap and a calendar spanning decades costs only the years it touches.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .errors import ConfigError

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DayOff:
    day: date
    why: str


#: Vietnamese weekday names, Monday first (``date.weekday()`` order); locale-independent.
WEEKDAY_NAMES = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
WEEKEND_NAMES = frozenset(WEEKDAY_NAMES[5:])


class WorkCalendar:
    """Working-day arithmetic for one country's holidays in one time zone."""

    def __init__(self, timezone: str = "Asia/Ho_Chi_Minh", country: str = "VN") -> None:
        import holidays

        self.tz = ZoneInfo(timezone)
        self.country = country
        self._working: dict[date, bool] = {}
        self._after: dict[tuple[date, int], date] = {}
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

    def is_working_day(self, day: date) -> bool:
        # Remembered: a deadline computation asks about the same few weeks thousands of times.
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = bool(self._holidays.is_working_day(day))
        return known

    def why_off(self, day: date) -> str | None:
        """Why ``day`` is not worked (holiday name, or the weekday), None for a working day."""
        if self.is_working_day(day):
            return None
        name = self._holidays.get(day)
        return str(name) if name else WEEKDAY_NAMES[day.weekday()]

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
        out: list[DayOff] = []
        day = start + _DAY
        while day <= end:
            why = self.why_off(day)
            if why is not None:
                out.append(DayOff(day, why))
            day += _DAY
        return out

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
