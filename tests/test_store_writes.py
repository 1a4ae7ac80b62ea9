"""A transition written through the fast path leaves exactly the rows SQLAlchemy Core does.

``Engine.advance`` writes through plain DB-API statements: ``store.SqliteWrites`` (``sqlite3``)
on SQLite, ``store.PgWrites`` (pooled psycopg) on PostgreSQL; the sweep goes through SQLAlchemy
Core (``CoreWrites``). Both walk the same dossiers through the same cycle on two databases of
the same kind; every row of every table must be equal, and the audit chains must verify.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import (
    Workspace,
    attach_mandatory,
    council_scores,
    dump_database,
    pg_schema,
    write_config,
)

from ocop_workflow import audit
from ocop_workflow.store import PgWrites, SqliteWrites

T0 = "2026-03-02T09:00:00+07:00"
STEPS = [("accept_idea", "lan"), ("approve_plan", "lan")]


def _workspace(root: Path, url: str | None = None) -> Workspace:
    root.mkdir()
    write_config(root)
    ws = Workspace(root, url or f"sqlite:///{root / 'ocop.db'}")
    ws.run("init", check=True)
    return ws


def _register(ws: Workspace) -> str:
    """One dossier, registered by the commune officer: its id."""
    return str(
        ws.run(
            "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
            "--commune", "Ia Le", "--json", user="lan", now=T0, check=True,
        ).json()["id"]
    )  # fmt: skip


def _walk(ws: Workspace, *, fast: bool) -> None:
    app = ws.app(user="lan", now=T0)
    engine = app.engine
    users = app.config.users
    ids = [
        ws.run(
            "dossier", "register", "--product", f"Cà phê {i}", "--producer", "HTX Cà phê Ia Le",
            "--commune", "Ia Le", "--json", user="lan", now=T0, check=True,
        ).json()["id"]
        for i in range(3)
    ]  # fmt: skip
    for trigger, user in STEPS:
        for dossier_id in ids:
            if fast:
                engine.advance(dossier_id, trigger, users[user], reason="ghi chú — lý do")
            else:
                with engine.store.write() as conn:
                    engine.advance_in(
                        conn, dossier_id, trigger, users[user], now=engine.clock(),
                        reason="ghi chú — lý do",
                    )  # fmt: skip
    for dossier_id in ids:
        attach_mandatory(ws, dossier_id, now=T0)
    ws.run("dossier", "advance", ids[0], "submit_dossier", user="htx_iale", now=T0, check=True)
    ws.run("dossier", "advance", ids[0], "forward", user="lan", now=T0, check=True)
    council_scores(
        ws, ids[0], {"chair": (30, 20, 25), "m1": (31, 19, 26), "m2": (29, 21, 24)}, now=T0
    )
    engine.store.dispose()


def test_the_sqlite_fast_path_writes_the_same_rows_as_sqlalchemy_core(tmp_path: Path) -> None:
    fast, core = _workspace(tmp_path / "fast"), _workspace(tmp_path / "core")
    _same_rows(fast, core, SqliteWrites)


@pytest.mark.postgres
def test_the_postgresql_fast_path_writes_the_same_rows_as_sqlalchemy_core(tmp_path: Path) -> None:
    with ExitStack() as schemas:
        fast = _workspace(tmp_path / "fast", schemas.enter_context(pg_schema()))
        core = _workspace(tmp_path / "core", schemas.enter_context(pg_schema()))
        _same_rows(fast, core, PgWrites)


def _same_rows(fast: Workspace, core: Workspace, kind: type) -> None:
    store = fast.app().store
    with store.writes() as writes:  # the path advance takes on this database
        assert type(writes) is kind
    store.dispose()
    _walk(fast, fast=True)
    _walk(core, fast=False)
    fast_rows, core_rows = dump_database(fast.url), dump_database(core.url)
    assert fast_rows["timer"] and fast_rows["audit_entry"]
    assert fast_rows.keys() == core_rows.keys()
    for table, rows in core_rows.items():
        assert fast_rows[table] == rows, table
    store = fast.app().store
    assert audit.verify(store).ok
    store.dispose()


def test_the_fast_path_binds_instants_as_sqlalchemy_stores_them(tmp_path: Path) -> None:
    """Naive UTC text with microseconds: what SQLAlchemy's SQLite DateTime writes and sorts."""
    from datetime import datetime, timedelta, timezone

    from ocop_workflow.store import _sqlite_instant

    hanoi = timezone(timedelta(hours=7))
    assert _sqlite_instant(datetime(2026, 3, 2, 9, 0, tzinfo=hanoi)) == "2026-03-02 02:00:00.000000"
    assert SqliteWrites._INSTANTS["dossier"] >= {"state_entered_at", "deadline_at", "updated_at"}


