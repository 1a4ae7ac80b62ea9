"""The server's reads on PostgreSQL: ``sqlite_reads``' plain statements over a pooled psycopg
connection.

A dossier's page is three indexed reads and a request's token one more; through SQLAlchemy Core
each read built its statement, checked out a connection and ran BEGIN … COMMIT — several times
the database's own answer, in CPU the server's one Python process has little of. Here each read
is one statement on a connection borrowed from the ``Store``'s pool (so the pool still bounds
the connections) in autocommit: one round trip, and psycopg prepares a statement on the server
once it has run a few times. The server's ``GET /dossiers/{id}`` reads the token's row and the
page in one statement (``page_ahead``); its advance, the token's row and the dossier's, on the
connection its transaction then runs on (``acting_ahead``). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .instants import read_instant
from .pg_batch import SimpleBatch, UtcCursor
from .sqlite_reads import _INSTANTS, SqliteReads

if TYPE_CHECKING:
    from .store import Store


class PgReads(SqliteReads):
    """``SqliteReads``' statements (``?`` placeholders become ``%s``) on PostgreSQL."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.safe_url, "")
        self.store = store
        self._lent: _Placeholders | None = None
        #: Answers read ahead (``page_ahead``) by (read, argument), for the reads of its block.
        self._ahead: dict[tuple[str, str], Any] = {}
        #: Inside ``answered``: a read without an answer raises ``NotAhead``.
        self._only_ahead = False

    def check_schema(self) -> None:
        self.store.check_schema()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads on one connection (``SqliteReads.snapshot``'s counterpart): in
        autocommit there is no snapshot to share, only the round trips to the pool. Inside
        ``answered`` the answers are one snapshot already: nothing to open."""
        if self._only_ahead:
            yield
            return
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
        if self._only_ahead:
            raise NotAhead("a read answered() holds no answer for")
        with self.store.autocommit() as conn:  # errors as Store.read says them
            self._lent = _Placeholders(conn)
            try:
                yield self._lent
            finally:
                self._lent = None

    @contextmanager
    def page_ahead(self, digest: str, dossier_id: str) -> Iterator[None]:
        """A ``snapshot`` in which the token's row (by ``digest``) and the dossier's page (its
        row, pending timers and first entry) are read up front, in one statement, one round
        trip, one snapshot of the database: ``api_token``, ``dossier``, ``pending_timers``
        and ``first_entry`` then answer from it (each once; any other read, or a second one,
        asks the database as usual).

        Four statements cost the server four trips through psycopg and four waits for the
        network, in which its threads hand the interpreter lock around; the database packs
        the answers as JSON instead, which costs less to read back.

        An id the database cannot take (a NUL) reads nothing ahead, as in ``acting_ahead``:
        the token is read first, so a request without a valid token is told 401, not 422.
        """
        from psycopg import DataError

        with self.snapshot():
            try:
                (found,) = self.pages([(digest, dossier_id)])
            except DataError:  # inside the snapshot's read: psycopg's, as the database said it
                yield
                return
            with self.answered(digest, dossier_id, found, strict=False):
                yield

    @contextmanager
    def answered(
        self, digest: str, dossier_id: str, found: Any, *, strict: bool = True
    ) -> Iterator[None]:
        """The block's reads of the page answer from ``found``, its row (``pages``: read
        ahead, on the server's event loop by ``page_batch``). ``strict``: a read it holds no
        answer for raises ``NotAhead`` rather than wait for the database (the event loop);
        else it asks the database as usual (``page_ahead``)."""
        self._ahead = _answers(digest, dossier_id, found)
        self._only_ahead = strict
        try:
            yield
        finally:
            self._ahead = {}
            self._only_ahead = False

    @contextmanager
    def acting_ahead(self, digest: str, dossier_id: str) -> Iterator[None]:
        """A write request's block (``Ocop.acting``): one pooled connection for all of it
        (``Store.holding``), on which the token's row (by ``digest``) and the dossier's row
        are read up front in one statement; ``api_token`` and ``dossier`` then answer from
        them (each once), and the transition runs on the same connection. Three checkouts from
        the pool and two round trips before the transaction become one of each.

        An id the database cannot take (a NUL) reads nothing ahead: the block then reads as
        usual, the token first, so that a request without a valid token is told 401 before
        anything is said of its input."""
        with self.store.holding():
            try:
                with self.read() as db:
                    cursor = SimpleBatch(db.conn).query(_ACTING, (digest, dossier_id))
                    token, dossier = cursor.fetchone()
            except UsageError:
                pass
            else:
                self._ahead = {
                    ("api_token", digest): _instants(token),
                    ("dossier", dossier_id): _instants(dossier),
                }
            try:
                yield
            finally:
                self._ahead = {}

    def pages(self, asked: list[tuple[str, str]]) -> list[Any]:
        """The page's row for each (token digest, dossier id) of ``asked``, in order, in one
        statement: one round trip and one snapshot for all (``page_batch``; ``page_ahead``
        asks for one)."""
        with self.read() as db:
            digests, dossiers = [a for a, _ in asked], [b for _, b in asked]
            return list(db.execute(_PAGES, (digests, dossiers)))

    def api_token(self, digest: str) -> dict[str, Any] | None:
        if ("api_token", digest) in self._ahead:
            return self._ahead.pop(("api_token", digest))
        return super().api_token(digest)

    def dossier(self, dossier_id: str) -> dict[str, Any] | None:
        if ("dossier", dossier_id) in self._ahead:
            return self._ahead.pop(("dossier", dossier_id))
        return super().dossier(dossier_id)

    def pending_timers(self, dossier_id: str) -> Iterator[dict[str, Any]]:
        if ("pending_timers", dossier_id) in self._ahead:
            return iter(self._ahead.pop(("pending_timers", dossier_id)))
        return super().pending_timers(dossier_id)

    def first_entry(self, dossier_id: str) -> dict[str, Any] | None:
        if ("first_entry", dossier_id) in self._ahead:
            return self._ahead.pop(("first_entry", dossier_id))
        return super().first_entry(dossier_id)

    def close(self) -> None:
        """Nothing of its own to close: the connections are the pool's."""


#: ``pages``' statement: for each (token digest, dossier id) of two arrays, in their order,
#: a row of the page's four reads, each answer as JSON (NULL: no row). The same columns, order
#: and conditions as ``api_token``, ``dossier``, ``pending_timers`` and ``first_entry``;
#: tests/test_instant_reads.py holds the answers equal.
_PAGES = (
    "SELECT "
    "(SELECT row_to_json(t) FROM (SELECT id, user_key, expires_at, revoked_at FROM api_token "
    "WHERE token_sha256 = q.digest) t), "
    "(SELECT row_to_json(d) FROM dossier d WHERE d.id = q.dossier), "
    "(SELECT coalesce(json_agg(t ORDER BY t.due_at, t.id), '[]') FROM timer t "
    "WHERE t.dossier_id = q.dossier AND t.status = 'pending'), "
    "(SELECT row_to_json(a) FROM (SELECT trigger, actor, at, data_after FROM audit_entry "
    "WHERE dossier_id = q.dossier AND seq = 1) a) "
    "FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS q(digest, dossier, n) ORDER BY q.n"
)


#: ``acting_ahead``'s statement: the token's row and the dossier's, each as JSON (NULL: no
#: row); the same columns and conditions as ``api_token`` and ``dossier``.
_ACTING = (
    "SELECT (SELECT row_to_json(t) FROM (SELECT id, user_key, expires_at, revoked_at "
    "FROM api_token WHERE token_sha256 = ?) t), "
    "(SELECT row_to_json(d) FROM dossier d WHERE d.id = ?)"
)


def _answers(digest: str, dossier_id: str, found: Any) -> dict[tuple[str, str], Any]:
    """A page's row (``_PAGES``) as the answers of the four reads it stands for."""
    token, dossier, timers, first = found
    return {
        ("api_token", digest): _instants(token),
        ("dossier", dossier_id): _instants(dossier),
        ("pending_timers", dossier_id): [_instants(t) for t in timers],
        ("first_entry", dossier_id): _instants(first),
    }


class NotAhead(Exception):
    """A read inside ``PgReads.answered`` that its row holds no answer for: the caller runs the
    whole work again where reads may wait (reads change nothing, so nothing is done twice)."""


def _instants(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row from JSON with its instants (ISO text naming an offset) as aware UTC datetimes."""
    if row is not None:
        for name in _INSTANTS.intersection(row):
            row[name] = read_instant(row[name])
    return row


class _Placeholders:
    """A psycopg connection that takes the ``?`` placeholders ``sqlite3`` takes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return UtcCursor(self.conn.execute(sql.replace("?", "%s"), params))
