"""The library facade: everything a person can do, as one object built from a config and a clock.

The CLI, the worker, the demo and the HTTP server all call :class:`Ocop`; none of them builds or
holds an :class:`~ocop_workflow.engine.Engine` or a :class:`~ocop_workflow.store.Store`, nor reads
``OCOP_NOW`` below its own edge (tests/test_layers.py). Values come in as
Python values (a mapping of data fields, never ``K=V`` text) and go out as plain typed objects
(:mod:`~ocop_workflow.shapes`: :class:`~ocop_workflow.shapes.Dossier`, ``DossierDetail``,
``Page``, ``Advanced``, ``TriggerOption``, ``Timer``, ``Notification``, ``Attached``,
``Scoring``, ``Progress``, ``Verification``, ``WorkflowSummary``, ``Initialized``; and
:class:`~ocop_workflow.importer.ImportReport`, :class:`~ocop_workflow.sweep.SweepCounts`), each
with the one definition of its JSON shape (``to_json``/``document``) that the CLI prints
(``--json``, tables) and the server returns. The history is still plain documents (dicts) of
its shape (``shapes.HistoryEntry``, shared with the audit export).

Every method that acts or reads on behalf of a person takes that person (a :class:`User`) first:
the facade never decides who is calling; the edge does (``--as`` and the OS login on the command
line, a token on the server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .clock import Clock, FixedClock
from .config import Config, User
from .errors import NotFound, PermissionDenied, UsageError
from .inputs import may_be_token

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .auth import NewToken, TokenInfo
    from .calendar import WorkCalendar
    from .checkpoint import Checkpoint
    from .definitions import Registry
    from .engine import Engine
    from .importer import ImportReport
    from .lease import Lease
    from .policy import Policy
    from .shapes import (
        Advanced,
        Attached,
        Dossier,
        DossierDetail,
        HistoryEntry,
        Initialized,
        Notification,
        Page,
        Progress,
        Scoring,
        Timer,
        TriggerOption,
        Verification,
        WorkflowDetail,
        WorkflowSummary,
    )
    from .sqlite_reads import SqliteReads
    from .store import Store
    from .sweep import SweepCounts
    from .views import DossierFilter, Reads


#: How many rows one page holds at most: of dossiers, timers or the outbox (the API's ``limit``).
MAX_PAGE = 1000
#: The largest ``offset`` of a page: what SQLite's and PostgreSQL's OFFSET hold (a signed 64-bit
#: integer). One past it made the database driver fail (a server error), not the request.
MAX_OFFSET = 2**63 - 1
#: How many coming weeks the HTML report's deadline calendar may show.
MAX_WEEKS = 260


class Ocop:
    """The engine's one door. Cheap to re-clock: :meth:`at` shares the database and workflows."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        store: Store | None = None,
        registry: Registry | None = None,
        calendar: WorkCalendar | None = None,
        conceal: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        #: Answer "not found" for a dossier the caller may not read, even when acting on it
        #: (the server: existence must not leak). Off on the command line, whose user holds
        #: the database anyway and is better served by "you may not, because …".
        self.conceal = conceal
        #: ``reads`` may use its own plain sqlite3 connection (the CLI: one command, one
        #: thread); off by default, so a server's threads share only the pooled ``Store``.
        self.instant_reads = False
        #: The server's threads: each reads through a plain DB-API reader of its own
        #: (``thread_reads``); set by :meth:`read_per_thread`, shared by :meth:`at`.
        self.thread_reads: threading.local | None = None
        #: Called before the database is first opened (``store``, the plain readers): the
        #: CLI through a server refuses there a command that works on the database itself,
        #: while ``workflow validate`` and the like, which never open it, go on.
        self.opening_database: Callable[[], None] | None = None
        if store is not None:
            self.__dict__["store"] = store
        if registry is not None:
            self.__dict__["registry"] = registry
        if calendar is not None:
            self.__dict__["calendar"] = calendar

    # --- composition ----------------------------------------------------------------------

    @cached_property
    def store(self) -> Store:
        from .store import Store

        if self.opening_database is not None:
            self.opening_database()
        return Store(self.config.database_url)

    @cached_property
    def registry(self) -> Registry:
        from .definitions import Registry

        return Registry(self.config.workflows_dir)

    @cached_property
    def calendar(self) -> WorkCalendar:
        from .calendar import WorkCalendar

        return WorkCalendar(
            self.config.timezone, self.config.holidays, local=self.config.calendar_days
        )

    @cached_property
    def tz(self) -> tzinfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.config.timezone)

    @cached_property
    def engine(self) -> Engine:
        from .engine import Engine

        return Engine(
            self.checked_store(),
            self.registry,
            self.config,
            clock=self.clock.now,
            calendar=self.calendar,
        )

    def checked_store(self) -> Store:
        """The store, refusing to go on against a database ``ocop init`` has not prepared."""
        if not self.__dict__.get("_schema_checked"):
            self.store.check_schema()
            self.__dict__["_schema_checked"] = True
        return self.store

    def reads(self) -> Reads:
        """What ``dossier show``/``list`` read through: plain sqlite3 on a SQLite file when no
        ``Store`` is open yet (no SQLAlchemy import: the command starts in a fraction of the
        time), else the store's SQLAlchemy Core reads (PostgreSQL, or a store already in use)."""
        from .views import CoreReads

        if self.thread_reads is not None:
            mine: SqliteReads | bool | None = getattr(self.thread_reads, "reads", None)
            if mine is None:
                mine = self.thread_reads.reads = self._plain_reads()
            if not isinstance(mine, bool):
                return mine
        if self.instant_reads and "store" not in self.__dict__:
            reads = self.__dict__.get("_sqlite_reads")
            if reads is None:
                reads = self.__dict__["_sqlite_reads"] = self._sqlite_file_reads()
            if reads is not None:
                return reads
        return CoreReads(self.checked_store())

    def _sqlite_file_reads(self, busy_timeout_ms: int | None = None) -> SqliteReads | None:
        """Plain sqlite3 reads of the configured SQLite file, its schema checked (the hook
        ``opening_database`` asked first); None for any other URL."""
        from .sqlite_reads import BUSY_TIMEOUT_MS, SqliteReads, sqlite_path

        path = sqlite_path(self.config.database_url)
        if path is None:
            return None
        if self.opening_database is not None:
            self.opening_database()
        wait = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        reads = SqliteReads(self.config.database_url, path, busy_timeout_ms=wait)
        reads.check_schema()
        return reads

    def reading(
        self, *, token: str | None = None, page: str | None = None
    ) -> AbstractContextManager[object]:
        """One read around several: the plain readers (SQLite file, the server's) run the reads
        inside it in one read transaction (on PostgreSQL: on one pooled connection) instead of
        one each; ``CoreReads`` still opens one per read.

        ``token`` and ``page`` (the server's ``GET /dossiers/{id}``: a bearer token and the
        dossier whose page follows): on PostgreSQL the token's row and the page are read up
        front in one statement (``PgReads.page_ahead``); the token is still checked, by
        ``authenticate``, before anything of the page is used."""
        from contextlib import nullcontext

        reads = self.reads()
        ahead = getattr(reads, "page_ahead", None)
        if ahead is not None and token is not None and page is not None and may_be_token(token):
            from .auth import token_digest

            return ahead(token_digest(token), page)
        snapshot = getattr(reads, "snapshot", None)
        return nullcontext() if snapshot is None else snapshot()

    def acting(self, *, token: str | None, dossier: str) -> AbstractContextManager[object]:
        """A write request's block, from its token's check to its transaction's end: on
        PostgreSQL (the server's reader) on one pooled connection, the token's row and the
        dossier's read up front in one statement (``PgReads.acting_ahead``); the token is
        still checked, by ``authenticate``, before anything else is done. Elsewhere nothing."""
        from contextlib import nullcontext

        from .auth import token_digest

        ahead = getattr(self.reads(), "acting_ahead", None)
        if ahead is None or token is None or not may_be_token(token):
            return nullcontext()  # (a made-up token is refused before any read)
        return ahead(token_digest(token), dossier)

    def _plain_reads(self) -> SqliteReads | bool:
        """A plain reader: sqlite3 on a SQLite file, a pooled psycopg connection on
        PostgreSQL; False for any other URL (a SQLite URL with options: ``CoreReads``)."""
        reads = self._sqlite_file_reads(getattr(self.thread_reads, "busy_timeout_ms", None))
        if reads is not None:
            return reads
        store = self.checked_store()
        if store.dialect == "postgresql":
            from .pg_reads import PgReads

            return PgReads(store)
        return False

    def read_per_thread(self) -> None:
        """Read through plain DB-API statements (the server): on a SQLite file a ``sqlite3``
        connection per thread (one may not cross threads; closed when its thread ends), on
        PostgreSQL a pooled psycopg connection per read (``pg_reads``).

        SQLAlchemy's statement building, pooling and transactions cost several times what the
        database takes to answer a dossier's few indexed reads.
        """
        self.thread_reads = threading.local()

    def read_briefly_here(self, busy_timeout_ms: int) -> None:
        """This thread's plain SQLite reader (``read_per_thread``) waits at most
        ``busy_timeout_ms`` for a lock, then raises ``ReaderBusy``: the server's event loop,
        which must not sleep in SQLite's busy handler while other requests wait. Opens nothing
        (the reader, made later, starts with this timeout, its schema check included)."""
        local = self.thread_reads
        if local is None or getattr(local, "busy_timeout_ms", None) == busy_timeout_ms:
            return
        local.busy_timeout_ms = busy_timeout_ms
        mine = getattr(local, "reads", None)
        if mine is not None and not isinstance(mine, bool):
            mine.wait_at_most(busy_timeout_ms)

    def close(self) -> None:
        """Close the plain sqlite3 connection of ``reads``, if one was opened."""
        reads = self.__dict__.pop("_sqlite_reads", None)
        if reads is not None:
            reads.close()

    def dispose(self) -> None:
        """Close every connection this facade opened: the plain sqlite3 reader and the store's
        pool (the end of a command; ``ocop serve`` before its processes open their own)."""
        self.close()
        store = self.__dict__.get("store")
        if store is not None:
            store.dispose()

    def at(self, clock: Clock) -> Ocop:
        """The same facade on another clock (a request with its own rehearsal instant)."""
        other = Ocop(
            self.config,
            clock,
            store=self.store,
            registry=self.registry,
            calendar=self.calendar,
            conceal=self.conceal,
        )
        other.__dict__["_schema_checked"] = self.__dict__.get("_schema_checked", False)
        other.thread_reads = self.thread_reads
        if "policy" in self.__dict__:
            other.__dict__["policy"] = self.policy
        return other

    def now(self) -> datetime:
        return self.clock.now()

    def user(self, key: str) -> User:
        return self.config.user(key)

    # --- reading --------------------------------------------------------------------------

    def _row(
        self, actor: User | None, dossier_id: str, *, acting: bool = False
    ) -> Mapping[str, Any]:
        """A dossier the actor may see. One they may not is "not found" when concealing (the
        server), else a refusal — or, for an act, left to the act's own policy check, which
        names every reason."""
        from .views import get_dossier

        row = get_dossier(self.reads(), dossier_id, hint=not self.conceal)
        if actor is None or self.may_see(actor, row):
            return row
        if self.conceal:
            raise NotFound(f"dossier {dossier_id} not found")
        if not acting:
            self.policy.check_read(actor, row)
        return row

    @cached_property
    def policy(self) -> Policy:
        from .policy import Policy

        return Policy(self.config, self.registry)

    def may_see(self, actor: User, row: Mapping[str, Any]) -> bool:
        """Whether ``actor`` may read this dossier: the policy decides."""
        return self.policy.can_read(actor, row)

    def check_reads_all(self, actor: User, what: str) -> None:
        """Province-wide reads (the audit trail, the progress report) are for those the policy
        lets read every dossier: a partial reader would learn of dossiers it may not see."""
        if not self.policy.reads_all(actor):
            raise PermissionDenied(
                f"{actor.key} may read only some dossiers: {what} is for those who read them all"
            )

    def dossier(self, actor: User | None, dossier_id: str) -> Dossier:
        """One dossier as ``dossier list`` lists it (its state, stage, deadline): the light read
        of ``show``, without its timers, documents and triggers."""
        from .views import dossier_of

        return dossier_of(self._row(actor, dossier_id), self.registry, self.now(), self.tz)

    def show(self, actor: User | None, dossier_id: str) -> DossierDetail:
        """``dossier show``: the dossier, its deadline and why, timers, documents, triggers."""
        from .views import show_dossier

        with self.reading():  # the dossier, its timers and its first entry: one snapshot
            row = self._row(actor, dossier_id)
            return show_dossier(self.reads(), self.registry, dossier_id, self.now(), self.tz, row)

    def list_dossiers(
        self,
        actor: User | None,
        filters: DossierFilter,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> Page:
        """``dossier list``: the dossiers the actor may see, filtered, one page.

        The page and the total are counted by the database (the policy's ``read_filter`` in the
        WHERE clause), so a page of a province's dossiers costs one page, not the whole table.
        ``overdue`` needs each dossier's final state from its workflow, so it is filtered here.
        """
        check_page(limit, offset)
        from .shapes import Page

        if filters.overdue:
            items = list(self.iter_dossiers(actor, filters))
            end = None if limit is None else offset + limit
            return Page(items[offset:end], len(items), limit, offset)
        import sqlalchemy as sa

        from .store import dossier_t
        from .views import _filtered, dossier_of

        filters.check(self.registry)
        now = self.now()
        filters.check_commune(self.config, self.reads(), lambda: self._limited(actor))
        clause = self.policy.read_filter(actor) if actor is not None else None
        rows = _filtered(sa.select(dossier_t).order_by(dossier_t.c.id), filters, now)
        count = _filtered(sa.select(sa.func.count()).select_from(dossier_t), filters, now)
        if clause is not None:
            rows, count = rows.where(clause), count.where(clause)
        rows = rows.offset(offset) if limit is None else rows.limit(limit).offset(offset)
        with self.checked_store().read() as conn:
            total = int(conn.execute(count).scalar_one())
            found = [dict(r._mapping) for r in conn.execute(rows)]
        items = [
            dossier_of(row, self.registry, now, self.tz)
            for row in found
            if actor is None or self.may_see(actor, row)
        ]
        return Page(items, total, limit, offset)

    def count_dossiers(self, actor: User | None, filters: DossierFilter) -> int:
        """How many dossiers :meth:`iter_dossiers` walks (an export's progress bar): counted by
        the database with the policy's read filter, so a commune officer's bar counts their
        commune's, not the province's (with ``overdue``, an upper bound)."""
        import sqlalchemy as sa

        from .store import dossier_t
        from .views import _filtered

        count = _filtered(sa.select(sa.func.count()).select_from(dossier_t), filters, self.now())
        clause = self.policy.read_filter(actor) if actor is not None else None
        if clause is not None:
            count = count.where(clause)
        with self.checked_store().read() as conn:
            return int(conn.execute(count).scalar_one())

    def _limited(self, actor: User | None) -> tuple[Store, Any] | None:
        """For one who may read only some dossiers: the store and the policy's read filter
        (SQLAlchemy: asked for only when needed, so a plain SQLite read imports none)."""
        clause = self.policy.read_filter(actor) if actor is not None else None
        return None if clause is None else (self.checked_store(), clause)

    def iter_dossiers(self, actor: User | None, filters: DossierFilter) -> Iterator[Dossier]:
        """Every dossier the actor may see, filtered, streamed (for exports)."""
        from .views import list_dossiers

        filters.check(self.registry)
        filters.check_commune(self.config, self.reads(), lambda: self._limited(actor))
        keep = None if actor is None else (lambda row: self.may_see(actor, row))
        yield from list_dossiers(
            self.reads(), self.registry, filters, self.now(), self.tz, keep=keep
        )

    def history(self, actor: User | None, dossier_id: str) -> list[HistoryEntry]:
        """The dossier's audit trail, oldest first (for those who may see the dossier)."""
        from .views import history

        self._row(actor, dossier_id)
        return history(self.checked_store(), dossier_id, self.tz)

    def triggers(self, actor: User, dossier_id: str) -> list[TriggerOption]:
        """For ``actor``: each trigger from the current state, allowed or not, and every why not."""
        from .shapes import TriggerOption

        self._row(actor, dossier_id, acting=True)
        return [
            TriggerOption(
                trigger=t["trigger"],
                to=t["to"],
                label=t["label"],
                allowed=t["allowed"],
                reasons=tuple(t["reasons"]),
                needs_reason=t["needs_reason"],
            )
            for t in self.engine.triggers(dossier_id, actor)
        ]

    def timers(
        self,
        actor: User | None,
        *,
        dossier_id: str | None = None,
        due: bool = False,
        include_all: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Timer]:
        """``timers list``: the timers of the dossiers ``actor`` may see, soonest first (a page
        of them with ``limit``), chosen by the database (``_visible``)."""
        from .views import list_timers

        check_page(limit, offset)
        if dossier_id is not None:
            self._row(actor, dossier_id)  # an unknown id is exit 3, not "no timers"
        rows = list_timers(
            self.checked_store(),
            self.tz,
            dossier_id=dossier_id,
            due_before=self.now() if due else None,
            include_all=include_all,
            visible=self._visible(actor),
            limit=limit,
            offset=offset,
        )
        return list(rows)

    def notifications(
        self,
        actor: User | None,
        *,
        status: str | None = None,
        dossier_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Notification]:
        """``notifications list``: the outbox entries of the dossiers ``actor`` may see, oldest
        first (a page of them with ``limit``), chosen by the database (``_visible``)."""
        from .views import list_notifications

        check_page(limit, offset)
        if dossier_id is not None:
            self._row(actor, dossier_id)
        rows = list_notifications(
            self.checked_store(),
            self.tz,
            status=status,
            dossier_id=dossier_id,
            visible=self._visible(actor),
            limit=limit,
            offset=offset,
        )
        return list(rows)

    def _visible(self, actor: User | None) -> sa.ColumnElement[bool] | None:
        """The dossiers whose timers and outbox entries ``actor`` sees, as a clause on
        ``dossier_t`` the lists join on (``views.of_visible``): the policy's ``read_filter``;
        true for one who reads every dossier (the rows of dossiers that exist: not a
        checkpoint's outbox entries, whose "dossier" is ``-``); None, no join at all, for
        nobody in particular (the command line's holder of the database sees every row).

        In the query, not a ``can_read`` per row: sorting the rows here read every row of the
        province and then each of their dossiers, one statement apiece, for a producer who
        sees one."""
        if actor is None:
            return None
        clause = self.policy.read_filter(actor)
        if clause is not None:
            return clause
        import sqlalchemy as sa

        return sa.true()

    def document_file(self, actor: User, dossier_id: str, sha256: str) -> tuple[Path, str]:
        """The stored file of one of a dossier's documents, and its recorded name."""
        import json

        from .documents import blob_path

        row = self._row(actor, dossier_id)
        for document in json.loads(row["data"]).get("documents", []):
            if document.get("sha256") == sha256:
                path = blob_path(self.config.documents_dir, sha256)
                if not path.is_file():
                    raise NotFound(f"the stored file of document {document.get('name')} is missing")
                return path, str(document.get("name") or sha256)
        raise NotFound(f"dossier {dossier_id} has no document with sha256 {sha256}")

    # --- acting ---------------------------------------------------------------------------

    def register(
        self,
        actor: User,
        *,
        product: str,
        producer: str,
        commune: str,
        group: str | None = None,
        workflow: str | None = None,
        dossier_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Dossier:
        """A new dossier in its workflow's initial state; returns it as ``dossier list`` lists."""
        from .views import dossier_of

        row = self.engine.register(
            actor,
            product=product,
            producer=producer,
            commune=commune,
            group=group,
            workflow=workflow,
            dossier_id=dossier_id,
            data=data if data is not None else {},
        )
        return dossier_of(row, self.registry, self.now(), self.tz)

    def advance(
        self,
        actor: User,
        dossier_id: str,
        trigger: str,
        *,
        reason: str | None = None,
        data: Mapping[str, Any] | None = None,
        expect_version: int | None = None,
    ) -> Advanced:
        """Fire ``trigger`` as ``actor`` (one transaction; a refusal writes nothing).

        The server's reader of every dossier has nothing to be hidden from: the transaction's
        own "not found" answers, without a read before it (one statement less on the busiest
        path). Anyone else's view is asked of a read first, so that a dossier they may not see
        is "not found" at once, like one that does not exist — never after waiting for its
        row's lock, which would tell that it exists — and the command line's "did you mean"
        for a mistyped id does not wait for another writer either."""
        from .shapes import Advanced

        if not (self.conceal and self.policy.reads_all(actor)):
            self._row(actor, dossier_id, acting=True)
        moved = self.engine.advance(
            dossier_id,
            trigger,
            actor,
            reason=reason,
            data=data if data is not None else {},
            expect_version=expect_version,
            hint=not self.conceal,
        )
        return Advanced.from_moved(moved, self.tz)

    def attach(self, actor: User, dossier_id: str, kind: str, source: Path) -> Attached:
        """Store a file and record it on the dossier as a document of ``kind`` (audited)."""
        from .documents import attach
        from .shapes import Attached

        self._row(actor, dossier_id, acting=True)
        return Attached.from_document(attach(self.engine, dossier_id, actor, kind, source), self.tz)

    def attach_stream(
        self,
        actor: User,
        dossier_id: str,
        kind: str,
        name: str,
        stream: IO[bytes],
        *,
        max_bytes: int | None = None,
    ) -> Attached:
        """Attach what ``stream`` holds under the file name ``name`` (an upload), refusing more
        than ``max_bytes`` before anything is stored."""
        import tempfile

        clean = safe_file_name(name)
        self._row(actor, dossier_id, acting=True)
        limit = self.config.max_document_bytes if max_bytes is None else max_bytes
        self.config.documents_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.config.documents_dir, prefix=".upload-") as tmp:
            target = Path(tmp) / clean
            size = 0
            with target.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        from .errors import PayloadTooLarge

                        raise PayloadTooLarge(
                            f"{clean}: larger than the limit of {limit:,} bytes "
                            "([documents] max_bytes)"
                        )
                    out.write(chunk)
            return self.attach(actor, dossier_id, kind, target)

    def score(
        self,
        actor: User,
        dossier_id: str,
        *,
        member: str,
        parts: Mapping[str, float],
        note: str | None = None,
        council: str | None = None,
    ) -> Scoring:
        """A council member's score (entered by the member or the chair)."""
        from . import council as councils
        from .shapes import Scoring

        self._row(actor, dossier_id, acting=True)
        recorded = councils.record_score(
            self.engine,
            dossier_id,
            actor,
            member=member,
            parts=parts,
            note=note,
            council_key=council,
        )
        return Scoring.from_document(recorded)

    def close_scoring(self, actor: User, dossier_id: str, *, council: str | None = None) -> Scoring:
        """The chair closes the round: mean score, stars."""
        from . import council as councils
        from .shapes import Scoring

        self._row(actor, dossier_id, acting=True)
        closed = councils.close_scoring(self.engine, dossier_id, actor, council_key=council)
        return Scoring.from_document(closed)

    def rescore(
        self,
        actor: User,
        dossier_id: str,
        *,
        reason: str | None,
        member: str | None = None,
        council: str | None = None,
    ) -> Scoring:
        """The chair clears the scores (or one member's) to redo them."""
        from . import council as councils
        from .shapes import Scoring

        self._row(actor, dossier_id, acting=True)
        cleared = councils.rescore(
            self.engine, dossier_id, actor, reason=reason, member=member, council_key=council
        )
        return Scoring.from_document(cleared)

    def import_file(
        self,
        actor: User,
        path: Path,
        *,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        from .importer import import_file

        return import_file(self.engine, actor, path, dry_run=dry_run, progress=progress)

    # --- the database ----------------------------------------------------------------------

    def init_database(self) -> Initialized:
        """``ocop init``: create or upgrade the schema (idempotent, safe on every start), and
        what its owner must hear of: a SQLite file other logins can read, a superuser's session
        (it can rewrite the audit trail and bypass its triggers)."""
        from .migrate import exposed_sqlite_file, upgrade
        from .shapes import Initialized

        before, after = upgrade(self.store)
        return Initialized(
            database=self.store.safe_url,
            revision_before=before,
            revision=after,
            exposed=exposed_sqlite_file(self.store),
            superuser=self.store.is_superuser(),
        )

    # --- the scheduler's work -------------------------------------------------------------

    def sweep(self, *, progress: Callable[[int], None] | None = None) -> SweepCounts:
        """Fire every due timer and deliver pending notifications, as ``system``."""
        from .sweep import run_sweep

        return run_sweep(self.engine, self.now(), progress=progress)

    def count_due(self) -> int:
        """How many timers are due (``ocop sweep``'s progress bar; the due index answers)."""
        from .sweep import count_due

        return count_due(self.engine, self.now())

    def flush_wal(self) -> None:
        """On SQLite, copy the WAL back into the database file without waiting for readers:
        the worker does it after each sweep so that no officer's commit has to."""
        self.checked_store().checkpoint()

    def scheduled_checkpoint(self) -> Path | None:
        """The signed checkpoint of every chain head that ``[audit]`` schedules, written (and
        queued for its recipients) when one is due; None when not due or not configured. The
        worker's, after each sweep: a checkpoint that fails must not stop the deadlines."""
        from .checkpoint import write_scheduled

        return write_scheduled(self.checked_store(), self.config.audit, self.now())

    def worker_lease(self, holder: str, ttl: timedelta) -> Lease | None:
        """The lease ``holder`` must hold to sweep a SQLite database (only one worker may), or
        None on PostgreSQL, where any number of workers sweep side by side."""
        store = self.checked_store()
        if not store.is_sqlite:
            return None
        from .lease import Lease

        return Lease(store, holder, ttl)

    def check_database(self) -> None:
        """Refuse, now, a database ``ocop init`` has not prepared: a long-running process (the
        worker, the server) says so as it starts, not at its first sweep or request."""
        self.checked_store()

    # --- logins -----------------------------------------------------------------------------

    def set_password(self, user_key: str, password: str) -> None:
        from . import auth

        auth.set_password(self.checked_store(), self.config, user_key, password, self.now())

    def create_token(
        self,
        user_key: str,
        *,
        expires_days: float | None = None,
        label: str | None = None,
    ) -> NewToken:
        from datetime import timedelta

        from . import auth
        from .inputs import check_text

        expires = None
        if expires_days is not None:
            if not 0 < expires_days <= auth.MAX_TOKEN_DAYS:  # NaN fails this too
                raise UsageError(
                    f"a token lasts more than 0 and at most {auth.MAX_TOKEN_DAYS} days, "
                    f"not {expires_days}",
                    fields=("expires_days",),
                )
            expires = timedelta(days=expires_days)
        if label is not None:
            check_text(label, "label", field="label")
        return auth.create_token(
            self.checked_store(), self.config, user_key, self.now(), expires=expires, label=label
        )

    def tokens(self, user_key: str | None = None) -> list[TokenInfo]:
        from . import auth

        return auth.list_tokens(self.checked_store(), user_key)

    def revoke_token(self, token_id: int, *, user_key: str | None = None) -> None:
        from . import auth

        auth.revoke_token(self.checked_store(), token_id, self.now(), user_key=user_key)

    def authenticate(self, token: str) -> tuple[User, int]:
        """The person a bearer token belongs to (and the token's id)."""
        from . import auth

        lookup = getattr(self.reads(), "api_token", None)  # a thread's plain sqlite3 reader
        return auth.authenticate(
            self.checked_store(), self.config, token, self.now(), lookup=lookup
        )

    def login(self, user_key: str, password: str, address: str) -> NewToken:
        from . import auth

        return auth.login(
            self.checked_store(), self.config, user_key, password, address, self.now()
        )

    # --- workflows ------------------------------------------------------------------------

    def workflows(self) -> list[WorkflowSummary]:
        """``workflow list``: every workflow that loads (``registry.unavailable()`` names the
        others), the default marked."""
        from .workflow_info import summary

        return [summary(self, wf) for wf in self.registry.loadable()]

    def workflow(self, actor: User | None, name: str) -> WorkflowDetail:
        """``workflow show``: states, stages, triggers, roles, deadlines, and the dossiers on it
        that ``actor`` may see (all of them for a reader holding the database)."""
        from .workflow_info import describe

        clause = self.policy.read_filter(actor) if actor is not None else None
        return describe(self, name, clause)

    def migrate_workflow(
        self,
        actor: User,
        *,
        source: str,
        target: str,
        plan: str | Path,
        dry_run: bool,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """``workflow migrate``: the dossiers in flight on ``source`` put on ``target`` as the
        ``plan`` maps them, audited (``dry_run``: the pre-flight report only). The report is
        the document ``rule_migration.migrate`` returns (or raises with, when refused)."""
        from .rule_migration import migrate

        return migrate(
            self.engine,
            source_name=source,
            target_name=target,
            plan_path=plan,
            actor=actor,
            now=self.now(),
            dry_run=dry_run,
            reason=reason,
        )

    def diagram(self, name: str, fmt: str = "mermaid") -> str:
        """``workflow diagram``: the state diagram as Mermaid, Graphviz DOT or SVG text."""
        from .diagram import render

        return render(self.registry.get(name), fmt)

    # --- reports and audit ----------------------------------------------------------------

    def progress(self, actor: User | None, year: int) -> Progress:
        """The progress report of ``year`` (province-wide: for those who read every dossier)."""
        from .inputs import check_year
        from .report import progress
        from .shapes import Progress

        check_year(year, "year")
        if actor is not None:
            self.check_reads_all(actor, "the progress report")
        return Progress.from_document(
            progress(self.checked_store(), self.registry, self.config, year, self.now(), self.tz)
        )

    def report_html(self, actor: User | None, year: int, *, weeks: int = 4) -> str:
        """``report html``: the year's self-contained page (province-wide, like ``progress``:
        for those who read every dossier)."""
        from .html_report import render_year
        from .inputs import check_year

        check_year(year, "year")
        if not 1 <= weeks <= MAX_WEEKS:
            raise UsageError(f"weeks must be between 1 and {MAX_WEEKS}")
        if actor is not None:
            self.check_reads_all(actor, "the HTML report")
        return render_year(self, year, weeks=weeks)

    def audit_verify(
        self,
        actor: User | None,
        dossier_id: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        checkpoints: Sequence[Checkpoint] = (),
    ) -> Verification:
        """Recompute the hash chains (and re-hash stored documents); the chains must still
        extend every head the signed ``checkpoints`` saw (``checkpoint.read``/``check`` checked
        their signatures)."""
        from .audit import verify
        from .checkpoint import anchors
        from .shapes import (
            Verification,
        )
        from .views import imported

        if actor is not None:
            self.check_reads_all(actor, "the audit trail")
        report = verify(
            self.checked_store(),
            dossier_id,
            self.config.documents_dir,
            progress=progress,
            anchors=anchors(checkpoints) if checkpoints else None,
        )
        if dossier_id is not None and report.dossiers_checked == 0 and report.ok:
            raise NotFound(f"dossier {dossier_id} not found: neither the dossier nor any history")
        return Verification(
            report, tuple(imported(self.checked_store(), dossier_id)), tuple(checkpoints)
        )

    def count_audit_entries(
        self, actor: User | None, dossier_id: str | None = None, *, since: datetime | None = None
    ) -> int:
        """How many entries :meth:`audit_verify` or :meth:`audit_export` will walk (the length
        of a progress bar)."""
        from .audit import count_entries

        if actor is not None:
            self.check_reads_all(actor, "the audit trail")
        return count_entries(self.checked_store(), dossier_id, since)

    def sign_checkpoint(self, actor: User | None, signing_key: Path) -> dict[str, Any]:
        """``audit checkpoint``: every chain head as it is now, signed with ``signing_key``
        (the document ``checkpoint.write`` saves and ``audit verify --checkpoint`` reads)."""
        from .checkpoint import build

        if actor is not None:
            self.check_reads_all(actor, "the audit trail")
        return build(self.checked_store(), signing_key, self.now())

    def audit_export(
        self,
        actor: User | None,
        out: IO[str],
        *,
        fmt: str = "jsonl",
        since: datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """``audit export``: the trail written to ``out`` as it is read; the entries written."""
        from .audit import export

        if actor is not None:
            self.check_reads_all(actor, "the audit trail")
        return export(
            self.checked_store(), out, fmt=fmt, since=since, timezone=self.tz, progress=progress
        )

    def audit_export_text(
        self, actor: User | None, *, fmt: str = "jsonl", since: datetime | None = None
    ) -> Iterator[str]:
        """The export ``audit_export`` writes, as pieces of text read while they are taken (the
        server's response: its memory does not grow with the trail). Who may is decided now,
        before anything is read, not when the first piece is asked for."""
        from .audit import export_text

        if actor is not None:
            self.check_reads_all(actor, "the audit trail")
        return export_text(self.checked_store(), fmt=fmt, since=since, timezone=self.tz)


def check_page(limit: int | None, offset: int) -> None:
    """A page's bounds: ``limit`` from 1 to ``MAX_PAGE`` (None: no limit), ``offset`` what the
    databases' OFFSET holds (one past it made the driver fail: a server error, not the
    request's)."""
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be between 1 and {MAX_PAGE}", fields=("limit",))
    if not 0 <= offset <= MAX_OFFSET:
        raise UsageError(f"offset must be between 0 and {MAX_OFFSET}", fields=("offset",))


def safe_file_name(name: str) -> str:
    """The last component of an uploaded file's name, refused when empty, a path trick, or
    more than a file system takes: 255 bytes of UTF-8 (86 Vietnamese letters with their
    diacritics are more), or text that is not UTF-8 at all (a lone surrogate)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    try:
        size = len(base.encode())
    except UnicodeEncodeError:
        size = 0
    if not base or base in {".", ".."} or "\x00" in base or not 0 < size <= 255:
        raise UsageError(f"file name {name!r}: give a plain file name of at most 255 bytes")
    return base


def fixed(config: Config, instant: datetime, **shared: Any) -> Ocop:
    """A facade frozen at ``instant`` (tests, rehearsal steps)."""
    return Ocop(config, FixedClock(instant), **shared)
