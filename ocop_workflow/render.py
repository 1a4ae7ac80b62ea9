"""Human output: aligned tables that keep Vietnamese text intact, and time formatting.

Column widths count display cells, not code points: combining marks take none and wide (East
Asian) characters take two, so tables line up in a terminal whatever the text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
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
