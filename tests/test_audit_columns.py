"""``audit verify`` sees every column of a dossier row, on a SQLite file and on PostgreSQL.

Each column is either recorded in the last entry's snapshot or recomputed from the chain (id,
state, version, created/updated times); changing any of them with plain SQL, as someone with
the database password would, is exit 7 naming the dossier and the column.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_support import upgraded_workspace
from conftest import Workspace

from ocop_workflow import audit
from ocop_workflow.config import load_config
from ocop_workflow.definitions import Registry
from ocop_workflow.engine import Engine
from ocop_workflow.store import Store, audit_t, dossier_t

START = datetime.fromisoformat("2026-03-02T09:00+07:00")


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Workspace:
    return upgraded_workspace(tmp_path, db_url)


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Store]:
    store = Store(workspace.url)
    yield store
    store.dispose()


@pytest.fixture
def dossier(workspace: Workspace, store: Store) -> str:
    """A dossier accepted as an idea (2 entries, a deadline running) and a second, untouched."""
    config = load_config(workspace.config, {"OCOP_DATABASE_URL": workspace.url})
    now = [START]
    engine = Engine(store, Registry(config.workflows_dir), config, clock=lambda: now[0])
    row = engine.register(
        config.user("lan"),
        product="Cà phê bột Ia Le",
        producer="HTX Cà phê Ia Le",
        commune="Ia Le",
    )
    engine.register(
        config.user("lan"),
        product="Mật ong hoa cà phê",
        producer="HTX Cà phê Ia Le",
        commune="Ia Le",
    )
    now[0] += timedelta(hours=2)
    engine.advance(row["id"], "accept_idea", config.user("lan"))
    assert audit.verify(store).ok
    return str(row["id"])


def _later(value: datetime) -> datetime:
    return value + timedelta(days=30)


#: column → how an intruder changes it (given the current value).
TAMPER: dict[str, Callable[[Any], Any]] = {
    "workflow": lambda _: "ocop-148",
    "workflow_version": lambda _: "1999.1",
    "workflow_sha256": lambda _: "0" * 64,
    "stage": lambda _: "evaluation",
    "state_entered_at": _later,
    "state_entry_seq": lambda v: v + 5,
    "deadline_at": _later,
    "deadline_note": lambda _: json.dumps({"working_days": 99}),
    "version": lambda v: v + 1,
    "created_at": lambda v: v - timedelta(days=400),
    "updated_at": _later,
    "product_group": lambda _: "thuc_pham",
    "product": lambda _: "Cà phê hòa tan",
}


def _update(db_url: str, dossier_id: str, column: str, change: Callable[[Any], Any]) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            current = conn.execute(
                sa.select(dossier_t.c[column]).where(dossier_t.c.id == dossier_id)
            ).scalar_one()
            conn.execute(
                dossier_t.update()
                .where(dossier_t.c.id == dossier_id)
                .values({column: change(current)})
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("column", sorted(TAMPER))
def test_a_dossier_column_changed_by_sql_is_named_by_verify(
    column: str, dossier: str, store: Store, workspace: Workspace
) -> None:
    _update(workspace.url, dossier, column, TAMPER[column])
    report = audit.verify(store)
    assert [(p.dossier, p.columns) for p in report.problems] == [(dossier, [column])]
    if column in ("workflow", "deadline_at", "version"):  # the examples, end to end
        result = workspace.run("audit", "verify")
        assert result.code == 7, result
        assert f"dossier {dossier} entry 2 (column {column})" in result.stderr, result
        assert column in result.stdout, result


def test_every_dossier_column_is_covered_by_the_chain(dossier: str, store: Store) -> None:
    """A new column must be added to the snapshot or recomputed, or this fails."""
    with store.read() as conn:
        last = conn.execute(
            sa.select(audit_t)
            .where(audit_t.c.dossier_id == dossier)
            .order_by(audit_t.c.seq.desc())
            .limit(1)
        ).one()
    covered = audit.expected_row(audit._Tail(last, last.at))
    assert set(covered) | set(audit.NOT_EVIDENCE) == {c.name for c in dossier_t.columns}


def test_a_chain_written_before_the_full_snapshot_still_verifies(
    workspace: Workspace, store: Store
) -> None:
    """Old entries recorded only product, producer, commune, group and data: their hashes are
    unchanged and verify checks of them what they hold (and what the chain recomputes)."""
    at = START
    old_snapshot = {
        "product": "Trà hoa vàng",
        "producer": "HTX Trà",
        "commune": "Ia Le",
        "group": None,
        "data": {},
    }
    entry = audit.entry_row(
        dossier_id="OLD-1",
        seq=1,
        prev_hash=audit.GENESIS,
        trigger="register",
        from_state=None,
        to_state="idea",
        actor="lan",
        reason=None,
        at=at,
        data_before=None,
        data_after=old_snapshot,
    )
    # The hash the code before this change computed for this very entry.
    assert entry["hash"] == audit.entry_hash(
        dossier_id="OLD-1",
        seq=1,
        trigger="register",
        from_state=None,
        to_state="idea",
        actor="lan",
        reason=None,
        at=at,
        data_before=None,
        data_after=old_snapshot,
        prev_hash=audit.GENESIS,
    )
    row = {
        "id": "OLD-1",
        "product": "Trà hoa vàng",
        "producer": "HTX Trà",
        "commune": "Ia Le",
        "product_group": None,
        "workflow": "ocop-1489",
        "workflow_version": "2019.1",
        "state": "idea",
        "stage": "registration",
        "state_entered_at": at,
        "state_entry_seq": 1,
        "deadline_at": None,
        "deadline_note": None,
        "version": 1,
        "data": "{}",
        "created_at": at,
        "updated_at": at,
    }
    with store.write() as conn:
        conn.execute(dossier_t.insert(), [row])
        conn.execute(audit_t.insert(), [entry])
    assert audit.verify(store).ok
    with store.write() as conn:
        conn.execute(dossier_t.update().values(version=3))
    assert [p.columns for p in audit.verify(store).problems] == [["version"]]
