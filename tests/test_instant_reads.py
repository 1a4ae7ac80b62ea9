"""``dossier show`` / ``dossier list`` on SQLite read through plain sqlite3 (sqlite_reads.py).

What an officer relies on: the reading commands start without importing SQLAlchemy, SQLModel,
pydantic, transitions or holidays (those imports cost more than the whole command), and they
print exactly what the SQLAlchemy Core read path prints — filters, policy, hints and all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ocop_workflow import sqlite_reads, store
from ocop_workflow.instants import read_instant
from ocop_workflow.views import DossierFilter
from tests.conftest import Workspace, write_config

T0 = "2025-03-03T09:00:00+07:00"
LATER = "2025-09-01T09:00:00+07:00"
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "transitions", "holidays")

#: Runs ``ocop ARGS`` through cli.main in a fresh interpreter, then prints which of HEAVY it
#: imported (cli.main ends in sys.exit, so the report is made in a finally).
PROBE = """
import json, sys
from ocop_workflow import cli
try:
    cli.main(sys.argv[1:])
finally:
    heavy = [m for m in {heavy!r} if m in sys.modules]
    sys.stderr.write("HEAVY=" + json.dumps(heavy) + "\\n")
"""


def _register(ws: Workspace, dossier_id: str, *, commune: str = "Ia Le", user: str) -> None:
    ws.run(
        "dossier",
        "register",
        "--product",
        f"Cà phê {dossier_id}",
        "--producer",
        "HTX Cà phê",
        "--commune",
        commune,
        "--id",
        dossier_id,
        user=user,
        now=T0,
        check=True,
    )


@pytest.fixture
def two_dossiers(sqlite_workspace: Workspace) -> Workspace:
    _register(sqlite_workspace, "IALE-1", user="lan")
    _register(sqlite_workspace, "IAPHANG-1", commune="Ia Phang", user="tuan")
    return sqlite_workspace


def _heavy_imports(ws: Workspace, *args: str) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ws.env(OCOP_NOW=LATER),
        cwd=ws.root,
        timeout=120,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("HEAVY="), done.stderr
    return done.returncode, json.loads(last.removeprefix("HEAVY=")), done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("dossier", "show", "IALE-1"),
        ("dossier", "show", "IALE-1", "--json"),
        ("dossier", "list"),
        ("dossier", "list", "--json", "--commune", "Ia Le", "--overdue"),
        ("--as", "lan", "dossier", "list"),  # a partial reader: its read filter is not built
        # nor for a commune the configuration knows (open communes: no dossier is asked)
        ("--as", "lan", "dossier", "list", "--commune", "Ia Le"),
    ],
)
def test_dossier_show_and_list_on_sqlite_import_no_sqlalchemy_nor_sqlmodel(
    two_dossiers: Workspace, args: tuple[str, ...]
) -> None:
    code, heavy, stdout = _heavy_imports(two_dossiers, *args)
    assert code == 0
    assert "IALE-1" in stdout
    assert heavy == []


def test_unknown_dossier_on_sqlite_still_hints_without_sqlalchemy(two_dossiers: Workspace) -> None:
    code, heavy, _ = _heavy_imports(two_dossiers, "dossier", "show", "iale-1")
    assert code == 3
    assert heavy == []


def _documents(ws: Workspace, instant: bool, user: str | None) -> dict[str, Any]:
    app = ws.app(user=user, now=LATER)
    try:
        ocop = app.ocop
        ocop.instant_reads = instant
        actor = app.actor() if user else None
        out: dict[str, Any] = {"reads": type(ocop.reads()).__name__}
        for name, filters in {
            "all": DossierFilter(),
            "commune": DossierFilter(commune="Ia Le"),
            "overdue": DossierFilter(overdue=True),
            "state": DossierFilter(state="registration", workflow="ocop-1489"),
        }.items():
            out[name] = [d.to_json() for d in ocop.iter_dossiers(actor, filters)]
        out["show"] = ocop.show(actor, "IALE-1").to_json()
        return out
    finally:
        app.close()


@pytest.mark.parametrize("user", [None, "lan"])
def test_plain_sqlite_reads_give_the_documents_of_the_sqlalchemy_reads(
    two_dossiers: Workspace, user: str | None
) -> None:
    thin = _documents(two_dossiers, True, user)
    core = _documents(two_dossiers, False, user)
    assert (thin.pop("reads"), core.pop("reads")) == ("SqliteReads", "CoreReads")
    assert thin == core
    assert core["show"]["timers"]  # the pending timers were compared, not two empty lists
    assert any(d["overdue"] for d in core["overdue"])
    seen = {d["id"] for d in core["all"]}
    assert seen == ({"IALE-1"} if user == "lan" else {"IALE-1", "IAPHANG-1"})


def test_plain_sqlite_reads_refuse_an_uninitialised_database_as_the_store_does(
    tmp_path: Any,
) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    url = f"sqlite:///{path}"
    with pytest.raises(Exception) as thin:
        sqlite_reads.SqliteReads(url, str(path)).check_schema()
    with pytest.raises(Exception) as core:
        store.Store(url).check_schema()
    assert (type(thin.value), str(thin.value)) == (type(core.value), str(core.value))
    assert "not initialised" in str(core.value)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///ocop.db", "ocop.db"),
        ("sqlite:////var/lib/ocop.db", "/var/lib/ocop.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///ocop.db?timeout=5", None),
        ("postgresql+psycopg://postgres@127.0.0.1/test", None),
    ],
)
def test_only_a_plain_sqlite_file_url_takes_the_plain_read_path(url: str, path: str | None) -> None:
    assert sqlite_reads.sqlite_path(url) == path


def _register_on(ws: Workspace) -> None:
    _register(ws, "IALE-1", user="lan")
    _register(ws, "IAPHANG-1", commune="Ia Phang", user="tuan")


def test_the_servers_plain_reads_give_the_documents_of_the_sqlalchemy_reads(
    workspace: Workspace,
) -> None:
    """The server reads through plain DB-API statements (``Ocop.read_per_thread``: sqlite3 per
    thread, pooled psycopg on PostgreSQL); what it shows must be what the Core reads show."""
    _register_on(workspace)
    app = workspace.app(user="lan", now=LATER)
    try:
        core = app.ocop
        plain = core.at(core.clock)
        plain.read_per_thread()
        actor = app.actor()
        kinds = type(plain.reads()).__name__, type(core.reads()).__name__
        assert kinds == ("PgReads" if "postgres" in workspace.url else "SqliteReads", "CoreReads")
        for filters in (DossierFilter(), DossierFilter(overdue=True)):
            assert list(plain.iter_dossiers(actor, filters)) == list(
                core.iter_dossiers(actor, filters)
            )
        shown = plain.show(actor, "IALE-1")
        assert shown == core.show(actor, "IALE-1")
        assert shown.timers and shown.entered
    finally:
        app.close()


@pytest.fixture
def pg_app(tmp_path: Path, pg_url: str) -> Iterator[Any]:
    """The two dossiers of ``_register_on`` on PostgreSQL, and an app on them."""
    write_config(tmp_path)
    ws = Workspace(tmp_path, pg_url)
    ws.run("init", check=True)
    _register_on(ws)
    app = ws.app(user="lan", now=LATER)
    try:
        yield app
    finally:
        app.close()


@pytest.mark.postgres
def test_the_servers_postgresql_reads_give_the_pool_its_connections_back_in_transactions(
    pg_app: Any,
) -> None:
    """A read borrows a pooled connection in autocommit; the next borrower (a write) must find
    it as SQLAlchemy expects, or its statements would commit one by one."""
    app = pg_app
    ocop = app.ocop
    ocop.read_per_thread()
    for _ in range(3):
        assert ocop.show(app.actor(), "IALE-1").dossier.id == "IALE-1"
    with ocop.store.engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False


@pytest.mark.postgres
def test_the_servers_postgresql_page_reads_its_token_and_page_in_one_statement_and_snapshot(
    pg_app: Any,
) -> None:
    """``GET /dossiers/{id}`` on PostgreSQL reads the token's row and the whole page (dossier,
    pending timers, first entry) up front in one statement (``PgReads.page_ahead``): what it
    shows is what the Core reads show, all of it as it stood at that one instant — an advance
    committed meanwhile by another connection is seen by the next page, not half by this one
    — and the token is still checked by ``authenticate`` from the row read ahead."""
    app = pg_app
    core = app.ocop
    plain = core.at(core.clock)
    plain.read_per_thread()
    token = core.create_token("lan").token
    before = core.show(app.actor(), "IALE-1")
    with plain.reading(token=token, page="IALE-1"):
        actor, _ = plain.authenticate(token)
        core.advance(app.actor(), "IALE-1", "accept_idea")  # another connection commits
        shown = plain.show(actor, "IALE-1")
    assert actor.key == "lan"
    assert shown == before
    assert shown.timers and shown.entered
    after = plain.show(actor, "IALE-1")
    assert after == core.show(app.actor(), "IALE-1")
    assert after.dossier.version == before.dossier.version + 1


def snapshot_across_a_commit(reads: Any, app: Any) -> None:
    """A snapshot of IALE-1 taken before another connection advances it holds through the
    commit; a read after the snapshot sees the advance."""
    with reads.snapshot():
        before = reads.dossier("IALE-1")
        app.ocop.advance(app.actor(), "IALE-1", "accept_idea")  # another connection commits
        inner = reads.dossier("IALE-1")
    after = reads.dossier("IALE-1")
    assert before is not None and inner == before
    assert after is not None and after["version"] == before["version"] + 1


def test_reads_inside_a_snapshot_share_it_while_a_writer_commits(
    two_dossiers: Workspace,
) -> None:
    """``dossier show`` (the server's most frequent request) reads the dossier, its timers and
    its first entry inside one snapshot of the plain reader (``Ocop.reading``): a write
    committed in between is not half seen, and the page costs one BEGIN and one COMMIT instead
    of one per statement."""
    reads = sqlite_reads.SqliteReads(two_dossiers.url, two_dossiers.url.removeprefix("sqlite:///"))
    app = two_dossiers.app(user="lan", now=LATER)
    try:
        snapshot_across_a_commit(reads, app)
    finally:
        app.close()
        reads.close()


def test_a_read_left_suspended_inside_a_snapshot_leaves_later_snapshots_whole(
    two_dossiers: Workspace,
) -> None:
    """A generator read (``pending_timers``) begun inside a snapshot and closed after it must
    not leave the reader believing it is still inside one: a later snapshot is still a snapshot
    (before, the reader's count went below zero and every later read ran with no transaction at
    all, so a page could mix two states of a dossier)."""
    reads = sqlite_reads.SqliteReads(two_dossiers.url, two_dossiers.url.removeprefix("sqlite:///"))
    app = two_dossiers.app(user="lan", now=LATER)
    try:
        with reads.snapshot():
            timers = reads.pending_timers("IALE-1")
            next(timers)
        timers.close()
        snapshot_across_a_commit(reads, app)
    finally:
        app.close()
        reads.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02 04:23:23.000005", datetime(2026, 3, 2, 4, 23, 23, 5, tzinfo=UTC)),
        ("2026-03-02 04:23:23", datetime(2026, 3, 2, 4, 23, 23, tzinfo=UTC)),
        ("2026-03-02 09:00", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),  # not a naive midnight
        ("2026-03-02T04:23:23Z", datetime(2026, 3, 2, 4, 23, 23, tzinfo=UTC)),
        ("2026-03-02T04:23:23+07:00", datetime(2026, 3, 1, 21, 23, 23, tzinfo=UTC)),  # converted
    ],
)
def test_a_stored_instant_is_read_back_aware_utc_whatever_its_text(
    text: str, expected: datetime
) -> None:
    """Both SQLite read paths (the engine's writes, the plain-sqlite3 reads) read instants with
    one function; text someone else wrote (a date alone, an offset) still comes back aware UTC,
    as SQLAlchemy's own type reads it, never a naive datetime to fail a comparison later."""
    found = read_instant(text)
    assert found == expected
    assert found.tzinfo is not None and found.utcoffset() == timedelta(0)
    assert found == sqlalchemy_reads(text)  # the Core read path gives the same instant


def sqlalchemy_reads(text: str) -> datetime:
    """What ``store.UTCDateTime`` (the SQLAlchemy read path) makes of ``text`` in SQLite."""
    import sqlalchemy as sa

    from ocop_workflow.store import UTCDateTime

    engine = sa.create_engine("sqlite://")
    column = sa.table("t", sa.column("at", UTCDateTime()))
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (at TEXT)")
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", (text,))
        found = conn.execute(sa.select(column.c.at)).scalar_one()
    engine.dispose()
    return found


@pytest.mark.postgres
def test_the_servers_postgresql_pages_read_together_answer_as_each_read_alone(
    pg_app: Any,
) -> None:
    """``PgReads.pages`` (the server's batched ``GET /dossiers/{id}``) gives, for each (token,
    dossier) asked, in order, the answers ``page_ahead`` gives for it alone: a known and an
    unknown token, a dossier with timers, another commune's, one that does not exist."""
    from ocop_workflow.auth import token_digest

    core = app_core = pg_app.ocop
    plain = app_core.at(core.clock)
    plain.read_per_thread()
    reads = plain.reads()
    known = token_digest(core.create_token("lan").token)
    unknown = token_digest("not-a-token")
    asked = [
        (known, "IALE-1"),
        (unknown, "IAPHANG-1"),
        (known, "NO-SUCH-1"),
        (known, "IAPHANG-1"),
        (known, "IALE-1"),
    ]
    together = reads.pages(asked)
    assert len(together) == len(asked)
    for (digest, dossier), row in zip(asked, together, strict=True):
        with reads.answered(digest, dossier, row):
            batched = (reads.api_token(digest), reads.dossier(dossier))
            batched += (list(reads.pending_timers(dossier)), reads.first_entry(dossier))
        with reads.page_ahead(digest, dossier):
            alone = (reads.api_token(digest), reads.dossier(dossier))
            alone += (list(reads.pending_timers(dossier)), reads.first_entry(dossier))
        assert batched == alone, (digest, dossier)
    assert together[0][1]["id"] == "IALE-1" and together[0][0] is not None
    assert together[1][0] is None and together[2][1] is None


@pytest.mark.postgres
def test_the_servers_postgresql_page_is_built_from_the_batch_without_another_read(
    pg_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixteen pages asked at once through the API: each answer is its own dossier's, as the
    Core reads show it, and none of them was read again on a thread (``page_ahead``, the path
    a page takes when the batch's answers do not suffice) — which is what happened while the
    page's snapshot asked the database for a connection of its own."""
    import asyncio

    import httpx

    from ocop_workflow.pg_reads import PgReads
    from ocop_workflow.server import create_app

    core = pg_app.ocop
    token = core.create_token("lan").token
    expected = {"IALE-1": core.show(pg_app.actor(), "IALE-1").to_json()}
    alone: list[str] = []
    batches: list[int] = []
    page_ahead, pages = PgReads.page_ahead, PgReads.pages

    def counted_ahead(self: PgReads, digest: str, dossier_id: str) -> Any:
        alone.append(dossier_id)
        return page_ahead(self, digest, dossier_id)

    def counted_pages(self: PgReads, asked: list[tuple[str, str]]) -> list[Any]:
        batches.append(len(asked))
        return pages(self, asked)

    monkeypatch.setattr(PgReads, "page_ahead", counted_ahead)
    monkeypatch.setattr(PgReads, "pages", counted_pages)
    app = create_app(core)
    asked = ["IALE-1", "IAPHANG-1"] * 8

    async def scenario() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://ocop") as client,
        ):
            return list(
                await asyncio.gather(
                    *(client.get(f"/api/v1/dossiers/{d}", headers=headers) for d in asked)
                )
            )

    answers = asyncio.run(scenario())
    # lan sees Ia Le's dossiers only: Ia Phang's is "not found", as for any page
    for dossier, answer in zip(asked, answers, strict=True):
        if dossier == "IALE-1":
            assert answer.status_code == 200 and answer.json() == expected[dossier]
        else:
            assert answer.status_code == 404, answer.text
    assert alone == []
    assert sum(batches) == len(asked) and len(batches) < len(asked), batches
