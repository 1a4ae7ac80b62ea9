"""SQLModel tables and database sessions; the only module that knows SQL dialects.

The tables are declared with SQLModel (the schema, migrations and typed rows) but the hot paths
use SQLAlchemy Core statements on ``Model.__table__``: an ORM session round trip costs ~1.8 ms, a
Core transaction on SQLite ~0.1 ms (design.md). SQLite writes run under ``BEGIN IMMEDIATE`` so two
writers never deadlock on a lock upgrade; PostgreSQL writes lock the dossier row ``FOR UPDATE``.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from .errors import Conflict, EnvironmentProblem, OcopError, UsageError
from .instants import read_instant

# SCHEMA_REVISION, the Alembic head this code expects (tests/test_migrations.py pins it to the
# scripts), is written in sqlite_reads.py: its plain-sqlite3 reads check it without this module.
from .sqlite_reads import SCHEMA_REVISION as SCHEMA_REVISION


class WriterBusy(EnvironmentProblem):
    """A write begun inside ``Store.at_once`` found the write lock held — by another thread of
    this process or by another process (a worker's sweep, a command). Nothing was written: the
    caller hands the whole work to a thread that may wait for the lock (the server's
    ``Writer``)."""


class AtOnce:
    """One ``Store.at_once`` block: ``begun`` once its first write transaction holds the lock
    (from then on a failure is no longer "nothing was written")."""

    __slots__ = ("begun",)

    def __init__(self) -> None:
        self.begun = False


#: Commits without a checkpoint (``Store.at_once``) after which one is due, about 10 pages each:
#: well under ``WAL_AUTOCHECKPOINT_PAGES``, the point at which a commit would copy it back itself.
AT_ONCE_CHECKPOINT_EVERY = 500


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both SQLite and PostgreSQL.

    SQLite has no time zone type: values are stored as naive UTC text, which still sorts and
    compares correctly, so due-time queries can use the index.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC instant")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _utc_column(**kw: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), **kw))


class Dossier(SQLModel, table=True):
    """One product dossier: where it is in its pinned workflow, and its data fields."""

    __tablename__ = "dossier"

    id: str = Field(primary_key=True)
    product: str
    producer: str
    commune: str = Field(index=True)
    product_group: str | None = None
    workflow: str = Field(index=True)
    workflow_version: str
    #: SHA-256 of the workflow file the dossier runs on (NULL: registered before revision 0003).
    workflow_sha256: str | None = Field(default=None, max_length=64)
    # state, stage and deadline_at are not indexed: each changes on every move, and an index
    # entry moved costs two pages per transition; `dossier list --state/--overdue` scan
    # (migrations 0003 and 0007)
    state: str
    stage: str
    state_entered_at: datetime = _utc_column(nullable=False)
    state_entry_seq: int
    deadline_at: datetime | None = _utc_column(nullable=True)
    deadline_note: str | None = None
    #: The calendar its pending timers were planned under (calendar_data fingerprint).
    calendar_fingerprint: str | None = Field(default=None, max_length=64)
    version: int = 1
    data: str = "{}"
    created_at: datetime = _utc_column(nullable=False)
    updated_at: datetime = _utc_column(nullable=False)


class AuditEntry(SQLModel, table=True):
    """Append-only, hash-chained history; database triggers reject UPDATE and DELETE."""

    __tablename__ = "audit_entry"

    dossier_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    trigger: str
    from_state: str | None = None
    to_state: str
    actor: str
    reason: str | None = None
    #: Not indexed (migration 0007): only reports of a year and exports ``--since`` filter on it.
    at: datetime = _utc_column(nullable=False)
    data_before: str | None = None
    data_after: str
    prev_hash: str
    hash: str


class Timer(SQLModel, table=True):
    """A reminder, deadline, escalation or expiry that fires on its own: the row is the truth."""

    __tablename__ = "timer"
    __table_args__ = (
        # The waking timers only (see ``wake``): one entry per dossier with pending timers, so
        # a transition moves one entry of this index, not one per timer (migration 0007).
        # Queries must say ``status = 'pending' AND wake = 1`` literally (WAKING) to use it.
        sa.Index(
            "ix_timer_wake",
            "due_at",
            sqlite_where=sa.text("status = 'pending' AND wake = 1"),
            postgresql_where=sa.text("status = 'pending' AND wake = 1"),
        ),
        sa.Index("ix_timer_dossier", "dossier_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dossier_id: str
    state: str
    entry_seq: int
    kind: str
    due_at: datetime = _utc_column(nullable=False)
    deadline_at: datetime | None = _utc_column(nullable=True)
    status: str = "pending"
    auto_trigger: str | None = None
    repeat_working_days: int | None = None
    fired_at: datetime | None = _utc_column(nullable=True)
    late_seconds: float | None = None
    created_at: datetime = _utc_column(nullable=False)
    #: 1 on the pending timer of a dossier due first (others NULL): the sweep finds due dossiers
    #: through these (index ``ix_timer_wake``), then their due timers through ``dossier_id``.
    #: Every batch of new timers marks its earliest (``timers.mark_waking``), and the sweep marks
    #: the next one of each dossier it fired for; a pending timer due earlier than its dossier's
    #: waking one would be found late, so no code inserts timers any other way.
    wake: int | None = None


class Notification(SQLModel, table=True):
    """The outbox: written with the event that caused it, delivered separately, at least once."""

    __tablename__ = "notification"
    __table_args__ = (sa.Index("ix_notification_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    dossier_id: str = Field(index=True)
    timer_id: int | None = None
    kind: str
    channel: str
    recipient: str
    subject: str
    body: str
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime = _utc_column(nullable=False)
    claimed_until: datetime | None = _utc_column(nullable=True)
    last_error: str | None = None
    created_at: datetime = _utc_column(nullable=False)
    sent_at: datetime | None = _utc_column(nullable=True)


class Counter(SQLModel, table=True):
    """Named counters (dossier numbers per year), bumped inside the writing transaction."""

    __tablename__ = "counter"

    name: str = Field(primary_key=True)
    value: int = 0


class Lease(SQLModel, table=True):
    """Who may run the SQLite worker: one holder at a time, renewed while it lives."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = _utc_column(nullable=False)


class Credential(SQLModel, table=True):
    """A person's password for the server's login: an Argon2 hash, never the password."""

    __tablename__ = "credential"

    user_key: str = Field(primary_key=True)
    password_hash: str
    updated_at: datetime = _utc_column(nullable=False)


class ApiToken(SQLModel, table=True):
    """A bearer token (API or session): only its SHA-256 is kept; the owner saw it once."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True)
    token_sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    kind: str = "api"
    label: str | None = None
    created_at: datetime = _utc_column(nullable=False)
    expires_at: datetime | None = _utc_column(nullable=True)
    revoked_at: datetime | None = _utc_column(nullable=True)


class LoginFailure(SQLModel, table=True):
    """A failed password login, counted per user and per address to throttle guessing; in the
    database so that every server process sees the same count."""

    __tablename__ = "login_failure"

    id: int | None = Field(default=None, primary_key=True)
    user_key: str = Field(index=True)
    address: str = Field(index=True)
    at: datetime = _utc_column(nullable=False)


dossier_t: sa.Table = SQLModel.metadata.tables["dossier"]
audit_t: sa.Table = SQLModel.metadata.tables["audit_entry"]
timer_t: sa.Table = SQLModel.metadata.tables["timer"]
notification_t: sa.Table = SQLModel.metadata.tables["notification"]
counter_t: sa.Table = SQLModel.metadata.tables["counter"]
lease_t: sa.Table = SQLModel.metadata.tables["lease"]
credential_t: sa.Table = SQLModel.metadata.tables["credential"]
token_t: sa.Table = SQLModel.metadata.tables["api_token"]
login_failure_t: sa.Table = SQLModel.metadata.tables["login_failure"]

#: "The timer is pending", written as a literal: SQLite uses a partial index only when the
#: query repeats its WHERE term, and a bound parameter (``status = ?``) does not.
PENDING = timer_t.c.status == sa.literal_column("'pending'")
#: "The timer is its dossier's waking one" (``Timer.wake``), the other term of ``ix_timer_wake``.
WAKING = sa.and_(PENDING, timer_t.c.wake == sa.literal_column("1"))


def pending_due(before: datetime, *, inclusive: bool = True) -> sa.ColumnElement[bool]:
    """Pending timers due by ``before``, found through the waking timers' index.

    A dossier has a pending timer due by then exactly when its waking timer (its earliest
    pending one) is, so the dossiers come from ``ix_timer_wake`` and their timers from
    ``ix_timer_dossier``, without an index entry per pending timer.
    """
    waking = timer_t.alias("waking")
    waking_due = waking.c.due_at <= before if inclusive else waking.c.due_at < before
    due = timer_t.c.due_at <= before if inclusive else timer_t.c.due_at < before
    return sa.and_(
        PENDING,
        due,
        timer_t.c.dossier_id.in_(
            sa.select(waking.c.dossier_id).where(
                waking.c.status == sa.literal_column("'pending'"),
                waking.c.wake == sa.literal_column("1"),
                waking_due,
            )
        ),
    )


def _lock_query() -> sa.Select[Any]:
    head = (
        sa.select(audit_t.c.seq, audit_t.c.hash)
        .where(audit_t.c.dossier_id == dossier_t.c.id)
        .order_by(audit_t.c.seq.desc())
        .limit(1)
        .correlate(dossier_t)
    )
    return sa.select(
        dossier_t,
        head.with_only_columns(audit_t.c.seq).scalar_subquery().label("audit_seq"),
        head.with_only_columns(audit_t.c.hash).scalar_subquery().label("audit_hash"),
    ).where(dossier_t.c.id == sa.bindparam("dossier_id"))


# Built once: constructing a statement per call costs more than SQLite executing it.
_LOCK_SQLITE = _lock_query()
# On PostgreSQL the row is locked first and the chain's head read by a second statement: a
# SELECT … FOR UPDATE that waited for another transaction's lock returns the row as that one
# left it, but its subqueries still read the snapshot taken before the wait (READ COMMITTED),
# so the head would be the one before the other transaction's entry (its seq taken twice: a
# conflict, "try again", although the lock had put the two in order). Each statement of a
# READ COMMITTED transaction reads a new snapshot: the second one sees the other's entry.
_LOCK_FOR_UPDATE = (
    sa.select(dossier_t)
    .where(dossier_t.c.id == sa.bindparam("dossier_id"))
    .with_for_update(of=dossier_t)
)
_HEAD = (
    sa.select(audit_t.c.seq, audit_t.c.hash)
    .where(audit_t.c.dossier_id == sa.bindparam("dossier_id"))
    .order_by(audit_t.c.seq.desc())
    .limit(1)
)


def dumps(value: Any) -> str:
    """JSON as stored: UTF-8 text, Vietnamese intact, keys sorted so equal data is equal text."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def dossier_row(store: Store, dossier_id: str) -> dict[str, Any]:
    """One dossier's row, or :class:`~ocop_workflow.errors.NotFound`."""
    from .errors import NotFound

    with store.read() as conn:
        row = conn.execute(sa.select(dossier_t).where(dossier_t.c.id == dossier_id)).first()
    if row is None:
        raise NotFound(f"dossier {dossier_id} not found")
    return dict(row._mapping)


class Store:
    """A database: an SQLAlchemy engine plus read and write transactions with the right locks."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
        #: Idle connections of ``writes()`` on an SQLite file (``_writer``).
        self._idle: list[Any] = []
        #: Instants in SQLite's text form, shared by this store's ``writes()`` (``SqliteWrites``).
        self._instant_texts: dict[datetime, str] = {}
        self._busy_timeout_s = busy_timeout_ms / 1000
        #: On SQLite, the write lock of this process's writers (``_write_turn``).
        self._turn = threading.RLock()
        #: Per thread: the ``AtOnce`` block it is in, if any.
        self._here = threading.local()
        #: Per thread, on PostgreSQL: the connection ``holding`` lends (a ``_Lease``).
        self._held = threading.local()
        #: ``at_once``'s own writer (busy timeout 0, no checkpoint on commit), used under the
        #: write turn only; and its commits since the last checkpoint was asked for.
        self._at_once_db: Any = None
        self._at_once_commits = 0
        self._busy_timeout_ms = busy_timeout_ms
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url, busy_timeout_ms)
        elif self.dialect == "postgresql":
            self.engine = sa.create_engine(url, pool_pre_ping=False)
        else:
            raise EnvironmentProblem(
                f"unsupported database '{self.dialect}': use sqlite:/// or postgresql+psycopg://"
            )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: BEGIN IMMEDIATE on SQLite; commit on success, else roll back."""
        with self._write_turn() as attempt:
            if attempt is not None and not self._idle_in_pool():
                raise WriterBusy(f"database busy ({self.safe_url}): no connection open to write")
            with self._connect(write=True) as conn:
                yield from self._write_on(conn, attempt)

    def _idle_in_pool(self) -> bool:
        """Whether the pool holds an open connection to lend (so none is opened: a new one's
        settings wait the busy timeout); True for pools that keep none (``:memory:``)."""
        pool = self.engine.pool
        return not isinstance(pool, sa.pool.QueuePool) or pool.checkedin() > 0

    def _write_on(self, conn: Connection, attempt: AtOnce | None) -> Iterator[Connection]:
        """``write``'s transaction on ``conn``; an ``at_once`` attempt's first, without waits."""
        if attempt is None:
            with conn.begin():
                yield conn
            return
        # at_once: SQLite's own wait and the checkpoint a commit may do are off for this
        # one transaction (the driver connection directly: a statement through ``conn``
        # would begin the transaction, and wait, first). Opening a connection would wait
        # the busy timeout in its settings: ``write`` refused that already.
        driver: Any = conn.connection.driver_connection
        driver.execute("PRAGMA busy_timeout=0")
        driver.execute("PRAGMA wal_autocheckpoint=0")
        try:
            try:
                transaction = conn.begin()
            except sa.exc.OperationalError as exc:
                raise _busy_or(self, exc.orig or exc) from None
            attempt.begun = True
            with transaction:
                yield conn
            self._at_once_commits += 1
        finally:
            driver.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            driver.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")

    @contextmanager
    def at_once(self) -> Iterator[AtOnce]:
        """Within the block, this thread's first write transaction does not wait: it gets the
        write lock at once or raises ``WriterBusy`` with nothing written. Its commit does not
        copy the WAL back into the database either (``checkpoint_due`` says when to, on a
        thread that may take the time). Later transactions of the block wait as usual.

        For the server's event loop on a SQLite file, where every other request waits while a
        write waits: a write that starts at once runs there, in a fraction of a millisecond,
        instead of paying a hand-over to another thread and the two threads' fight over the
        interpreter lock (``server.Writer``). Elsewhere (PostgreSQL) nothing changes.
        """
        attempt = AtOnce()
        if not self.is_sqlite:
            yield attempt
            return
        outer = getattr(self._here, "at_once", None)
        self._here.at_once = attempt
        try:
            yield attempt
        finally:
            self._here.at_once = outer

    def checkpoint_due(self) -> bool:
        """True once every ``AT_ONCE_CHECKPOINT_EVERY`` commits made by ``at_once`` blocks,
        which do not checkpoint themselves: time for ``checkpoint`` (elsewhere)."""
        if self._at_once_commits < AT_ONCE_CHECKPOINT_EVERY:
            return False
        self._at_once_commits = 0
        return True

    def _attempt(self) -> AtOnce | None:
        """This thread's ``at_once`` block if its first write has not begun yet, else None."""
        attempt: AtOnce | None = getattr(self._here, "at_once", None) if self.is_sqlite else None
        return None if attempt is None or attempt.begun else attempt

    def _write_turn(self) -> AbstractContextManager[AtOnce | None]:
        """``_take_turn``, and the ``AtOnce`` block whose first transaction this is (or None)."""
        return self._take_turn(self._attempt())

    @contextmanager
    def _take_turn(self, attempt: AtOnce | None) -> Iterator[AtOnce | None]:
        """On SQLite, this process's writers take turns on a lock of their own before BEGIN
        IMMEDIATE; elsewhere, nothing.

        SQLite lets one writer at a time in and makes the others poll: its busy handler sleeps
        1, 2, 5, 10 … up to 100 ms between tries, so under a server's concurrent requests a
        waiting advance slept far longer than the transaction it waited for (350–650 ms worst
        cases with 16 clients). Threads of one process now queue on a lock that wakes the next
        at once; writers in other processes still meet SQLite's own lock and busy timeout. The
        wait for the turn is bounded by the busy timeout and fails the same way ("database is
        locked"); a writer that got its turn can then wait the busy timeout again in SQLite if
        another process (a worker, a command) holds the database: up to twice in all.
        Re-entrant, so a thread already writing reaches SQLite as before. An ``at_once``
        attempt does not wait for its turn: ``WriterBusy``.
        """
        if not self.is_sqlite:
            yield None
            return
        if attempt is not None:
            if not self._turn.acquire(blocking=False):
                raise WriterBusy(f"database busy ({self.safe_url}): another write is under way")
        elif not self._turn.acquire(timeout=self._busy_timeout_s):
            raise EnvironmentProblem(f"database error ({self.safe_url}): database is locked")
        try:
            yield attempt
        finally:
            self._turn.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (deferred on SQLite, so readers never block writers under WAL).

        Not before an ``at_once`` attempt's write has begun (``WriterBusy``): this read, or the
        connection it may open, waits the busy timeout for a lock (a file another process holds
        exclusively), and the attempt must not wait at all. The hot paths read through
        ``sqlite_reads`` there; what does read here (a first schema check) is done elsewhere."""
        if self._attempt() is not None:
            raise WriterBusy(f"database {self.safe_url}: a read here could wait for a lock")
        with self._connect(write=False) as conn, conn.begin():
            yield conn

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise _not_opened(self, exc) from None
        with conn:
            if self.is_sqlite:
                conn = conn.execution_options(ocop_write=write)
            try:
                yield conn
            except sa.exc.DBAPIError as exc:  # any of PEP 249's: a file that is no database too
                raise _refusal(self, exc) from None

    def writes(self) -> AbstractContextManager[SqliteWrites]:
        """One write transaction for a transition's few statements, in plain DB-API statements
        (``SqliteWrites``; ``PgWrites`` on PostgreSQL)."""
        return _sqlite_writes(self) if self.is_sqlite else _pg_writes(self)

    def lock_dossier(self, conn: Connection, dossier_id: str) -> dict[str, Any] | None:
        """Load a dossier for update: ``FOR UPDATE`` on PostgreSQL, the write lock on SQLite.

        The row carries ``audit_seq`` and ``audit_hash``, the head of its audit chain (None
        before the first entry), read after the lock is held (``_LOCK_FOR_UPDATE``); on SQLite,
        whose BEGIN IMMEDIATE already holds the lock, in the same statement.
        """
        params = {"dossier_id": dossier_id}
        if self.is_sqlite:
            found = conn.execute(_LOCK_SQLITE, params).first()
            return None if found is None else dict(found._mapping)
        locked = conn.execute(_LOCK_FOR_UPDATE, params).first()
        if locked is None:
            return None
        head = conn.execute(_HEAD, params).first()
        row = dict(locked._mapping)
        row["audit_seq"], row["audit_hash"] = (None, None) if head is None else tuple(head)
        return row

    def claim_query(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Rows claimed by one of several workers: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL."""
        if self.is_sqlite:
            return query
        return query.with_for_update(skip_locked=True)

    def schema_revision(self) -> str | None:
        with self.read() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    @property
    def sqlite_file(self) -> str | None:
        """The file of a SQLite URL, with options (``?timeout=5``) or without; None for an
        in-memory database, a URI filename (``?uri=true``) or another database."""
        url = sa.engine.make_url(self.url)
        if not self.is_sqlite or url.query.get("uri"):
            return None
        database = url.database
        return None if not database or database == ":memory:" else database

    def check_schema(self) -> None:
        """Refuse to run against a database that ``ocop init`` has not brought up to date."""
        database = self.sqlite_file
        if database is not None:
            from pathlib import Path

            if not Path(database).exists():  # do not leave an empty file behind
                raise EnvironmentProblem(
                    f"database {self.safe_url} does not exist: run `ocop init`"
                )
        # Asked (``schema_revision``: is the version table there?) rather than read off a
        # failure: an unreachable, locked, damaged or foreign database is said as it is (and an
        # ``at_once`` attempt's ``WriterBusy`` passes through), not as "not initialised".
        revision = self.schema_revision()
        if revision is None:
            raise EnvironmentProblem(
                f"database {self.safe_url} is not initialised: run `ocop init`"
            )
        if revision != SCHEMA_REVISION:
            raise EnvironmentProblem(
                f"database schema is at revision {revision}, this ocop expects {SCHEMA_REVISION}: "
                "run `ocop init` to upgrade"
            )

    def is_superuser(self) -> bool:
        """True on PostgreSQL when the session's role is a superuser (it can bypass triggers)."""
        if self.is_sqlite:
            return False
        with self.read() as conn:
            return conn.execute(sa.text("SHOW is_superuser")).scalar() == "on"

    def checkpoint(self) -> None:
        """Copy what the WAL holds back into the database file without waiting for readers
        (SQLite only; the worker calls it after each sweep so no officer's commit has to)."""
        if self.is_sqlite:
            # On one of ``writes()``' kept connections (outside any transaction, as SQLite
            # requires), not the pool's: a server's event loop writes through the pool only
            # while a connection waits idle there (``write``), and would otherwise fall back to
            # its writer thread while the checkpoint borrowed it.
            db, idle = self._writer()
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                self._writer_done(db, idle)

    @property
    def safe_url(self) -> str:
        """The URL as messages show it: no password, in the userinfo or in the query."""
        url = sa.engine.make_url(self.url)
        query = {
            key: "***" if any(word in key.lower() for word in _SECRET_KEYS) else value
            for key, value in url.query.items()
        }
        return url.set(query=query).render_as_string(hide_password=True)

    def dispose(self) -> None:
        """Close every connection (the pool's and the kept writers'); new ones open on use."""
        idle, self._idle = self._idle, []
        quick, self._at_once_db = self._at_once_db, None
        for db in [*idle, quick] if quick is not None else idle:
            db.close()
        self.engine.dispose()

    def _writer(self) -> tuple[Any, list[Any] | None]:
        """A ``sqlite3`` connection for ``writes()`` and the idle list it goes back to.

        Checking a connection out of SQLAlchemy's pool and back in costs about as much as the
        BEGIN and COMMIT of a transition, so on an SQLite file the writers are taken out of the
        pool for good (``detach``: the pool forgets them and makes others for ``read``/``write``)
        and kept here between transactions, as Django keeps its connection per thread. A writer
        is used by one thread at a time (``list.pop`` and ``append`` are atomic); at most
        ``_IDLE_WRITERS`` wait, more are closed. Other pools (``:memory:``, whose database *is*
        its one connection) check out and in as before: the idle list returned is then None.
        """
        if self._idle:
            try:
                return self._idle.pop(), self._idle
            except IndexError:  # another thread took the last one meanwhile
                pass
        raw = self._raw_connection()
        if not isinstance(self.engine.pool, sa.pool.QueuePool):
            return _CheckedOut(raw), None
        db = raw.driver_connection  # (a detached fairy no longer knows it)
        raw.detach()
        return db, self._idle

    def _at_once_writer(self) -> Any:
        """``at_once``'s writer, opened here rather than by the pool: SQLite's busy wait (its
        settings' included) and the checkpoint on commit are off. Only the thread holding the
        write turn uses it."""
        db = self._at_once_db
        if db is None:
            import sqlite3

            database = self.sqlite_file
            if database is None:  # (the server uses at_once on a plain file URL only)
                raise WriterBusy(f"database {self.safe_url}: no writer of its own here")
            db = sqlite3.connect(database, timeout=0, check_same_thread=False)
            try:
                # made here, not by the pool: its settings must not wait for a lock either
                _configure_sqlite(db, 0, 0)
            except sqlite3.Error as exc:
                db.close()
                raise _busy_or(self, exc) from None
            self._at_once_db = db
        return db

    @contextmanager
    def holding(self) -> Iterator[None]:
        """On PostgreSQL, one pooled connection for every read (``PgReads``) and transition
        (``writes``) of this thread inside the block, instead of one checked out for each: the
        server's advance reads the token's row and the dossier's, then moves it, on one. A
        block inside another holds the outer one's."""
        if getattr(self._held, "lease", None) is not None:
            yield
            return
        lease = _Lease(self._raw_connection())
        self._held.lease = lease
        try:
            yield
        finally:
            self._held.lease = None
            lease.give_back()

    @contextmanager
    def _lease(self) -> Iterator[_Lease]:
        """A pooled connection for the block: ``holding``'s, else one from the pool, given back
        after (or thrown away if the block marked it ``broken``)."""
        held = getattr(self._held, "lease", None)
        if held is not None and not held.broken:
            yield held
            return
        lease = _Lease(self._raw_connection())
        try:
            yield lease
        finally:
            lease.give_back()

    @contextmanager
    def autocommit(self) -> Iterator[Any]:
        """A pooled psycopg connection (``holding``'s, if the thread holds one) in autocommit
        for the block, its errors mapped as ``Store.write`` maps them (``_refusal``). It goes
        back to the pool out of autocommit, as lent (SQLAlchemy runs transactions on it),
        unless it is lost or a failed ROLLBACK left it in a transaction (``pg_batch.reusable``):
        a refused value, a lock or statement timeout do not cost a connection."""
        import psycopg

        from .pg_batch import reusable

        with self._lease() as lease:
            db: Any = lease.connection
            try:
                db.autocommit = True
                yield db
            except psycopg.Error as exc:
                raise _refusal(self, exc) from None
            finally:
                if reusable(db):
                    db.autocommit = False
                else:
                    lease.broken = True

    def _raw_connection(self) -> Any:
        """A DB-API connection from the pool (SQLAlchemy's wrapper: ``driver_connection``,
        ``close`` gives it back), or "database unreachable"."""
        try:
            return self.engine.raw_connection()
        except sa.exc.DBAPIError as exc:
            raise _not_opened(self, exc) from None

    def _writer_done(self, db: Any, idle: list[Any] | None) -> None:
        """Keep a writer for the next transaction if it is idle and the store was not disposed
        meanwhile; close it otherwise."""
        if idle is None:
            db.close()  # _CheckedOut: back to the pool
        elif idle is self._idle and not db.in_transaction and len(idle) < _IDLE_WRITERS:
            idle.append(db)
        else:
            db.close()


#: Instant texts a store remembers at most (emptied when full; a day's timers use a handful).
_INSTANT_TEXTS = 4096
#: Idle ``writes()`` connections a store keeps (more threads writing at once open more).
_IDLE_WRITERS = 4


class _CheckedOut:
    """A pooled connection used as a plain ``sqlite3`` one; ``close`` returns it to the pool."""

    __slots__ = ("_raw", "execute", "executemany")

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        db = raw.driver_connection
        self.execute = db.execute
        self.executemany = db.executemany

    @property
    def in_transaction(self) -> bool:
        return bool(self._raw.driver_connection.in_transaction)

    def close(self) -> None:
        self._raw.close()


#: URL query keys whose values are secrets (``?password=…``, ``sslpassword``, tokens).
_SECRET_KEYS = ("password", "secret", "token", "passfile")


class _Lease:
    """A pooled connection lent for a while: ``connection`` (psycopg's), and whether it may
    go back to the pool (``broken``: not, it is thrown away)."""

    __slots__ = ("broken", "connection", "pooled")

    def __init__(self, pooled: Any) -> None:
        self.pooled = pooled
        self.connection: Any = pooled.driver_connection
        self.broken = False

    def give_back(self) -> None:
        if self.broken:
            self.pooled.invalidate()  # never given back to the pool
        self.pooled.close()


def _refusal(store: Store, exc: BaseException) -> OcopError:
    """A database's error as the one hierarchy says it, SQLAlchemy's and psycopg's alike (both
    name their classes after PEP 249): a value the database cannot hold (NUL, out of range) is
    bad input, a row someone else wrote a moment ago a conflict, anything else (operational)
    the database's error. On PostgreSQL a transaction it rolled back to break a deadlock or a
    serialization failure (SQLSTATE class 40) is a conflict too: tried again, it goes through."""
    kinds = {kind.__name__ for kind in type(exc).__mro__}
    if "DataError" in kinds:
        return UsageError(f"the database refused a value: {_first_line(exc)}")
    sqlstate = str(getattr(getattr(exc, "orig", None) or exc, "sqlstate", None) or "")
    if "IntegrityError" in kinds or sqlstate.startswith("40"):
        return Conflict(
            f"the change conflicts with one made meanwhile: {_first_line(exc)}; "
            "nothing was written, try again"
        )
    return EnvironmentProblem(f"database error ({store.safe_url}): {_first_line(exc)}")


def _not_opened(store: Store, exc: BaseException) -> OcopError:
    """A connection that could not be opened: "unreachable" (no server, no such file's folder,
    refused credentials), or what the database said of the file it found (not a database)."""
    if isinstance(exc, sa.exc.OperationalError):
        return EnvironmentProblem(f"database unreachable ({store.safe_url}): {_first_line(exc)}")
    return _refusal(store, exc)


def _busy_or(store: Store, exc: BaseException) -> OcopError:
    """A failed start of an ``at_once`` attempt (BEGIN IMMEDIATE, its writer's settings):
    ``WriterBusy`` when the database is locked, else the database's error."""
    from .sqlite_reads import locked

    if locked(exc):
        return WriterBusy(f"database busy ({store.safe_url}): {_first_line(exc)}")
    return EnvironmentProblem(f"database error ({store.safe_url}): {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


#: Pages of WAL after which a committing connection checkpoints (SQLite's default is 1,000).
WAL_AUTOCHECKPOINT_PAGES = 10_000


def _configure_sqlite(dbapi_conn: Any, busy_timeout_ms: int, autocheckpoint_pages: int) -> None:
    """A new SQLite connection's settings (the pool's, and ``Store.at_once``'s own writer)."""
    # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is deferred).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # the busy timeout first: it bounds the wait of the journal mode's lock too
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # An officer's commit should not pay for copying the WAL back into the database: the
    # worker checkpoints (passively) after every sweep; a commit only does it when the WAL
    # has grown past ~40 MB (no worker running), instead of every ~4 MB.
    cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint_pages)}")
    cursor.close()


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        _configure_sqlite(dbapi_conn, busy_timeout_ms, WAL_AUTOCHECKPOINT_PAGES)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ocop_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def insert_ignore(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]] | dict[str, Any],
    index_elements: list[str],
) -> int:
    """INSERT … ON CONFLICT DO NOTHING on either dialect; returns the rows actually inserted."""
    from sqlalchemy.dialects import postgresql, sqlite

    statement: sa.Insert
    if conn.dialect.name == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    else:
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    result = conn.execute(statement, rows)
    return max(result.rowcount, 0)


