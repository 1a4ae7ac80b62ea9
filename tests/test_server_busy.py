"""A locked SQLite file does not stall a server process's event loop.

On a SQLite file the server reads a dossier's page and a token's row right on the event loop
(``short_read``: a handful of indexed reads, cheaper than a hand-over to a thread). A reader
under WAL almost never waits, but when it does (another process recovering the WAL after a
crash, a connection holding the file in exclusive mode) it would sleep in SQLite's busy
handler for as long as its timeout allows, and every other request of the process with it.
The loop's reader waits at most ``LOOP_BUSY_MS``; the read then goes to the thread pool.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from conftest import write_config

from ocop_workflow.server import LOOP_BUSY_MS

HELD_S = 1.5
#: Page requests sent while the loop stays off the locked file.
MORE = 20


def _app_on_a_file(root: Path) -> tuple[Any, str, str, Path]:
    """The app on a fresh SQLite file with one dossier and a token of lan's; no connection of
    this process left holding the file (so that another can take it exclusively)."""
    from ocop_workflow.clock import ManualClock
    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    db = root / "ocop.db"
    write_config(root)
    config = load_config(root / "config.toml", {"OCOP_DATABASE_URL": f"sqlite:///{db}"})
    ocop = Ocop(config, ManualClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC)))
    upgrade(ocop.store)
    lan = ocop.config.user("lan")
    dossier = ocop.register(
        lan, product="Cà phê bột", producer="HTX Cà phê Ia Le", commune="Ia Le"
    ).id
    token = ocop.create_token("lan").token
    app = create_app(ocop)
    ocop.store.dispose()
    return app, dossier, token, db


def _hold_exclusively(db: Path, table: str = "dossier") -> sqlite3.Connection:
    """A connection holding the file in exclusive mode: under WAL, readers then get
    SQLITE_BUSY until it closes (as while another process recovers the WAL). It takes the
    lock by writing ``table`` (any table will do: ``counter`` in a database with no dossier)."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    column = "version" if table == "dossier" else "value"
    holder.execute(f"UPDATE {table} SET {column} = {column}")
    holder.execute("COMMIT")
    return holder


