"""Instants as SQLite holds them: naive UTC text, read back as aware UTC datetimes.

One function for the two read paths, ``store.SqliteWrites`` (the engine's writes) and
``sqlite_reads`` (the plain-``sqlite3`` reads, which must not import SQLAlchemy: it lives here,
in a module that imports nothing of the project).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def read_instant(text: Any) -> Any:
    """Stored text → aware UTC datetime (None and datetimes as they are).

    SQLAlchemy writes naive UTC text (``2026-03-02 04:23:23.000000``): it is parsed with
    ``+00:00`` appended, several times cheaper than ``.replace(tzinfo=UTC)`` afterwards, and a
    page of dossiers holds many instants. Any other text (a date alone, which the parser would
    read as a naive midnight with ``+`` as the separator; one naming its own offset) is parsed
    alone and put in UTC by ``replace``, as SQLAlchemy's type reads it.
    """
    if text is None or isinstance(text, datetime):
        return text
    try:
        parsed = datetime.fromisoformat(text + "+00:00")
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return parsed
