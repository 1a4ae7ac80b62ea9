"""``Store.at_once``: a write that either starts now or says so, with nothing written.

The server runs a write request right on its event loop when SQLite's write lock is free
(cheaper than handing it to another thread); while the lock is held — by a write of another
process, or one already under way in this one — the loop must not sleep in SQLite's busy
handler, so the first transaction of the block raises ``WriterBusy`` instead, and the server
hands the whole request to its writer thread, which may wait.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_server_busy import _hold_exclusively

from ocop_workflow import migrate
from ocop_workflow import store as store_module
from ocop_workflow.store import Store, WriterBusy, counter_t


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ocop.db"
    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store)
    store.dispose()
    return path


def held(db: Path) -> sqlite3.Connection:
    """Another process's writer, as SQLite sees it: a connection of its own inside BEGIN
    IMMEDIATE, holding the write lock until it commits."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO counter (name, value) VALUES ('other', 1)")
    return other


def counters(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM counter")}


def warm(store: Store) -> Store:
    """A store as a server's is after its first requests: a connection open in its pool."""
    with store.read():
        pass
    return store


def engine_write(store: Store, name: str) -> None:
    """A write through the engine's path (``Store.writes``: a plain sqlite3 connection)."""
    with store.writes() as writes:
        writes.db.execute("INSERT INTO counter (name, value) VALUES (?, 1)", (name,))


def core_write(store: Store, name: str) -> None:
    """A write through ``Store.write`` (SQLAlchemy Core: registration, scores, tokens)."""
    with store.write() as conn:
        conn.execute(counter_t.insert(), [{"name": name, "value": 1}])


@pytest.mark.parametrize("write", [engine_write, core_write], ids=["writes", "write"])
def test_at_once_refuses_at_once_and_writes_nothing_while_another_process_writes(
    db: Path, write: Any
) -> None:
    store = warm(Store(f"sqlite:///{db}"))
    other = held(db)
    try:
        started = time.perf_counter()
        with pytest.raises(WriterBusy), store.at_once() as attempt:
            write(store, "mine")
        waited = time.perf_counter() - started
        assert not attempt.begun
        assert waited < 0.5, waited  # not the busy timeout (30 s): no wait at all
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert counters(db) == set()
    # and the same store's writers wait for the lock again as usual afterwards
    other = held(db)
    releaser = threading.Timer(0.3, lambda: (other.execute("COMMIT"), other.close()))
    releaser.start()
    try:
        write(store, "later")
    finally:
        releaser.join()
        store.dispose()
    assert counters(db) == {"other", "later"}


def test_at_once_refuses_while_another_thread_of_the_process_holds_the_turn(db: Path) -> None:
    store = Store(f"sqlite:///{db}")
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store.writes() as writes:
            writes.db.execute("INSERT INTO counter (name, value) VALUES ('thread', 1)")
            holding.set()
            done.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        with pytest.raises(WriterBusy, match="another write is under way"), store.at_once():
            engine_write(store, "mine")
    finally:
        done.set()
        holder.join()
    assert counters(db) == {"thread"}
    store.dispose()


@pytest.mark.parametrize("write", [engine_write, core_write], ids=["writes", "write"])
def test_at_once_writes_when_the_lock_is_free_and_later_transactions_wait_as_usual(
    db: Path, write: Any
) -> None:
    """Once the block's first transaction has begun, a failure is no longer "nothing was
    written": the next transactions wait for the lock, as outside the block."""
    store = warm(Store(f"sqlite:///{db}"))
    try:
        with store.at_once() as attempt:
            write(store, "first")
            assert attempt.begun
            other = held(db)
            releaser = threading.Timer(0.3, lambda: (other.execute("COMMIT"), other.close()))
            releaser.start()
            try:
                write(store, "second")  # waits for the other writer instead of WriterBusy
            finally:
                releaser.join()
    finally:
        store.dispose()
    assert counters(db) == {"first", "other", "second"}


def test_at_once_commits_leave_the_checkpoint_due_every_so_many(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commits of ``at_once`` blocks do not copy the WAL back into the database (the
    server's loop would stall meanwhile): every ``AT_ONCE_CHECKPOINT_EVERY`` of them, one is
    due, and the WAL then holds every frame they wrote until someone runs it."""
    monkeypatch.setattr(store_module, "AT_ONCE_CHECKPOINT_EVERY", 3)
    store = Store(f"sqlite:///{db}")
    dues = []
    try:
        for n in range(7):
            with store.at_once():
                engine_write(store, f"n{n}")
            dues.append(store.checkpoint_due())
        # the at_once writer never checkpoints on commit: SQLite's autocheckpoint is off there
        assert store._at_once_db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert store._at_once_db.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    finally:
        store.dispose()
    assert dues == [False, False, True, False, False, True, False]


@pytest.mark.parametrize("write", [engine_write, core_write], ids=["writes", "write"])
def test_at_once_opens_no_connection_that_would_wait_for_a_lock(db: Path, write: Any) -> None:
    """A store with no connection open yet: the pool's new connection would wait the busy
    timeout in its settings (``PRAGMA journal_mode``), on the server's event loop. The attempt
    is refused at once instead, and the write done later, where it may wait."""
    store = Store(f"sqlite:///{db}")
    holder = _hold_exclusively(db, table="counter")
    try:
        started = time.perf_counter()
        with pytest.raises(WriterBusy), store.at_once() as attempt:
            write(store, "mine")
        assert time.perf_counter() - started < 0.5
        assert not attempt.begun
    finally:
        holder.close()
    write(store, "later")
    store.dispose()
    assert counters(db) == {"later"}


def test_at_once_refuses_a_read_through_the_pool_before_its_write(db: Path) -> None:
    """A read through the pool (SQLAlchemy Core) waits the busy timeout for a lock: not
    inside an attempt that must not wait, until its write has begun."""
    store = warm(Store(f"sqlite:///{db}"))
    try:
        with pytest.raises(WriterBusy, match="could wait"), store.at_once(), store.read() as c:
            c.exec_driver_sql("SELECT 1")
        with store.at_once():
            engine_write(store, "first")
            with store.read() as conn:  # after the write began: as usual
                assert conn.exec_driver_sql("SELECT count(*) FROM counter").scalar() == 1
    finally:
        store.dispose()
