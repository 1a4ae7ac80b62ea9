"""The schema comes from Alembic migrations; the code knows which revision it needs."""

from __future__ import annotations

from pathlib import Path

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
        assert {"ix_timer_wake", "ix_timer_dossier"} <= indexes
        assert "ix_timer_pending_due" not in indexes
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


def test_the_sweeps_due_query_reads_the_waking_timers_index(sqlite_url: str) -> None:
    """The partial index holds each dossier's waking timer only; the sweep's claim must use it."""
    from datetime import UTC, datetime

    from ocop_workflow.store import WAKING, timer_t

    store = Store(sqlite_url)
    migrate.upgrade(store)
    query = (
        sa.select(timer_t)
        .where(WAKING, timer_t.c.due_at <= datetime(2026, 1, 1, tzinfo=UTC))
        .order_by(timer_t.c.due_at, timer_t.c.id)
        .limit(100)
    )
    with store.read() as conn:
        compiled = query.compile(conn)
        plan = conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
        ).all()
    text = " ".join(str(row[-1]) for row in plan)
    assert "ix_timer_wake" in text and "TEMP B-TREE" not in text, text
    store.dispose()


def _alembic(store: Store, action: str, revision: str) -> None:
    """Bring the schema to ``revision`` (upgrade or downgrade), as ``migrate.upgrade`` runs it."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrate.__file__).parent / "migrations"))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def test_upgrading_a_0006_database_keeps_its_trail_verifiable_and_its_timers_firing(
    tmp_path: Path, db_url: str
) -> None:
    """A database written by the previous release (entries with both snapshots, every pending
    timer in the old pending index) upgraded to 0007: the old entries verify with their
    hashes, history shows what they changed, the due timers fire, the others stay pending and
    keep being found; downgrade and upgrade again work."""
    from datetime import UTC, datetime, timedelta

    from conftest import Workspace, write_config

    from ocop_workflow import audit
    from ocop_workflow.calendar import WorkCalendar
    from ocop_workflow.config import load_config
    from ocop_workflow.store import audit_t, dossier_t, timer_t

    config = load_config(write_config(tmp_path), {})
    # planned under the calendar the sweep runs: it must not re-plan them first
    fingerprint = WorkCalendar(config.timezone, config.holidays, local=config.calendar_days)
    store = Store(db_url)
    _alembic(store, "upgrade", "0006")
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    row = {
        "id": "OCOP-2026-0001",
        "product": "Trà hoa vàng",
        "producer": "HTX Trà Ia Le",
        "commune": "Ia Le",
        "product_group": None,
        "workflow": "ocop-1489",
        "workflow_version": "1489/QĐ-TTg",
        "workflow_sha256": None,
        "state": "registration",
        "stage": "registration",
        "state_entered_at": at,
        "state_entry_seq": 1,
        "deadline_at": None,
        "deadline_note": None,
        "calendar_fingerprint": fingerprint.fingerprint,
        "version": 2,
        "data": '{"note":"đã bổ sung"}',
        "created_at": at,
        "updated_at": at + timedelta(hours=1),
    }
    snap = {"product": "Trà hoa vàng", "producer": "HTX Trà Ia Le", "commune": "Ia Le"}
    first = audit.entry_row(
        dossier_id=row["id"],
        seq=1,
        prev_hash=audit.GENESIS,
        trigger="register",
        from_state=None,
        to_state="registration",
        actor="lan",
        reason=None,
        at=at,
        data_after={**snap, "group": None, "data": {}},
    )
    second = audit.entry_row(
        dossier_id=row["id"],
        seq=2,
        prev_hash=first["hash"],
        trigger="attach",
        from_state="registration",
        to_state="registration",
        actor="lan",
        reason=None,
        at=at + timedelta(hours=1),
        data_before={**snap, "group": None, "data": {}},
        data_after={**snap, "group": None, "data": {"note": "đã bổ sung"}},
    )
    now = datetime(2026, 3, 20, 1, 0, tzinfo=UTC)
    timer = {
        "dossier_id": row["id"],
        "state": "registration",
        "entry_seq": 1,
        "deadline_at": now + timedelta(days=3),
        "auto_trigger": None,
        "repeat_working_days": None,
        "fired_at": None,
        "late_seconds": None,
        "created_at": at,
    }
    timers = [
        {**timer, "kind": "reminder", "due_at": now - timedelta(hours=1), "status": "pending"},
        {**timer, "kind": "deadline", "due_at": now + timedelta(days=3), "status": "pending"},
        {**timer, "kind": "reminder", "due_at": now - timedelta(days=9), "status": "cancelled"},
    ]
    with store.engine.begin() as conn:  # the 0006 tables, written as that release wrote them
        conn.execute(dossier_t.insert(), [row])
        conn.execute(audit_t.insert(), [first, second])
        conn.execute(sa.table("timer", *(sa.column(k) for k in timers[0])).insert(), timers)
    assert migrate.upgrade(store) == ("0006", SCHEMA_REVISION)
    with store.read() as conn:
        wake = dict(
            conn.execute(
                sa.select(timer_t.c.kind, timer_t.c.wake).where(timer_t.c.status == "pending")
            ).all()
        )
        assert wake == {"reminder": 1, "deadline": 1}
        dossier_indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("dossier")}
        audit_indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("audit_entry")}
    assert not {"ix_dossier_state", "ix_dossier_deadline_at"} & dossier_indexes
    assert "ix_audit_entry_at" not in audit_indexes
    report = audit.verify(store)
    assert report.ok and report.entries_checked == 2, report.problems
    workspace = Workspace(tmp_path, db_url)
    history = workspace.run("dossier", "history", row["id"], "--json", check=True).json()
    assert history[1]["data_before"]["data"] == {} and history[1]["data_before_stored"]
    due = workspace.run("timers", "list", "--due", "--json", now=now.isoformat(), check=True).json()
    assert [t["kind"] for t in due] == ["reminder"]
    swept = workspace.run("sweep", "--json", now=now.isoformat(), check=True)
    assert swept.json()["timers_fired"] == 1, swept.stdout
    later = (now + timedelta(days=4)).isoformat()
    swept = workspace.run("sweep", "--json", now=later, check=True)
    assert swept.json()["timers_fired"] == 1, swept  # the deadline, found through its wake mark
    _alembic(store, "downgrade", "0006")
    assert migrate.upgrade(store) == ("0006", SCHEMA_REVISION)
    assert audit.verify(store).ok
    store.dispose()
