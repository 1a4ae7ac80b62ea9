"""The server's reads on PostgreSQL: ``sqlite_reads``' plain statements over a pooled psycopg
connection.

A dossier's page is three indexed reads and a request's token one more; through SQLAlchemy Core
each read built its statement, checked out a connection and ran BEGIN … COMMIT — several times
the database's own answer, in CPU the server's one Python process has little of. Here each read
is one statement on a connection borrowed from the ``Store``'s pool (so the pool still bounds
the connections) in autocommit: one round trip, and psycopg prepares a statement on the server
once it has run a few times. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import EnvironmentProblem, UsageError
from .sqlite_reads import SqliteReads

if TYPE_CHECKING:
    from .store import Store


class PgReads(SqliteReads):
    """``SqliteReads``' statements (``?`` placeholders become ``%s``) on PostgreSQL."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.safe_url, "")
        self.store = store
        self._lent: _Placeholders | None = None

    def check_schema(self) -> None:
        self.store.check_schema()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads on one connection (``SqliteReads.snapshot``'s counterpart): in
        autocommit there is no snapshot to share, only the round trips to the pool."""
        with self.read():
            yield

    @contextmanager
    def read(self) -> Iterator[Any]:
        """One pooled connection in autocommit for the duration: each statement one round trip
        (no BEGIN, no COMMIT); back to the pool as it came, out of autocommit.

        Inside another ``read`` of this reader it is that one's connection: a request's reads
        borrow one connection from the pool, not one each."""
        if self._lent is not None:
            yield self._lent
            return
        import psycopg
        import sqlalchemy as sa

        try:
            pooled = self.store.engine.raw_connection()
        except sa.exc.SQLAlchemyError as exc:
            raise EnvironmentProblem(
                f"database unreachable ({self.url}): {_first_line(exc)}"
            ) from None
        conn: Any = pooled.driver_connection
        broken = False
        try:
            conn.autocommit = True
            self._lent = _Placeholders(conn)
            try:
                yield self._lent
            finally:
                self._lent = None
        except psycopg.DataError as exc:  # a value PostgreSQL cannot hold (NUL): bad input, as
            # Store.read says it; the connection itself is fine
            raise UsageError(f"the database refused a value: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            broken = True
            raise EnvironmentProblem(f"database error ({self.url}): {_first_line(exc)}") from None
        finally:
            try:
                if not broken:
                    conn.autocommit = False  # as the pool lent it: SQLAlchemy runs transactions
            except psycopg.Error:
                broken = True
            if broken:
                pooled.invalidate()  # never given back to the pool
            pooled.close()

    def close(self) -> None:
        """Nothing of its own to close: the connections are the pool's."""


class _Placeholders:
    """A psycopg connection that takes the ``?`` placeholders ``sqlite3`` takes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return _Cursor(self.conn.execute(sql.replace("?", "%s"), params))


class _Cursor:
    """A psycopg cursor whose instants come back in UTC, as ``store.UTCDateTime`` gives them."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        # Only the names (all ``_Shape`` reads), from the result itself: psycopg's
        # ``description`` builds a Column object per column on every access.
        result = cursor.pgresult
        self.description = [(result.fname(i).decode(),) for i in range(result.nfields)]

    def fetchone(self) -> Any:
        return _utc(self.cursor.fetchone())

    def __iter__(self) -> Iterator[Any]:
        return (_utc(row) for row in self.cursor)


def _utc(row: Any) -> Any:
    if row is None:
        return None
    return tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