def test_rows_of_one_insert_with_other_columns_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    """Core's executemany compiles the first row's columns and fails on a later row without
    one; the fast path states the same rule instead of filling the row in its own way, and the
    transaction writes nothing."""
    from datetime import UTC, datetime

    import pytest

    from ocop_workflow.store import timer_t

    ws = _workspace(tmp_path / "ws")
    store = ws.app().store
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    first = {
        "dossier_id": "X-1", "state": "idea", "entry_seq": 1, "kind": "reminder",
        "due_at": at, "created_at": at, "wake": 1,
    }  # fmt: skip
    second = {k: v for k, v in first.items() if k != "wake"}
    before = dump_database(ws.url)
    with (
        pytest.raises(ValueError, match="must name the same columns"),
        store.writes() as writes,
    ):
        assert isinstance(writes, SqliteWrites)
        writes.insert(timer_t, [first, second])
    assert dump_database(ws.url) == before
    with store.writes() as writes:  # the same columns in another order are one insert
        writes.insert(timer_t, [first, dict(reversed(first.items()))])
    assert len(dump_database(ws.url)["timer"]) == 2
    store.dispose()


@pytest.mark.postgres
def test_a_write_postgresql_refuses_mid_transition_writes_nothing_and_the_pool_goes_on(
    tmp_path: Path,
) -> None:
    """``PgWrites`` sends a transition's writes as one batch: the database's refusal of one of
    them (here a CHECK on the audit entry's reason) skips the statements behind it and leaves
    the transaction failed. The act is refused as a conflict, nothing of it stays (entry,
    timers, row), and the pooled connection serves the next transition."""
    import sqlalchemy as sa

    from ocop_workflow.errors import Conflict

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        app = ws.app(user="lan", now=T0)
        engine, lan = app.engine, app.config.users["lan"]
        ids = [
            ws.run(
                "dossier", "register", "--product", f"Cà phê {i}", "--producer",
                "HTX Cà phê Ia Le", "--commune", "Ia Le", "--json", user="lan", now=T0, check=True,
            ).json()["id"]
            for i in range(2)
        ]  # fmt: skip
        with engine.store.write() as conn:
            conn.execute(
                sa.text(
                    "ALTER TABLE audit_entry ADD CONSTRAINT no_boom "
                    "CHECK (reason IS DISTINCT FROM 'boom')"
                )
            )
        before = dump_database(url)
        for _ in range(3):  # more than once: the connection went back to the pool usable
            with pytest.raises(Conflict) as refused:
                engine.advance(ids[0], "accept_idea", lan, reason="boom")
            assert "no_boom" in refused.value.message
        assert dump_database(url) == before
        for dossier_id in ids:
            moved = engine.advance(dossier_id, "accept_idea", lan, reason="ok", expect_version=1)
            assert (moved.seq, moved.version) == (2, 2)
        assert audit.verify(engine.store).ok
        engine.store.dispose()


#: Text that would end a literal, a statement or a placeholder if it were pasted into SQL.
HOSTILE = (
    "x'); DROP TABLE dossier; -- \\' \" %s %% ? $1 :name E'\\x41' ; COMMIT; "
    "Hợp tác xã — ‘quotes’\nline two"
)


