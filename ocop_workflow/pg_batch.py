"""PostgreSQL statements bound by psycopg on this side and sent as one message: a batch.

A transition's statements (``store.PgWrites``) and the server's read before an advance
(``pg_reads.PgReads.acting_ahead``) go to PostgreSQL in its simple query protocol, several
statements to a message. On the server's one Python process each round trip to the database,
and each statement through psycopg's server-side binding and prepared-statement machinery,
cost more CPU than the database's own work (README, Benchmarks).
"""

from __future__ import annotations

from collections.abc import Sequence
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
        self.begun = False

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
        no transaction is open, COMMIT last if ``commit``. The cursor on the first result after
        the queue's (on the queue's last if ``sql`` is empty); None if nothing was sent."""
        queued = len(self._sql)
        at = 0
        for statement in sql:
            count = statement.count("?")
            self.execute(statement, params[at : at + count])
            at += count
        statements, self._sql = self._sql, []
        if not statements and not (commit and self.begun):
            return None
        skip = queued if sql else max(queued - 1, 0)
        if not self.begun:
            statements.insert(0, b"BEGIN")
            skip += 1
            self.begun = True
        if commit:
            statements.append(b"COMMIT")
            self.begun = False
        cursor = self.cursor
        cursor.execute(b"; ".join(statements), prepare=False)
        for _ in range(skip):
            cursor.nextset()
        return cursor

    def query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """``sql`` bound to ``params``, sent now as a batch of its own (no BEGIN: a read in
        autocommit); the cursor on its result."""
        self.execute(sql, params)
        statements, self._sql = self._sql, []
        self.cursor.execute(b"; ".join(statements), prepare=False)
        return self.cursor

    def rollback(self) -> None:
        self._sql = []
        if self.conn.pgconn.transaction_status != _IDLE:
            self.cursor.execute(b"ROLLBACK", prepare=False)
        self.begun = False


_IDLE = 0  # libpq's PQTRANS_IDLE


def _flat(rows: list[Any]) -> list[Any]:
    return [value for row in rows for value in row]