# --- the hot write path -------------------------------------------------------------------------
#
# A transition is a handful of statements; on SQLite, SQLAlchemy's per-statement machinery
# (compiled-cache lookup, parameter processing, result set-up, events) cost more than SQLite
# running them. ``Store.writes()`` hands the engine an object with the few operations a
# transition needs: over a plain ``sqlite3`` connection on SQLite (the same pooled connection,
# pragmas and BEGIN IMMEDIATE; the same text forms SQLAlchemy writes), over a pooled psycopg
# connection in three batches on PostgreSQL (``PgWrites``). Both are checked against Core by
# tests/test_store_writes.py.


def _sqlite_instant(value: datetime) -> str:
    """An aware instant as SQLAlchemy's SQLite DateTime stores it: naive UTC, microseconds."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database; pass an aware UTC instant")
    # the UTC form without its "+00:00": cheaper than .replace(tzinfo=None) first
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]


def _instant_columns(table: sa.Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, UTCDateTime))


def _scalar_defaults(table: sa.Table) -> dict[str, Any]:
    """Python-side column defaults (SQLModel's ``= value``), which Core would have filled in."""
    out = {}
    for column in table.columns:
        default = column.default
        if default is not None and getattr(default, "is_scalar", False):
            out[column.name] = default.arg  # type: ignore[attr-defined]
    return out


class CoreWrites:
    """A transition's writes through SQLAlchemy Core, inside the caller's transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn

    def lock_dossier(self, dossier_id: str) -> dict[str, Any] | None:
        return self.store.lock_dossier(self.conn, dossier_id)

    def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(table.insert(), rows)

    def cancel_timers(self, dossier_id: str) -> None:
        self.conn.execute(_CANCEL_TIMERS, {"b_dossier": dossier_id})

    def move_dossier(self, dossier_id: str, seen_version: int, values: dict[str, Any]) -> int:
        """UPDATE the dossier if it is still at ``seen_version``; the rows updated (0 or 1)."""
        return int(
            self.conn.execute(
                _MOVE_DOSSIER, {"b_id": dossier_id, "b_seen": seen_version, **values}
            ).rowcount
        )


_CANCEL_TIMERS = (
    timer_t.update()
    .where(timer_t.c.dossier_id == sa.bindparam("b_dossier"), PENDING)
    .values(status="cancelled")
)
_MOVE_DOSSIER = dossier_t.update().where(
    dossier_t.c.id == sa.bindparam("b_id"), dossier_t.c.version == sa.bindparam("b_seen")
)


class SqliteWrites:
    """The same writes over the pooled ``sqlite3`` connection, statements cached by sqlite3."""

    _LOCK = (
        "SELECT dossier.*, "
        "(SELECT seq FROM audit_entry WHERE audit_entry.dossier_id = dossier.id "
        "ORDER BY seq DESC LIMIT 1) AS audit_seq, "
        "(SELECT hash FROM audit_entry WHERE audit_entry.dossier_id = dossier.id "
        "ORDER BY seq DESC LIMIT 1) AS audit_hash "
        "FROM dossier WHERE dossier.id = ?"
    )
    _CANCEL = "UPDATE timer SET status = 'cancelled' WHERE dossier_id = ? AND status = 'pending'"
    _INSTANTS: ClassVar[dict[str, frozenset[str]]] = {
        t.name: _instant_columns(t) for t in (dossier_t, audit_t, timer_t)
    }
    _DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        t.name: _scalar_defaults(t) for t in (dossier_t, audit_t, timer_t)
    }
    #: An UPDATE's SQL and the positions of its instants by (purpose, columns): built once per
    #: shape; sqlite3 caches the prepared forms.
    _sql: ClassVar[dict[tuple[str, tuple[str, ...]], tuple[str, tuple[int, ...]]]] = {}
    #: An INSERT's plan by (table, columns of the first row): see ``_InsertPlan``.
    _inserts: ClassVar[dict[tuple[str, tuple[str, ...]], _InsertPlan]] = {}

    def __init__(self, dbapi: Any, texts: dict[datetime, str] | None = None) -> None:
        self.db = dbapi
        #: Instants already put in text form: ``now`` is in most rows of a transaction, and the
        #: timers' due instants are the same for every dossier entering a state that day (the
        #: store's dict, kept across transactions; see ``Store._writer``).
        self._texts: dict[datetime, str] = {} if texts is None else texts

    def _text(self, value: datetime) -> str:
        found = self._texts.get(value)
        if found is None:
            if len(self._texts) >= _INSTANT_TEXTS:
                self._texts.clear()
            found = self._texts[value] = _sqlite_instant(value)
        return found

    def lock_dossier(self, dossier_id: str) -> dict[str, Any] | None:
        row = _fetch_row(self.db.execute(self._LOCK, (dossier_id,)))
        if row is not None:
            for name in self._INSTANTS["dossier"]:
                row[name] = read_instant(row[name])
        return row

    def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        key = (table.name, tuple(rows[0]))
        plan = self._inserts.get(key)
        if plan is None:
            plan = self._inserts[key] = _InsertPlan(
                table.name, key[1], self._DEFAULTS[table.name], self._INSTANTS[table.name]
            )
        params = []
        texts = self._texts
        for row in rows:
            if row.keys() == plan.given:
                values = list(plan.take(row))
                for i in plan.instants:
                    if (value := values[i]) is not None:
                        values[i] = texts.get(value) or self._text(value)
                values += plan.tail
            else:
                # Core's executemany compiles the first row's columns too, and fails on a later
                # row without one of them: the same rule here, stated, not a second behaviour
                raise ValueError(
                    f"rows of one insert into {table.name} must name the same columns: "
                    f"{sorted(row)} is not {sorted(plan.given)}"
                )
            params.append(values)
        self.db.executemany(plan.sql, params)

    def cancel_timers(self, dossier_id: str) -> None:
        self.db.execute(self._CANCEL, (dossier_id,))

    def move_dossier(self, dossier_id: str, seen_version: int, values: dict[str, Any]) -> int:
        return int(self._queue_move(dossier_id, seen_version, values).rowcount)

    def _queue_move(self, dossier_id: str, seen_version: int, values: dict[str, Any]) -> Any:
        """The dossier's UPDATE, guarded by the version it was read at; its cursor."""
        names = tuple(values)
        key = ("dossier:move", names)
        found = self._sql.get(key)
        if found is None:
            instants = self._INSTANTS["dossier"]
            found = self._sql[key] = (
                f"UPDATE dossier SET {', '.join(f'{n} = ?' for n in names)} "
                "WHERE id = ? AND version = ?",
                tuple(i for i, n in enumerate(names) if n in instants),
            )
        sql, positions = found
        params = [*values.values(), dossier_id, seen_version]
        texts = self._texts
        for i in positions:
            if (value := params[i]) is not None:
                params[i] = texts.get(value) or self._text(value)
        return self.db.execute(sql, params)


class PgWrites(SqliteWrites):
    """``SqliteWrites``' statements on PostgreSQL, sent in batches: a transition is three round
    trips to the database whatever its number of statements — ``BEGIN``, the row's lock and
    the chain's head; then the writes; then ``COMMIT``.

    Each batch is one message of PostgreSQL's simple query protocol, its values bound by
    psycopg as literals (``pg_batch.SimpleBatch``: libpq's ``PQescapeLiteral`` on this
    connection; a NUL in a text refused, as a bound parameter would be). Why not bound on the
    server, one statement at a time or in psycopg's pipeline mode: on the server's one Python
    process every round trip costs tens of microseconds of CPU (the wake-up, psycopg's result
    machinery) and pipeline mode more still per statement; the same statements in batches took
    half the client's CPU (README, Benchmarks). The database parses the few short statements
    each time instead of reusing prepared ones, which its own CPU did not show.

    Instants are bound as the aware datetimes they are and read back in UTC (``pg_reads``),
    as ``UTCDateTime`` does.
    """

    # Plans of their own: a plan holds SQLite's text form of any instant default.
    _sql: ClassVar[dict[tuple[str, tuple[str, ...]], tuple[str, tuple[int, ...]]]] = {}
    _inserts: ClassVar[dict[tuple[str, tuple[str, ...]], _InsertPlan]] = {}

    #: The transaction's first batch, after its BEGIN. The head is a statement of its own (see
    #: ``_LOCK_FOR_UPDATE``): under READ COMMITTED each statement of a batch takes its own
    #: snapshot, so once the lock is held it sees the head a transaction we waited for wrote.
    _LOCK_HEAD = (
        "SELECT * FROM dossier WHERE id = ? FOR UPDATE",
        "SELECT seq, hash FROM audit_entry WHERE dossier_id = ? ORDER BY seq DESC LIMIT 1",
    )

    def __init__(self, conn: Any) -> None:
        from .pg_batch import SimpleBatch

        self._batch = SimpleBatch(conn)
        super().__init__(self._batch)

    def lock_dossier(self, dossier_id: str) -> dict[str, Any] | None:
        """BEGIN, the row locked ``FOR UPDATE`` and the chain's head: one round trip (the
        transaction's first: nothing is queued before the dossier is locked)."""
        from .pg_batch import UtcCursor

        cursor = self._batch.send(self._LOCK_HEAD, [dossier_id, dossier_id])
        row = _fetch_row(UtcCursor(cursor))
        cursor.nextset()
        head = cursor.fetchone()
        if row is None:
            return None
        row["audit_seq"], row["audit_hash"] = (None, None) if head is None else head
        return row

    def move_dossier(self, dossier_id: str, seen_version: int, values: dict[str, Any]) -> int:
        """The dossier's UPDATE, sent with the writes queued since the lock in one round trip;
        its row count (checked by the engine before the COMMIT)."""
        self._queue_move(dossier_id, seen_version, values)
        cursor = self._batch.send([])
        while cursor.nextset():  # to the last statement's result: the UPDATE's
            pass
        return int(cursor.rowcount)

    def commit(self) -> None:
        """Whatever is still queued, then COMMIT: one round trip."""
        self._batch.send([], commit=True)

    def rollback(self) -> None:
        """ROLLBACK, if a transaction is open; whatever is queued is dropped."""
        self._batch.rollback()

    def _text(self, value: datetime) -> Any:
        return value


_first = operator.itemgetter(0)


def _fetch_row(cursor: Any) -> dict[str, Any] | None:
    """A DB-API cursor's next row by column name, or None."""
    found = cursor.fetchone()
    return None if found is None else dict(zip(map(_first, cursor.description), found, strict=True))


class _InsertPlan:
    """An INSERT of rows with the columns ``given`` (the first row's, in its order), and the
    defaults of the table's other columns (SQLModel's ``= value``, which Core would fill in).

    A row with exactly these columns is turned into its parameters by ``take`` (one C call)
    with its instants (``instants``: positions) put in text form, then the defaults
    (``tail``). A row with other columns is refused, as Core's executemany refuses one that
    lacks a column of the first.
    """

    __slots__ = ("given", "instants", "sql", "tail", "take")

    def __init__(
        self,
        table: str,
        given: tuple[str, ...],
        defaults: dict[str, Any],
        instants: frozenset[str],
    ) -> None:
        rest = tuple(name for name in defaults if name not in given)
        names = given + rest
        self.sql = (
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        )
        self.given = frozenset(given)
        self.take: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            operator.itemgetter(*given) if len(given) > 1 else lambda row: (row[given[0]],)
        )
        self.instants = tuple(i for i, name in enumerate(given) if name in instants)
        self.tail = [
            _sqlite_instant(defaults[n])
            if n in instants and defaults[n] is not None
            else defaults[n]
            for n in rest
        ]


