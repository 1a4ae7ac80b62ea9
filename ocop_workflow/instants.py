"""Instants as SQLite holds them: naive UTC text, read back as aware UTC datetimes.

One function for the two read paths, ``store.SqliteWrites`` (the engine's writes) and
``sqlite_reads`` (the plain-``sqlite3`` reads, which must not import SQLAlchemy: it lives here,
in a module that imports nothing of the project).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def read_instant(text: Any) -> Any:
    """Stored text → aware UTC datetime (None and datetimes as they are), as SQLAlchemy's
    ``UTCDateTime`` reads the same text: naive text is UTC, text naming an offset is converted.

    SQLAlchemy writes naive UTC text (``2026-03-02 04:23:23.000000``): it is parsed with
    ``+00:00`` appended, several times cheaper than ``.replace(tzinfo=UTC)`` afterwards, and a
    page of dossiers holds many instants. Any other text (a date alone, which the parser would
    read as a naive midnight with ``+`` as the separator; one naming its own offset) is parsed
    alone.
    """
    if text is None or isinstance(text, datetime):
        return text
    try:
        parsed = datetime.fromisoformat(text + "+00:00")
        if parsed.tzinfo is not None:
            return parsed
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