@pytest.mark.postgres
def test_values_reach_postgresql_exactly_as_given_whatever_they_hold(tmp_path: Path) -> None:
    """``PgWrites`` binds values client-side (psycopg's literals, one batch of statements):
    quotes, backslashes, semicolons, placeholders and non-ASCII text are stored exactly as given
    (the reason in the audit entry, the data in the row), run nothing, and hash as they are."""
    import sqlalchemy as sa

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        app = ws.app(user="lan", now=T0)
        engine, lan = app.engine, app.config.users["lan"]
        dossier_id = _register(ws)
        moved = engine.advance(dossier_id, "accept_idea", lan, reason=HOSTILE, expect_version=1)
        assert (moved.seq, moved.version) == (2, 2)
        with engine.store.read() as conn:
            reason = conn.execute(
                sa.text("SELECT reason FROM audit_entry WHERE dossier_id = :d AND seq = 2"),
                {"d": dossier_id},
            ).scalar_one()
            tables = conn.execute(sa.text("SELECT count(*) FROM dossier")).scalar_one()
        assert reason == HOSTILE
        assert tables == 1
        assert audit.verify(engine.store).ok
        engine.store.dispose()


@pytest.mark.postgres
def test_a_value_postgresql_cannot_hold_is_bad_input_and_the_transaction_writes_nothing(
    tmp_path: Path,
) -> None:
    """A NUL in a text cannot be stored: psycopg refuses to make it a literal, after the batch
    that locked the dossier has begun the transaction. The transition is bad input (exit 2),
    rolled back, and the connection serves the next one."""
    from datetime import UTC, datetime

    from ocop_workflow.errors import UsageError
    from ocop_workflow.store import timer_t

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        app = ws.app(user="lan", now=T0)
        store, engine, lan = app.store, app.engine, app.config.users["lan"]
        dossier_id = _register(ws)
        at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
        before = dump_database(url)
        for _ in range(2):
            with pytest.raises(UsageError, match="NUL"), store.writes() as writes:
                assert writes.lock_dossier(dossier_id) is not None
                writes.insert(
                    timer_t,
                    [{
                        "dossier_id": dossier_id, "state": "idea\x00", "entry_seq": 1,
                        "kind": "reminder", "due_at": at, "created_at": at, "wake": 1,
                    }],
                )  # fmt: skip
                writes.move_dossier(dossier_id, 1, {"version": 2})
        assert dump_database(url) == before
        assert engine.advance(dossier_id, "accept_idea", lan, expect_version=1).version == 2
        store.dispose()


@pytest.mark.postgres
def test_a_write_request_gives_its_one_connection_back_to_the_pool_as_it_was_lent(
    tmp_path: Path,
) -> None:
    """The server's advance (``Ocop.acting``) reads the token's and the dossier's rows, then
    moves the dossier, on one pooled connection, in autocommit with the batches' own BEGIN and
    COMMIT. Whatever the outcome — moved, a stale version, a dossier that does not exist, an
    error of the caller's — the connection goes back out of autocommit and outside any
    transaction (SQLAlchemy's own transactions rely on it), and none stays checked out."""
    from datetime import UTC, datetime

    from ocop_workflow.clock import FixedClock
    from ocop_workflow.config import load_config
    from ocop_workflow.errors import Conflict, NotFound
    from ocop_workflow.service import Ocop

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        config = load_config(ws.root / "config.toml", {"OCOP_DATABASE_URL": url})
        ocop = Ocop(config, FixedClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC)))
        ocop.conceal = True  # as the server's facade
        ocop.read_per_thread()
        lan = config.user("lan")
        token = ocop.create_token("lan", label="t").token
        dossier_id = ocop.register(
            lan, product="Cà phê", producer="HTX Cà phê Ia Le", commune="Ia Le"
        ).id
        pool = ocop.store.engine.pool

        def act(dossier: str, version: int) -> int:
            with ocop.acting(token=token, dossier=dossier):
                actor, _ = ocop.authenticate(token)
                assert pool.checkedout() == 1  # token, row and transaction: one connection
                return ocop.advance(actor, dossier, "accept_idea", expect_version=version).version

        def as_lent() -> None:
            assert pool.checkedout() == 0
            lent = [ocop.store.engine.raw_connection() for _ in range(pool.checkedin())]
            for pooled in lent:
                assert pooled.driver_connection.autocommit is False
                assert pooled.driver_connection.pgconn.transaction_status == 0  # idle
                pooled.close()

        assert act(dossier_id, 1) == 2
        as_lent()
        with pytest.raises(Conflict):
            act(dossier_id, 1)
        as_lent()
        with pytest.raises(NotFound):
            act("OCOP-2026-9999", 1)
        as_lent()
        with pytest.raises(ZeroDivisionError), ocop.acting(token=token, dossier=dossier_id):
            1 / 0  # noqa: B018
        as_lent()
        ocop.store.dispose()


