"""The read side of ``dossier show`` and ``dossier list`` on SQLite, in plain ``sqlite3`` (and
the server's reads and token check, one such connection per thread).

A command a person types should feel instant: importing SQLAlchemy and SQLModel costs more than
the whole query, so the reading commands on a SQLite file go through here instead of ``Store``.
This is ``store.py``'s companion (the same statements ``views.CoreReads`` builds with SQLAlchemy
Core, the same instants as ``store.SqliteWrites`` reads them); it lives in its own module because
importing ``store`` imports the SQLModel tables. PostgreSQL, and any SQLite URL this does not
understand plainly (query options, memory), keep ``Store``. Nothing here writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import EnvironmentProblem
from .instants import read_instant as _instant

#: The Alembic head this code expects (``store.SCHEMA_REVISION`` is this one; bump it here with a
#: new migration — ``tests/test_migrations.py`` pins it to the scripts).
SCHEMA_REVISION = "0007"

#: Dossier and timer columns holding instants (``store.UTCDateTime``), read back as aware UTC.
_INSTANTS = frozenset(
    {
        "state_entered_at",
        "deadline_at",
        "created_at",
        "updated_at",
        "due_at",
        "fired_at",
        "at",
        "expires_at",
        "revoked_at",
    }
)


#: How long a reader waits for a lock by default (as ``Store``'s connections).
BUSY_TIMEOUT_MS = 30_000


def sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///FILE`` URL; None for anything else (left to ``Store``)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :]
    if not path or path == ":memory:" or any(c in path for c in "?#%"):
        return None
    return path


def _bind_instant(value: datetime) -> str:
    """As ``store._sqlite_instant``: how SQLAlchemy's SQLite DateTime stores an instant."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def locked(exc: BaseException) -> bool:
    """Whether a ``sqlite3`` error says the database is locked (SQLITE_BUSY).

    ``sqlite_errorcode`` is the extended code: SQLITE_BUSY_RECOVERY (another process recovering
    the WAL) and the other SQLITE_BUSY_* are SQLITE_BUSY in their low byte."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


class ReaderBusy(EnvironmentProblem):
    """The database stayed locked for the whole of a reader's busy timeout (SQLITE_BUSY).

    Under WAL a reader waits for no writer; it sees a lock only in rare moments (another
    process recovering the WAL after a crash, a connection holding the file in exclusive
    mode). The server's event-loop reader waits briefly and then hands the read to a thread
    (``server.create_app``'s ``short_read``) instead of stalling every request."""


class SqliteReads:
    """Read transactions over one ``sqlite3`` connection, errors mapped as ``Store.read`` does."""

    def __init__(self, url: str, path: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.url = url  # a plain sqlite:///FILE URL holds no secret: shown as is (Store.safe_url)
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None
        #: Inside ``snapshot``: the reads made meanwhile join its transaction.
        self._shared = False

    def check_schema(self) -> None:
        """As ``Store.check_schema``: the same messages for a missing or old database."""
        if not Path(self.path).exists():  # do not leave an empty file behind
            raise EnvironmentProblem(f"database {self.url} does not exist: run `ocop init`")
        # Asked, as Store.check_schema asks (``has_table``), rather than read off a failure:
        # a locked, damaged or unreadable file is then said as such, not "not initialised".
        with self.read() as db:
            initialised = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            found = (
                db.execute("SELECT version_num FROM alembic_version").fetchone()
                if initialised
                else None
            )
        if not initialised:
            raise EnvironmentProblem(f"database {self.url} is not initialised: run `ocop init`")
        revision = found[0] if found else None
        if revision != SCHEMA_REVISION:
            raise EnvironmentProblem(
                f"database schema is at revision {revision}, this ocop expects {SCHEMA_REVISION}: "
                "run `ocop init` to upgrade"
            )

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads from one snapshot: each ``read`` made inside (``dossier show``'s
        dossier, timers and first entry; the server's token check and page) takes this one
        transaction, with one BEGIN and one COMMIT. Nested snapshots are the outer one."""
        if self._shared:
            yield
            return
        with self.read():
            self._shared = True
            try:
                yield
            finally:
                self._shared = False

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A deferred read transaction (readers never block writers under WAL), or, inside
        ``snapshot``, that snapshot's. Only ``snapshot`` shares a transaction: a read begun while
        another is still open elsewhere (a generator left suspended) fails loudly instead of
        silently reading an old snapshot."""
        db = self._db
        if self._shared and db is not None and db.in_transaction:
            yield db
            return
        try:
            if db is None:
                db = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000)
                db.isolation_level = None
                db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
                self._db = db
        except sqlite3.Error as exc:
            raise EnvironmentProblem(
                f"database unreachable ({self.url}): {_first_line(exc)}"
            ) from None
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self.refusal(exc) from None

    def refusal(self, exc: sqlite3.Error) -> EnvironmentProblem:
        """A read's failure as the one hierarchy says it: ``ReaderBusy`` for a lock held past
        the busy timeout, else the database's error."""
        if locked(exc):
            return ReaderBusy(
                f"database locked ({self.url}) for {self.busy_timeout_ms} ms: {_first_line(exc)}"
            )
        return EnvironmentProblem(f"database error ({self.url}): {_first_line(exc)}")

    def wait_at_most(self, busy_timeout_ms: int) -> None:
        """How long this reader waits for a lock from now on (its connection's busy timeout)."""
        self.busy_timeout_ms = busy_timeout_ms
        if self._db is not None:
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- the statements views.CoreReads runs --------------------------------------------

    def dossier(self, dossier_id: str) -> dict[str, Any] | None:
        with self.read() as db:
            cursor = db.execute("SELECT * FROM dossier WHERE id = ?", (dossier_id,))
            found = cursor.fetchone()
            return None if found is None else _row(cursor, found)

    def ids_meant(self, wanted: str) -> list[str]:
        with self.read() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT id FROM dossier WHERE lower(id) = ? ORDER BY id LIMIT 3",
                    (wanted.lower(),),
                )
            ]

    def communes(self) -> set[str]:
        with self.read() as db:
            return {r[0] for r in db.execute("SELECT DISTINCT commune FROM dossier")}

    def dossiers(self, filters: Any, now: datetime) -> Iterator[dict[str, Any]]:
        where, params = [], []
        for column in ("state", "stage", "commune", "workflow"):
            value = getattr(filters, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if filters.overdue:
            where.append("deadline_at <= ?")
            params.append(_bind_instant(now))
        sql = "SELECT * FROM dossier"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.read() as db:
            cursor = db.execute(sql + " ORDER BY id", params)
            shape = _Shape(cursor)
            for found in cursor:
                yield shape(found)

    def pending_timers(self, dossier_id: str) -> Iterator[dict[str, Any]]:
        with self.read() as db:
            cursor = db.execute(
                "SELECT * FROM timer WHERE dossier_id = ? AND status = 'pending' "
                "ORDER BY due_at, id",
                (dossier_id,),
            )
            shape = _Shape(cursor)
            for found in cursor:
                yield shape(found)

    def api_token(self, digest: str) -> dict[str, Any] | None:
        """The token row ``auth.authenticate`` checks (the server's one query per request)."""
        with self.read() as db:
            cursor = db.execute(
                "SELECT id, user_key, expires_at, revoked_at FROM api_token WHERE token_sha256 = ?",
                (digest,),
            )
            found = cursor.fetchone()
            return None if found is None else _row(cursor, found)

    def first_entry(self, dossier_id: str) -> dict[str, Any] | None:
        with self.read() as db:
            cursor = db.execute(
                "SELECT trigger, actor, at, data_after FROM audit_entry "
                "WHERE dossier_id = ? AND seq = 1",
                (dossier_id,),
            )
            found = cursor.fetchone()
            return None if found is None else _row(cursor, found)


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return _Shape(cursor)(values)


class _Shape:
    """Rows of one result as mappings, instants as aware UTC datetimes: the column names and
    which of them hold instants are worked out once per result, not once per row."""

    def __init__(self, cursor: Any) -> None:
        self.names = [d[0] for d in cursor.description]
        self.instants = [name for name in self.names if name in _INSTANTS]

    def __call__(self, values: tuple[Any, ...]) -> dict[str, Any]:
        row = dict(zip(self.names, values, strict=True))
        for name in self.instants:
            row[name] = _instant(row[name])
        return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
