"""The government's day-off decisions (``data/vn-days-off.toml``) and a province's own days.

The ``holidays`` package knows the Labour Code's holidays; it cannot know the swaps the Prime
Minister approves each year (a Friday off, a Saturday worked) nor a province's own days off. Both
are data with a source: every entry names the text that made it, and every entry is checked on
load — a day-off list that silently drops an entry would move every deadline of the office.

The :attr:`CalendarData.fingerprint` is a SHA-256 of everything that decides which days are
worked (the decisions, the local days, the ``holidays`` package version): deadlines are stored
with the fingerprint they were planned under, so a decision added later is noticed and the
dossiers it touches are re-planned (``sweep.replan_for_calendar``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any

from .errors import ConfigError

#: The shipped decisions of the country code ``VN``.
PACKAGE_FILE = "vn-days-off.toml"
STATUSES = ("off", "worked")
_MAX_TEXT = 500
#: Vietnamese weekday names, Monday first (``date.weekday()`` order); locale-independent.
WEEKDAY_NAMES = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")


@dataclass(frozen=True)
class DayDecision:
    """One day decided by a text: ``off`` (not worked) or worked (a Saturday made a workday)."""

    day: date
    off: bool
    name: str
    source: str
    local: bool = False

    def document(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "name": self.name, "source": self.source}


@dataclass(frozen=True)
class Unconfirmed:
    """A ``holidays`` package entry no text in force supports: counted as an ordinary day."""

    reason: str
    day: date | None = None
    name: str | None = None
    since: int | None = None

    def covers(self, day: date, package_name: str | None) -> bool:
        if self.day is not None:
            return day == self.day
        return (
            package_name is not None
            and self.name is not None
            and self.name in package_name
            and (self.since is None or day.year >= self.since)
        )


@dataclass(frozen=True)
class Period:
    """An announced holiday period (Tết): every day from ``start`` to ``end`` is off."""

    start: date
    end: date
    name: str
    source: str


@dataclass(frozen=True)
class CalendarData:
    days: Mapping[date, DayDecision] = field(default_factory=dict)
    periods: tuple[Period, ...] = ()
    unconfirmed: tuple[Unconfirmed, ...] = ()
    fingerprint: str = ""

    def unconfirmed_for(self, day: date, package_name: str | None) -> Unconfirmed | None:
        return next((u for u in self.unconfirmed if u.covers(day, package_name)), None)


def load(country: str, local: Iterable[DayDecision] = ()) -> CalendarData:
    """The shipped decisions of ``country`` (none for a country without a file) plus ``local``."""
    raw: dict[str, Any] = {}
    if country.upper() == "VN":
        text = resources.files("ocop_workflow").joinpath("data", PACKAGE_FILE).read_text("utf-8")
        raw = tomllib.loads(text)
    return build(raw, f"ocop_workflow/data/{PACKAGE_FILE}", tuple(local), country)


def build(
    raw: Mapping[str, Any], where: str, local: tuple[DayDecision, ...], country: str = "VN"
) -> CalendarData:
    """Check a decisions table (as read from TOML) and merge the local days over it."""
    unknown = set(raw) - {"day", "period", "not_confirmed"}
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}")
    days: dict[date, DayDecision] = {}
    for index, entry in enumerate(_tables(raw, "day", where)):
        decision = parse_day(entry, f"{where}: day[{index}]", local=False, checked_key=True)
        if decision.day in days:
            raise ConfigError(f"{where}: day[{index}]: {decision.day} is listed twice")
        days[decision.day] = decision
    periods: list[Period] = []
    for index, entry in enumerate(_tables(raw, "period", where)):
        item = f"{where}: period[{index}]"
        _only(entry, item, {"from", "to", "name", "source", "checked"})
        start, end = _date(entry, "from", item), _date(entry, "to", item)
        if end < start or (end - start).days > 15:
            raise ConfigError(f"{item}: 'to' must be on or after 'from', within 15 days")
        periods.append(Period(start, end, _text(entry, "name", item), _text(entry, "source", item)))
    unconfirmed: list[Unconfirmed] = []
    for index, entry in enumerate(_tables(raw, "not_confirmed", where)):
        item = f"{where}: not_confirmed[{index}]"
        _only(entry, item, {"date", "name", "since", "reason"})
        reason = _text(entry, "reason", item)
        if "date" in entry:
            unconfirmed.append(Unconfirmed(reason, day=_date(entry, "date", item)))
        else:
            since = entry.get("since")
            if not isinstance(since, int) or isinstance(since, bool):
                raise ConfigError(f"{item}: give 'date', or 'name' and 'since' (a year)")
            unconfirmed.append(Unconfirmed(reason, name=_text(entry, "name", item), since=since))
    for decision in local:
        national = days.get(decision.day)
        if national is not None:
            raise ConfigError(
                f"config key 'calendar.days': {decision.day} is already decided nationally "
                f"({national.name}; {national.source}): a local entry cannot change it"
            )
        days[decision.day] = decision
    period_days = {
        start + timedelta(days=k): p
        for p in periods
        for start in (p.start,)
        for k in range((p.end - p.start).days + 1)
    }
    clash = sorted(d for d, p in period_days.items() if d in days and not days[d].off)
    if clash:
        raise ConfigError(f"{where}: {clash[0]} is both worked and inside an announced period")
    fingerprint = _fingerprint(country, days, periods, unconfirmed)
    return CalendarData(days, tuple(periods), tuple(unconfirmed), fingerprint)


def parse_local(raw: Any) -> tuple[DayDecision, ...]:
    """``[calendar] days = [...]`` of config.toml: a province's own days, each with a source."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("config key 'calendar' must be a table")
    for key in raw:
        if key != "days":
            raise ConfigError(
                f"unknown config key 'calendar.{key}' (known keys of [calendar]: days)"
            )
    entries = raw.get("days", [])
    if not isinstance(entries, list):
        raise ConfigError("config key 'calendar.days' must be a list of tables ([[calendar.days]])")
    out: dict[date, DayDecision] = {}
    for index, entry in enumerate(entries):
        item = f"config key 'calendar.days[{index}]'"
        if not isinstance(entry, dict):
            raise ConfigError(f"{item} must be a table with date, status, name, source")
        decision = parse_day(entry, item, local=True, checked_key=False)
        if decision.day in out:
            raise ConfigError(f"{item}: {decision.day} is listed twice")
        out[decision.day] = decision
    return tuple(out.values())