@pytest.mark.postgres
def test_a_batch_with_its_values_in_its_text_is_never_prepared_on_the_server() -> None:
    """psycopg prepares a statement it has run five times. A batch's text holds its values, so
    each would be a prepared statement of its own, kept by the server for the connection's
    life: a batch, a lone read and a ROLLBACK are sent unprepared."""
    import psycopg

    from ocop_workflow.pg_batch import SimpleBatch

    with pg_schema() as url, psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as db:
        for _ in range(7):
            batch = SimpleBatch(db)
            assert batch.query("SELECT ?", ["một"]).fetchone() == ("một",)
            assert batch.send(["SELECT ?"], ["hai"]).fetchone() == ("hai",)
            batch.rollback()
        assert db.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def _pooled_backends(store: object) -> set[int]:
    """The server process ids of the connections the store's pool holds idle."""
    pool = store.engine.pool  # type: ignore[attr-defined]
    lent = [store.engine.raw_connection() for _ in range(pool.checkedin())]  # type: ignore[attr-defined]
    try:
        return {pooled.driver_connection.info.backend_pid for pooled in lent}
    finally:
        for pooled in lent:
            pooled.close()


@pytest.mark.postgres
def test_a_transition_postgresql_aborts_as_a_deadlock_is_a_conflict_and_keeps_its_connection(
    tmp_path: Path,
) -> None:
    """PostgreSQL breaks a deadlock, or a serialization failure, by rolling one transaction
    back (SQLSTATE class 40): that transition is a conflict (exit 5, 409: try again), writes
    nothing, and its connection, healthy once rolled back, goes back to the pool rather than
    being thrown away. The error is raised by a trigger here, as the database raises its own."""
    import sqlalchemy as sa

    from ocop_workflow.errors import Conflict

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        app = ws.app(user="lan", now=T0)
        engine, lan = app.engine, app.config.users["lan"]
        dossier_id = _register(ws)
        with engine.store.write() as conn:
            conn.execute(sa.text(
                "CREATE FUNCTION deadlock_on_boom() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF NEW.reason = 'boom' THEN "
                "RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END IF; "
                "RETURN NEW; END $$"
            ))  # fmt: skip
            conn.execute(sa.text(
                "CREATE TRIGGER deadlock_on_boom BEFORE INSERT ON audit_entry "
                "FOR EACH ROW EXECUTE FUNCTION deadlock_on_boom()"
            ))  # fmt: skip
        engine.advance(dossier_id, "accept_idea", lan, reason="ok", expect_version=1)
        backends = _pooled_backends(engine.store)
        before = dump_database(url)
        for _ in range(3):
            with pytest.raises(Conflict, match="try again"):
                engine.advance(dossier_id, "approve_plan", lan, reason="boom", expect_version=2)
        assert dump_database(url) == before
        assert _pooled_backends(engine.store) == backends
        assert engine.advance(dossier_id, "approve_plan", lan, expect_version=2).version == 3
        assert audit.verify(engine.store).ok
        engine.store.dispose()


