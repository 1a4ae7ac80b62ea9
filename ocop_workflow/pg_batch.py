"""PostgreSQL statements bound by psycopg on this side and sent as one message: a batch.

A transition's statements (``store.PgWrites``) and the server's read before an advance
(``pg_reads.PgReads.acting_ahead``) go to PostgreSQL in its simple query protocol, several
statements to a message. On the server's one Python process each round trip to the database,
and each statement through psycopg's server-side binding and prepared-statement machinery,
cost more CPU than the database's own work (README, Benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar


class SimpleBatch:
    """A batch in the making on a psycopg connection. ``execute`` and ``executemany`` queue
    their statement with its values bound (the DB-API connection ``store.SqliteWrites`` writes
    through, for ``PgWrites``); ``send`` sends the queue and more as one message, ``query`` a
    read of its own.

    A statement is one of the project's own (``?`` placeholders, as ``sqlite3`` takes them;
    never a user's text); each value goes in as the literal psycopg makes of it
    (``Transformer.as_literal``, what psycopg's ``ClientCursor`` binds with: libpq's
    ``PQescapeLiteral`` on this connection, a typed literal for an instant, a NUL in a text
    refused with ``DataError``). Done here rather than by ``ClientCursor`` because psycopg
    re-parses a query of more than 50 values each time, and a transition's writes hold more:
    the statement's pieces around its placeholders are split once (``_pieces``). Nothing is
    prepared on the server (``prepare=False``): with its values in its text, each statement
    run five times would be kept there as a prepared statement of its own. The values show in
    the server's own view of the statement (``pg_stat_activity``, a statement log)."""

    #: A statement's text around its placeholders, by statement.
    _pieces: ClassVar[dict[str, tuple[bytes, ...]]] = {}

    def __init__(self, conn: Any) -> None:
        from psycopg.adapt import Transformer

        self.conn = conn
        self.cursor = conn.cursor()
        self._literal = Transformer.from_context(conn).as_literal
        #: The literals made in this transaction, by value: the dossier's id, the instant of
        #: the transition and the timers' due instants recur in most of its rows.
        self._made: dict[tuple[type, Any], bytes] = {}
        self._sql: list[bytes] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        pieces = self._pieces.get(sql)
        if pieces is None:
            pieces = self._pieces[sql] = tuple(part.encode() for part in sql.split("?"))
        if len(pieces) != len(params) + 1:
            raise ValueError(f"{len(params)} values for {len(pieces) - 1} placeholders: {sql}")
        made, literal = self._made, self._literal
        out = [pieces[0]]
        for value, piece in zip(params, pieces[1:], strict=True):
            if value is None:
                out += (b"NULL", piece)
                continue
            key = (type(value), value)  # by type too: True == 1, and they are other literals
            found = made.get(key)
            if found is None:
                found = made[key] = literal(value)
            out += (found, piece)
        self._sql.append(b"".join(out))

    def executemany(self, sql: str, params: list[Any]) -> None:
        """An ``INSERT … VALUES (…)`` of several rows, as one statement with a group per row."""
        head, values, group = sql.partition(" VALUES ")
        self.execute(f"{head}{values}{', '.join([group] * len(params))}", _flat(params))

    def send(self, sql: Sequence[str], params: Sequence[Any] = (), *, commit: bool = False) -> Any:
        """The queue, then ``sql`` (bound to ``params`` in turn), as one batch: BEGIN first if
        no transaction is open, COMMIT last if ``commit``. The cursor on the result of the
        batch's first statement after its BEGIN; None if there was nothing to send."""
        at = 0
        for statement in sql:
            count = statement.count("?")
            self.execute(statement, params[at : at + count])
            at += count
        statements, self._sql = self._sql, []
        begin = self.conn.pgconn.transaction_status == _IDLE
        if not statements and (begin or not commit):
            return None
        if begin:
            statements.insert(0, b"BEGIN")
        if commit:
            statements.append(b"COMMIT")
        cursor = self.cursor
        cursor.execute(b"; ".join(statements), prepare=False)
        if begin:
            cursor.nextset()
        return cursor

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """``sql`` bound to ``params``, sent now on its own (no BEGIN: a read in autocommit);
        the cursor on its result."""
        self.execute(sql, params)
        self.cursor.execute(self._sql.pop(), prepare=False)
        return self.cursor

    def rollback(self) -> None:
        """ROLLBACK, if a transaction is open; whatever is queued is dropped. Nothing is sent
        on a connection that is lost (libpq no longer knows of a transaction): it would only
        fail again."""
        self._sql = []
        if self.conn.pgconn.transaction_status in _OPEN:
            self.cursor.execute(b"ROLLBACK", prepare=False)


def reusable(conn: Any) -> bool:
    """Whether a psycopg connection may go back to the pool after an error: still open, and
    in no transaction. A refused value, a lock or statement timeout, a deadlock leave it so once
    rolled back; a lost server, or a ROLLBACK that failed, do not."""
    return not conn.closed and conn.pgconn.transaction_status == _IDLE


# libpq's PQTRANS_*: IDLE, then INTRANS and INERROR (a transaction open, or failed and open)
_IDLE = 0
_OPEN = (2, 3)


def _flat(rows: list[Any]) -> list[Any]:
    return [value for row in rows for value in row]


class UtcCursor:
    """A psycopg cursor whose instants come back in UTC, as ``store.UTCDateTime`` gives them."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    @property
    def description(self) -> list[tuple[str]]:
        """Only the names (all ``_Shape`` reads), from the result itself: psycopg's
        ``description`` builds a Column object per column on every access. (A property: the
        cursor may move on to a batch's next result.)"""
        result = self.cursor.pgresult
        return [(result.fname(i).decode(),) for i in range(result.nfields)]

    def fetchone(self) -> Any:
        return _utc(self.cursor.fetchone())

    def __iter__(self) -> Iterator[Any]:
        return (_utc(row) for row in self.cursor)


def _utc(row: Any) -> Any:
    """A row (a tuple, or None) with its instants in UTC: psycopg gives them in the session's
    time zone."""
    if row is None:
        return None
    return tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row)
