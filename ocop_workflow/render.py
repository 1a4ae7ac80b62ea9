"""Human output: aligned tables that keep Vietnamese text intact, and time formatting.

Column widths count display cells, not code points: combining marks take none and wide (East
Asian) characters take two, so tables line up in a terminal whatever the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any


def cells(text: str) -> int:
    width = 0
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int) -> str:
    return text + " " * (width - cells(text))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = [[_text(v) for v in row] for row in rows]
    widths = [cells(h) for h in headers]
    for row in body:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], cells(value))
    lines = ["  ".join(pad(h.upper(), w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in body:
        lines.append("  ".join(pad(v, w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def when(instant: datetime | None, tz: tzinfo) -> str | None:
    """An instant for JSON: ISO 8601 in the business time zone, with its offset."""
    return None if instant is None else instant.astimezone(tz).isoformat()


def short(instant: datetime | None, tz: tzinfo) -> str:
    """An instant for a table: local date and minute."""
    return "-" if instant is None else instant.astimezone(tz).strftime("%Y-%m-%d %H:%M")


_FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})\.\d+")


def to_the_second(text: str | None) -> str:
    """An ISO instant for people: no fraction of a second (JSON keeps what is stored)."""
    return "-" if text is None else _FRACTION.sub(r"\1", str(text))


def days_off_text(off: Iterable[Sequence[str]], weekend_names: Iterable[str]) -> str:
    """Every day off a deadline skipped, grouped: weekends counted, the others named.

    ``off`` is ``[(ISO date, name), …]``. Named days (holidays, days off granted by decision,
    swapped days) run together when they share a name and nothing but days off lies between
    them: "Tết Nguyên Đán 2026-02-17 to 2026-02-20 (4 days)".
    """
    days = [(date.fromisoformat(str(day)), str(why)) for day, why in off]
    weekend = set(weekend_names)
    all_off = {day for day, _ in days}
    groups: list[list[Any]] = []  # [first, last, name, count]
    for day, why in sorted(d for d in days if d[1] not in weekend):
        if groups and groups[-1][2] == why:
            last = groups[-1][1]
            gap = (day - last).days
            if all(last + timedelta(days=k) in all_off for k in range(1, gap)):
                groups[-1][1] = day
                groups[-1][3] += 1
                continue
        groups.append([day, day, why, 1])
    parts = []
    weekends = sum(1 for _, why in days if why in weekend)
    if weekends:
        parts.append(f"{weekends} weekend day{'s' if weekends > 1 else ''}")
    for first, last, why, count in groups:
        parts.append(f"{why} {first}" if count == 1 else f"{why} {first} to {last} ({count} days)")
    total = len(days)
    return f"skipping {total} day{'s' if total != 1 else ''} off: " + "; ".join(parts)
