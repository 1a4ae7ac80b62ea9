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


def minute(text: str | None) -> str:
    """An ISO instant already in the business time zone (a JSON document's) for people: its
    local date and minute, as the tables print them."""
    return "-" if text is None else str(text)[:16].replace("T", " ")


_FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})\.\d+")


def to_the_second(text: str | None) -> str:
    """An ISO instant for people: no fraction of a second (JSON keeps what is stored)."""
    return "-" if text is None else _FRACTION.sub(r"\1", str(text))


def days_off_text(off: Iterable[Sequence[str]], weekend_names: Iterable[str]) -> str:
    """Every day off a deadline skipped, grouped: weekends counted, the others named.

    ``off`` is ``[(ISO date, name), …]``. Named days (holidays, days off granted by decision,
    swapped days) in a row — nothing but days off between them — form one group when they share
    a name ("Quốc khánh 2026-09-01 to 2026-09-02 (2 days)") or the end of one ("Tết Nguyên Đán
    2026-02-16 to 2026-02-20 (5 days: Giao thừa, Tết Nguyên Đán, Mùng hai, Mùng ba, Mùng
    bốn)"), so each day is still named.
    """
    days = [(date.fromisoformat(str(day)), str(why)) for day, why in off]
    weekend = set(weekend_names)
    all_off = {day for day, _ in days}
    runs: list[list[tuple[date, str]]] = []
    for day, why in sorted(d for d in days if d[1] not in weekend):
        if runs:
            last = runs[-1][-1][0]
            if all(last + timedelta(days=k) in all_off for k in range(1, (day - last).days)):
                runs[-1].append((day, why))
                continue
        runs.append([(day, why)])
    parts = []
    weekends = sum(1 for _, why in days if why in weekend)
    if weekends:
        parts.append(f"{weekends} weekend day{'s' if weekends > 1 else ''}")
    for run in runs:
        parts.extend(_run_text(run))
    total = len(days)
    return f"skipping {total} day{'s' if total != 1 else ''} off: " + "; ".join(parts)


def _run_text(run: list[tuple[date, str]]) -> list[str]:
    """One consecutive run of named days off, as few phrases as keep every name."""
    names = [why for _, why in run]
    first, last, count = run[0][0], run[-1][0], len(run)
    if len(set(names)) == 1:
        why = names[0]
        return [f"{why} {first}" if count == 1 else f"{why} {first} to {last} ({count} days)"]
    family = _shared_end([why.split() for why in names])
    if len(family) >= 2:
        tail = " ".join(family)
        each = [" ".join(why.split()[: len(why.split()) - len(family)]) or tail for why in names]
        return [f"{tail} {first} to {last} ({count} days: {', '.join(each)})"]
    out: list[str] = []
    start = 0
    for k in range(1, count + 1):  # same-named days in a row, each stretch on its own
        if k == count or names[k] != names[start]:
            out.extend(
                _run_text(run[start:k]) if k - start > 1 else [f"{names[start]} {run[start][0]}"]
            )
            start = k
    return out


def _shared_end(phrases: list[list[str]]) -> list[str]:
    """The words every phrase ends with ("Tết Nguyên Đán" of "Mùng hai Tết Nguyên Đán" …)."""
    shortest = min(len(p) for p in phrases)
    n = 0
    while n < shortest and len({tuple(p[len(p) - n - 1 :]) for p in phrases}) == 1:
        n += 1
    return phrases[0][len(phrases[0]) - n :] if n else []
