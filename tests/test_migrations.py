"""The schema comes from Alembic migrations; the code knows which revision it needs."""

from __future__ import annotations

import sqlalchemy as sa

from ocop_workflow import migrate
from ocop_workflow.store import SCHEMA_REVISION, Store


def test_the_code_expects_the_newest_migration() -> None:
    assert migrate.head_revision() == SCHEMA_REVISION


def test_init_upgrades_step_by_step_and_again_changes_nothing(db_url: str) -> None:
    store = Store(db_url)
    try:
        assert migrate.upgrade(store) == (None, SCHEMA_REVISION)
        assert migrate.upgrade(store) == (SCHEMA_REVISION, SCHEMA_REVISION)
        store.check_schema()
        with store.read() as conn:
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("timer")}
        assert {"ix_timer_pending_due", "ix_timer_dossier"} <= indexes
    finally:
        store.dispose()


def test_cancelling_a_dossiers_timers_uses_the_dossier_index(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    migrate.upgrade(store)
    with store.read() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN UPDATE timer SET status = 'cancelled' "
            "WHERE dossier_id = 'X' AND status = 'pending'"
        ).all()
    assert "ix_timer_dossier" in " ".join(str(row[-1]) for row in plan)
    store.dispose()


def test_the_sweeps_due_query_reads_the_pending_timers_index(sqlite_url: str) -> None:
    """The partial index holds pending timers only; the sweep's query must be able to use it."""
    from datetime import UTC, datetime

    from ocop_workflow.store import PENDING, timer_t

    store = Store(sqlite_url)
    migrate.upgrade(store)
    query = (
        sa.select(timer_t)
        .where(PENDING, timer_t.c.due_at <= datetime(2026, 1, 1, tzinfo=UTC))
        .order_by(timer_t.c.due_at, timer_t.c.id)
        .limit(100)
    )
    with store.read() as conn:
        compiled = query.compile(conn)
        plan = conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
        ).all()
    text = " ".join(str(row[-1]) for row in plan)
    assert "ix_timer_pending_due" in text and "TEMP B-TREE" not in text, text
    store.dispose()
