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
        assert "ix_timer_dossier_status_due" in indexes
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
    assert "ix_timer_dossier_status_due" in " ".join(str(row[-1]) for row in plan)
    store.dispose()