def test_a_locked_database_is_waited_for_off_the_event_loop(tmp_path: Path) -> None:
    app, dossier, token, db = _app_on_a_file(tmp_path)
    holder = _hold_exclusively(db)
    released = threading.Timer(HELD_S, holder.close)

    async def scenario() -> tuple[httpx.Response, float, bool, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ocop") as client:
            started = time.perf_counter()
            released.start()
            page = asyncio.create_task(
                client.get(
                    f"/api/v1/dossiers/{dossier}", headers={"Authorization": f"Bearer {token}"}
                )
            )
            await asyncio.sleep(0.3)  # the page's read is waiting for the lock by now
            health = await client.get("/healthz")
            # when the loop got to answer: a loop stuck in the page's read gets there only once
            # the lock is gone
            answered_s = time.perf_counter() - started
            assert health.status_code == 200
            page_pending = not page.done()
            shown = await page
            return shown, answered_s, page_pending, time.perf_counter() - started

    try:
        shown, answered_s, page_pending, page_s = asyncio.run(scenario())
    finally:
        released.join()
    # the loop answered while the page's read waited on a thread (before: after the lock)
    assert answered_s < HELD_S / 2 and page_pending, (answered_s, shown.status_code, shown.text)
    # and the page itself waited for the lock, as long as it was held, and came out right
    assert page_s >= HELD_S - LOOP_BUSY_MS / 1000, page_s
    assert shown.status_code == 200, shown.text
    assert shown.json()["id"] == dossier


def test_a_write_waits_for_another_process_off_the_event_loop(tmp_path: Path) -> None:
    """A write request runs on the event loop only when it gets the write lock at once. While
    another process writes (a worker's sweep, a command), the loop must not sleep in SQLite's
    busy handler: the request goes to the writer thread, which waits for the lock, and every
    other request is answered meanwhile."""
    app, dossier, token, db = _app_on_a_file(tmp_path)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE dossier SET version = version")
    released = threading.Timer(HELD_S, lambda: (other.execute("COMMIT"), other.close()))
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario() -> tuple[httpx.Response, float, bool, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ocop") as client:
            started = time.perf_counter()
            released.start()
            move = asyncio.create_task(
                client.post(
                    f"/api/v1/dossiers/{dossier}/advance",
                    json={"trigger": "accept_idea", "expect_version": 1},
                    headers=headers,
                )
            )
            await asyncio.sleep(0.3)  # the advance is waiting for the lock by now
            page = await client.get(f"/api/v1/dossiers/{dossier}", headers=headers)
            answered_s = time.perf_counter() - started
            assert page.status_code == 200 and page.json()["version"] == 1, page.text
            move_pending = not move.done()
            moved = await move
            return moved, answered_s, move_pending, time.perf_counter() - started

    try:
        moved, answered_s, move_pending, move_s = asyncio.run(scenario())
    finally:
        released.join()
    assert answered_s < HELD_S / 2 and move_pending, (answered_s, moved.status_code, moved.text)
    assert move_s >= HELD_S - 0.1, move_s  # it did wait for the other writer, and then wrote
    assert moved.status_code == 200, moved.text
    assert moved.json()["version"] == 2


def test_a_write_that_would_open_a_connection_leaves_it_to_the_writer_thread(
    tmp_path: Path,
) -> None:
    """A write reaching the database before any read of the process (a registration through
    the trusted proxy header reads no token) would open its connection on the event loop, and
    the connection's settings wait for a lock the busy timeout long: while another process
    holds the file, every request of this one would wait too. It goes to the writer thread."""
    from ocop_workflow.clock import ManualClock
    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    db = tmp_path / "ocop.db"
    write_config(
        tmp_path,
        extra='[server]\ntrusted_user_header = "X-User"\ntrusted_proxies = ["127.0.0.1/32"]\n',
    )
    config = load_config(tmp_path / "config.toml", {"OCOP_DATABASE_URL": f"sqlite:///{db}"})
    ocop = Ocop(config, ManualClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC)))
    upgrade(ocop.store)
    app = create_app(ocop)
    ocop.store.dispose()
    holder = _hold_exclusively(db, table="counter")
    released = threading.Timer(HELD_S, holder.close)
    body = {"product": "Cà phê bột", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"}

    async def timed() -> tuple[httpx.Response, float]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://ocop") as client:
            started = time.perf_counter()
            released.start()
            made = asyncio.create_task(
                client.post("/api/v1/dossiers", json=body, headers={"X-User": "lan"})
            )
            await asyncio.sleep(0.3)
            health = await client.get("/healthz")
            answered_s = time.perf_counter() - started
            assert health.status_code == 200
            return await made, answered_s

    try:
        made, answered_s = asyncio.run(timed())
    finally:
        released.join()
    assert answered_s < HELD_S / 2, answered_s
    assert made.status_code == 201, made.text


def test_while_the_database_stays_locked_the_loop_stops_trying_to_read_itself(
    tmp_path: Path,
) -> None:
    """Once a read on the loop found the file locked, the next short reads go to the thread
    pool at once for a while: twenty page requests then cost the loop nothing, where each would
    otherwise have held it up to ``LOOP_BUSY_MS`` in turn (a second for twenty; the bound
    checked is half that, so that a loaded machine's slowness does not fail the test)."""
    app, dossier, token, db = _app_on_a_file(tmp_path)
    holder = _hold_exclusively(db)
    released = threading.Timer(HELD_S, holder.close)
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario() -> tuple[list[int], float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ocop") as client:
            released.start()
            page = f"/api/v1/dossiers/{dossier}"
            first = asyncio.create_task(client.get(page, headers=headers))
            await asyncio.sleep(0.3)  # the first found the lock: its read went to a thread
            asked = time.perf_counter()
            more = [asyncio.create_task(client.get(page, headers=headers)) for _ in range(MORE)]
            await asyncio.sleep(0.01)  # they start their reads (each on the loop, before)
            health = await client.get("/healthz")
            loop_s = time.perf_counter() - asked
            assert health.status_code == 200
            shown = [await task for task in (first, *more)]
            return [r.status_code for r in shown], loop_s

    try:
        codes, loop_s = asyncio.run(scenario())
    finally:
        released.join()
    assert codes == [200] * (1 + MORE), codes
    assert loop_s < MORE / 2 * LOOP_BUSY_MS / 1000, loop_s


def test_a_locked_database_is_reported_locked_not_uninitialised(tmp_path: Path) -> None:
    """The schema check used to read any failure but "unreachable" as a missing schema: a
    locked file was told to run ``ocop init``."""
    import pytest

    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.sqlite_reads import ReaderBusy, SqliteReads
    from ocop_workflow.store import Store

    db = tmp_path / "ocop.db"
    write_config(tmp_path)
    config = load_config(tmp_path / "config.toml", {"OCOP_DATABASE_URL": f"sqlite:///{db}"})
    store = Store(config.database_url)
    upgrade(store)
    store.dispose()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE dossier SET version = version")
    holder.execute("COMMIT")
    try:
        with pytest.raises(ReaderBusy, match="database locked"):
            SqliteReads(f"sqlite:///{db}", str(db), busy_timeout_ms=20).check_schema()
    finally:
        holder.close()
    SqliteReads(f"sqlite:///{db}", str(db), busy_timeout_ms=20).check_schema()  # free again


def test_every_kind_of_busy_is_a_busy_reader_and_nothing_else_is() -> None:
    """Python gives SQLite's extended result code: a reader waiting out another process's WAL
    recovery fails with SQLITE_BUSY_RECOVERY (261), not 5 — and must still be ``ReaderBusy``,
    or the event loop's read would be a 503 after 50 ms instead of going to a thread."""
    from ocop_workflow.errors import EnvironmentProblem
    from ocop_workflow.sqlite_reads import ReaderBusy, SqliteReads

    reads = SqliteReads("sqlite:///x.db", "x.db", busy_timeout_ms=50)
    for code, busy in ((5, True), (261, True), (517, True), (773, True), (2067, False), (1, False)):
        error = sqlite3.OperationalError("database is locked" if busy else "something else")
        error.sqlite_errorcode = code  # as the sqlite3 module sets it from the result code
        said = reads.refusal(error)
        assert isinstance(said, EnvironmentProblem)
        assert isinstance(said, ReaderBusy) is busy, code


def test_a_file_that_is_no_database_is_not_told_to_run_ocop_init(tmp_path: Path) -> None:
    """The schema check asks whether the version table is there, as ``Store.check_schema``
    does, instead of taking any failure for a missing schema: ``ocop init`` on a damaged or
    foreign file is not the advice to give."""
    import pytest

    from ocop_workflow.errors import EnvironmentProblem
    from ocop_workflow.sqlite_reads import SqliteReads

    junk = tmp_path / "ocop.db"
    junk.write_bytes(b"not a database, but a file of " + b"x" * 5000)
    with pytest.raises(EnvironmentProblem) as refused:
        SqliteReads(f"sqlite:///{junk}", str(junk)).check_schema()
    assert "not a database" in refused.value.message
    assert "ocop init" not in refused.value.message
    from ocop_workflow.store import Store

    with pytest.raises(EnvironmentProblem) as refused_too:  # the store's check says the same
        Store(f"sqlite:///{junk}").check_schema()
    assert "not a database" in refused_too.value.message
    assert "ocop init" not in refused_too.value.message
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(EnvironmentProblem, match="not initialised: run `ocop init`"):
        SqliteReads(f"sqlite:///{empty}", str(empty)).check_schema()


def test_a_write_with_a_made_up_token_never_queues_on_the_writer_thread(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """SQLite: while the file is locked the loop hands writes to the one writer thread, where
    they wait in turn. A request nobody sent is refused before that (its token checked on the
    loop, or on a reading thread once the loop stops reading), not queued behind real writes."""
    from ocop_workflow.service import Ocop

    threads: list[str] = []
    original = Ocop.authenticate

    def spy(self: Ocop, token: str) -> Any:
        threads.append(threading.current_thread().name)
        return original(self, token)

    monkeypatch.setattr(Ocop, "authenticate", spy)
    app, dossier, _token, db = _app_on_a_file(tmp_path)
    holder = _hold_exclusively(db)
    released = threading.Timer(HELD_S, holder.close)

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ocop") as client:
            released.start()
            refused = await client.post(
                f"/api/v1/dossiers/{dossier}/advance",
                json={"trigger": "accept_idea"},
                headers={"Authorization": "Bearer ocop_" + "x" * 40},
            )
            return refused.status_code

    try:
        assert asyncio.run(scenario()) == 401
    finally:
        released.join()
    assert threads and not any(name.startswith("ocop-writer") for name in threads), threads