@contextmanager
def _sqlite_writes(store: Store) -> Iterator[SqliteWrites]:
    """BEGIN IMMEDIATE … COMMIT on a kept connection, errors mapped as ``Store.write`` does."""
    with store._write_turn() as attempt:
        if attempt is not None and isinstance(store.engine.pool, sa.pool.QueuePool):
            db = store._at_once_writer()
            try:
                yield from _sqlite_transaction(store, db, attempt)
            finally:
                if db.in_transaction:  # a failed ROLLBACK: not to be used again
                    store._at_once_db = None
                    db.close()
            store._at_once_commits += 1
            return
        if attempt is not None:  # an in-memory database: its one connection, as usual
            attempt.begun = True
        db, idle = store._writer()
        try:
            yield from _sqlite_transaction(store, db)
        finally:
            store._writer_done(db, idle)


@contextmanager
def _pg_writes(store: Store) -> Iterator[SqliteWrites]:
    """A transition's transaction in batches (``PgWrites``) on a pooled psycopg connection in
    autocommit (``Store.autocommit``: the batches say BEGIN and COMMIT themselves); the error
    that ended the transaction is the one told, even if its ROLLBACK fails too."""
    import psycopg

    with store.autocommit() as db:
        writes = PgWrites(db)
        try:
            yield writes
            writes.commit()
        except BaseException:
            with suppress(psycopg.Error):  # the error that ended it is the one to tell
                writes.rollback()
            raise


def _sqlite_transaction(
    store: Store, db: Any, attempt: AtOnce | None = None
) -> Iterator[SqliteWrites]:
    import sqlite3

    try:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if attempt is not None:
                raise _busy_or(store, exc) from None
            raise
        if attempt is not None:
            attempt.begun = True
        try:
            yield SqliteWrites(db, store._instant_texts)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise EnvironmentProblem(
            f"database error ({store.safe_url}): {str(exc).splitlines()[0]}"
        ) from None