def parse_day(
    entry: Mapping[str, Any], item: str, *, local: bool, checked_key: bool
) -> DayDecision:
    keys = {"date", "status", "name", "source"} | ({"checked"} if checked_key else set())
    _only(entry, item, keys)
    day = _date(entry, "date", item)
    status = entry.get("status")
    if status not in STATUSES:
        raise ConfigError(f'{item}: \'status\' must be "off" or "worked", not {status!r}')
    off = status == "off"
    if off and day.weekday() >= 5:
        raise ConfigError(f"{item}: {day} is a {_weekday(day)}: a weekend day is off already")
    if not off and day.weekday() < 5:
        raise ConfigError(
            f"{item}: {day} is a {_weekday(day)}: only a Saturday or Sunday can be made worked"
        )
    return DayDecision(day, off, _text(entry, "name", item), _text(entry, "source", item), local)


def _tables(raw: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return value


def _only(entry: Mapping[str, Any], item: str, keys: set[str]) -> None:
    for key in entry:
        if key not in keys:
            raise ConfigError(f"{item}: unknown key '{key}' (known: {', '.join(sorted(keys))})")


def _date(entry: Mapping[str, Any], key: str, item: str) -> date:
    value = entry.get(key)
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{item}: '{key}' must be a date YYYY-MM-DD, not {value!r}") from None
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ConfigError(f"{item}: '{key}' must be a date YYYY-MM-DD, not {value!r}")
    if not 1990 <= value.year <= 2100:
        raise ConfigError(f"{item}: '{key}' {value} is outside 1990-2100")
    return value


def _text(entry: Mapping[str, Any], key: str, item: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{item}: '{key}' is required (a non-empty text)")
    from .errors import UsageError
    from .inputs import check_text

    try:  # one line; no control, DEL, C1 or bidirectional characters (shown in every deadline)
        check_text(value, key, max_len=_MAX_TEXT)
    except UsageError as exc:
        raise ConfigError(
            f"{item}: '{key}' must be one line of at most {_MAX_TEXT} characters ({exc.message})"
        ) from None
    return value.strip()


def _weekday(day: date) -> str:
    return WEEKDAY_NAMES[day.weekday()]


def _fingerprint(
    country: str,
    days: Mapping[date, DayDecision],
    periods: list[Period],
    unconfirmed: list[Unconfirmed],
) -> str:
    import holidays

    body = {
        "country": country.upper(),
        "holidays": holidays.__version__,
        "days": sorted((d.isoformat(), v.off, v.name, v.source) for d, v in days.items()),
        "periods": sorted((p.start.isoformat(), p.end.isoformat(), p.name) for p in periods),
        "not_confirmed": sorted((str(u.day), u.name or "", u.since or 0) for u in unconfirmed),
    }
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