@pytest.mark.postgres
def test_a_lock_timeout_mid_transition_refuses_it_writes_nothing_and_keeps_the_connection(
    tmp_path: Path,
) -> None:
    """With a ``lock_timeout`` in the database URL's options, a transition whose dossier another
    session holds locked for longer gives up: the database's error (exit 1, 503 from the
    server), nothing written, and the connection goes back to the pool (it is healthy once
    rolled back); when the lock is let go, the same transition goes through."""
    import psycopg

    from ocop_workflow.errors import EnvironmentProblem

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        dossier_id = _register(ws)
        impatient = Workspace(ws.root, url + "%20-clock_timeout%3D150")
        app = impatient.app(user="lan", now=T0)
        engine, lan = app.engine, app.config.users["lan"]
        engine.advance(dossier_id, "accept_idea", lan, expect_version=1)
        backends = _pooled_backends(engine.store)
        before = dump_database(url)
        with psycopg.connect(url.replace("+psycopg", "")) as other:
            other.execute("SELECT 1 FROM dossier WHERE id = %s FOR UPDATE", [dossier_id])
            for _ in range(2):
                with pytest.raises(EnvironmentProblem, match="lock timeout"):
                    engine.advance(dossier_id, "approve_plan", lan, expect_version=2)
            other.rollback()
        assert dump_database(url) == before
        assert _pooled_backends(engine.store) == backends
        assert engine.advance(dossier_id, "approve_plan", lan, expect_version=2).version == 3
        engine.store.dispose()


@pytest.mark.postgres
def test_a_transition_whose_connection_is_killed_tells_why_and_the_pool_replaces_it(
    tmp_path: Path,
) -> None:
    """A server process killed mid-transition (an administrator's ``pg_terminate_backend``, a
    crash): the transition fails with the error that ended it, not with the failed ROLLBACK's
    after it; nothing is written; the dead connection is not given back to the pool, and the
    next transition goes through on another."""
    import psycopg

    from ocop_workflow.errors import EnvironmentProblem

    with pg_schema() as url:
        ws = _workspace(tmp_path / "ws", url)
        app = ws.app(user="lan", now=T0)
        store, engine, lan = app.store, app.engine, app.config.users["lan"]
        dossier_id = _register(ws)
        before = dump_database(url)
        with (
            pytest.raises(EnvironmentProblem, match="terminat") as failed,
            store.writes() as writes,
        ):
            assert writes.lock_dossier(dossier_id) is not None
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(%s)", [writes._batch.conn.info.backend_pid]
                )
            writes.move_dossier(dossier_id, 1, {"version": 2})
        assert "closed" not in failed.value.message
        assert store.engine.pool.checkedout() == 0
        assert dump_database(url) == before
        assert engine.advance(dossier_id, "accept_idea", lan, expect_version=1).version == 2
        store.dispose()


@pytest.mark.postgres
def test_a_read_that_times_out_is_the_databases_error_and_keeps_its_connection() -> None:
    """A read the database cancels (a ``statement_timeout`` in the URL's options) is the
    database's error (exit 1, 503 from the server); its connection, in autocommit and so in
    no transaction, is healthy and goes back to the pool, out of autocommit as it was lent."""
    import sqlalchemy as sa

    from ocop_workflow.errors import EnvironmentProblem
    from ocop_workflow.pg_reads import PgReads
    from ocop_workflow.store import Store

    with pg_schema() as url:
        store = Store(url + "%20-cstatement_timeout%3D100")
        reads = PgReads(store)
        with reads.read() as db:
            assert db.execute("SELECT ?", [1]).fetchone() == (1,)
        backends = _pooled_backends(store)
        for _ in range(2):
            with pytest.raises(EnvironmentProblem, match="statement timeout"), reads.read() as db:
                db.execute("SELECT pg_sleep(?)", [5])
        assert _pooled_backends(store) == backends
        with store.read() as conn:
            assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
        store.dispose()
