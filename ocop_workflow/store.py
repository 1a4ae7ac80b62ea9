"""SQLModel tables and database sessions; the only module that knows SQL dialects.

The tables are declared with SQLModel (the schema, migrations and typed rows) but the hot paths
use SQLAlchemy Core statements on ``Model.__table__``: an ORM session round trip costs ~1.8 ms, a
Core transaction on SQLite ~0.1 ms (design.md). SQLite writes run under ``BEGIN IMMEDIATE`` so two
writers never deadlock on a lock upgrade; PostgreSQL writes lock the dossier row ``FOR UPDATE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from .errors import Conflict, EnvironmentProblem, UsageError

#: The Alembic head this code expects; ``tests/test_migrations.py`` pins it to the scripts.
SCHEMA_REVISION = "0004"


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
    state: str = Field(index=True)
    stage: str  # not indexed: every transition would pay for it (migration 0003)
    state_entered_at: datetime = _utc_column(nullable=False)
    state_entry_seq: int
    deadline_at: datetime | None = _utc_column(nullable=True, index=True)
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
    at: datetime = _utc_column(nullable=False, index=True)
    data_before: str | None = None
    data_after: str
    prev_hash: str
    hash: str


class Timer(SQLModel, table=True):
    """A reminder, deadline, escalation or expiry that fires on its own: the row is the truth."""

    __tablename__ = "timer"
    __table_args__ = (
        # Pending timers only: a timer that is cancelled, fired or superseded leaves the index
        # (queries must say ``status = 'pending'`` literally — see PENDING — to use it).
        sa.Index(
            "ix_timer_pending_due",
            "due_at",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
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


dossier_t: sa.Table = SQLModel.metadata.tables["dossier"]
audit_t: sa.Table = SQLModel.metadata.tables["audit_entry"]
timer_t: sa.Table = SQLModel.metadata.tables["timer"]
notification_t: sa.Table = SQLModel.metadata.tables["notification"]
counter_t: sa.Table = SQLModel.metadata.tables["counter"]
lease_t: sa.Table = SQLModel.metadata.tables["lease"]

#: "The timer is pending", written as a literal: SQLite uses a partial index only when the
#: query repeats its WHERE term, and a bound parameter (``status = ?``) does not.
PENDING = timer_t.c.status == sa.literal_column("'pending'")


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
_LOCK_FOR_UPDATE = _lock_query().with_for_update(of=dossier_t)


def dumps(value: Any) -> str:
    """JSON as stored: UTF-8 text, Vietnamese intact, keys sorted so equal data is equal text."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class Store:
    """A database: an SQLAlchemy engine plus read and write transactions with the right locks."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000) -> None:
        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
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
        with self._connect(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (deferred on SQLite, so readers never block writers under WAL)."""
        with self._connect(write=False) as conn, conn.begin():
            yield conn

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise EnvironmentProblem(
                f"database unreachable ({self.safe_url}): {_first_line(exc)}"
            ) from None
        with conn:
            if self.is_sqlite:
                conn = conn.execution_options(ocop_write=write)
            try:
                yield conn
            except sa.exc.OperationalError as exc:
                raise EnvironmentProblem(
                    f"database error ({self.safe_url}): {_first_line(exc)}"
                ) from None
            except sa.exc.DataError as exc:  # a value the database cannot hold (NUL, range)
                raise UsageError(f"the database refused a value: {_first_line(exc)}") from None
            except sa.exc.IntegrityError as exc:  # a row someone else wrote a moment ago
                raise Conflict(
                    f"the change conflicts with one made meanwhile: {_first_line(exc)}; "
                    "nothing was written, try again"
                ) from None

    def lock_dossier(self, conn: Connection, dossier_id: str) -> sa.Row[Any] | None:
        """Load a dossier for update: ``FOR UPDATE`` on PostgreSQL, the write lock on SQLite.

        The row carries ``audit_seq`` and ``audit_hash``, the head of its audit chain, so a
        transition needs no second round trip to link its entry.
        """
        query = _LOCK_SQLITE if self.is_sqlite else _LOCK_FOR_UPDATE
        return conn.execute(query, {"dossier_id": dossier_id}).first()

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

    def check_schema(self) -> None:
        """Refuse to run against a database that ``ocop init`` has not brought up to date."""
        database = sa.engine.make_url(self.url).database
        if self.is_sqlite and database and database != ":memory:":
            from pathlib import Path

            if not Path(database).exists():  # do not leave an empty file behind
                raise EnvironmentProblem(
                    f"database {self.safe_url} does not exist: run `ocop init`"
                )
        try:
            with self.read() as conn:
                revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, EnvironmentProblem) as exc:
            message = str(getattr(exc, "message", exc))
            if "unreachable" in message:
                raise
            raise EnvironmentProblem(
                f"database {self.safe_url} is not initialised: run `ocop init`"
            ) from None
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

    @property
    def safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

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
