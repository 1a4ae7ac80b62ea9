"""The audit trail is append-only in the database and tamper-evident when that is bypassed.

Every test runs on a SQLite file and on PostgreSQL. Rows are changed with plain SQL, as an
intruder with database access would, never through ``ocop_workflow``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_support import drop_protection as drop
from audit_support import upgraded_workspace
from conftest import Workspace

from ocop_workflow import audit
from ocop_workflow.config import load_config
from ocop_workflow.definitions import Registry
from ocop_workflow.engine import Engine
from ocop_workflow.store import Store, audit_t, dossier_t

PRODUCT = "Cà phê bột nguyên chất Ia Le"
PRODUCER = "HTX Cà phê Ia Le"
WITHDRAW_REASON = "Chủ thể xin rút hồ sơ để hoàn thiện bao bì, nhãn mác"
REJECT_REASON = "Ý tưởng trùng với sản phẩm Hồ tiêu đã được công nhận"
START = datetime.fromisoformat("2026-03-02T09:00+07:00")


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Workspace:
    """Like conftest's, on both databases, but the schema is made in-process (no subprocess)."""
    return upgraded_workspace(tmp_path, db_url)


@pytest.fixture
def trail(workspace: Workspace) -> dict[str, str]:
    """Two dossiers with histories: a withdrawn one (4 entries), a rejected one (2 entries)."""
    config = load_config(workspace.config, {"OCOP_DATABASE_URL": workspace.url})
    store = Store(workspace.url)
    now = [START]
    engine = Engine(store, Registry(config.workflows_dir), config, clock=lambda: now[0])
    user = config.user
    try:
        d1 = engine.register(user("lan"), product=PRODUCT, producer=PRODUCER, commune="Ia Le")
        now[0] += timedelta(hours=1)
        d2 = engine.register(
            user("htx_iale"), product="Mật ong hoa cà phê", producer=PRODUCER, commune="Ia Le"
        )
        steps = [
            (d1["id"], "accept_idea", "lan", None),
            (d1["id"], "approve_plan", "lan", None),
            (d2["id"], "reject", "lan", REJECT_REASON),
            (d1["id"], "withdraw", "htx_iale", WITHDRAW_REASON),
        ]
        for dossier_id, trigger, actor, reason in steps:
            now[0] += timedelta(hours=1)
            engine.advance(dossier_id, trigger, user(actor), reason=reason)
    finally:
        store.dispose()
    return {"withdrawn": d1["id"], "rejected": d2["id"]}


@pytest.fixture
def db(workspace: Workspace) -> Iterator[sa.Engine]:
    engine = sa.create_engine(workspace.url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Store]:
    store = Store(workspace.url)
    yield store
    store.dispose()


def entries(db: sa.Engine, dossier_id: str | None = None) -> list[Any]:
    query = sa.select(audit_t).order_by(audit_t.c.dossier_id, audit_t.c.seq)
    if dossier_id is not None:
        query = query.where(audit_t.c.dossier_id == dossier_id)
    with db.connect() as conn:
        return list(conn.execute(query))


def drop_protection(db: sa.Engine) -> None:
    """What an intruder with the database password would do first."""
    drop(db.url.render_as_string(hide_password=False))


def problems_of(report: audit.VerifyReport) -> list[tuple[str, int | None]]:
    return [(p.dossier, p.seq) for p in report.problems]


# --- the database refuses ------------------------------------------------------------------------


def test_database_rejects_an_update_of_an_audit_entry(trail: dict[str, str], db: sa.Engine) -> None:
    before = entries(db)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin() as conn:
        conn.execute(
            audit_t.update()
            .where(audit_t.c.dossier_id == trail["withdrawn"], audit_t.c.seq == 4)
            .values(reason="Lý do đã bị sửa")
        )
    assert entries(db) == before


def test_database_rejects_a_delete_of_an_audit_entry(trail: dict[str, str], db: sa.Engine) -> None:
    before = entries(db)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin() as conn:
        conn.execute(audit_t.delete().where(audit_t.c.dossier_id == trail["rejected"]))
    assert entries(db) == before


def test_database_rejects_emptying_the_audit_table(trail: dict[str, str], db: sa.Engine) -> None:
    before = entries(db)
    statement = (
        "DELETE FROM audit_entry" if db.dialect.name == "sqlite" else ("TRUNCATE audit_entry")
    )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin() as conn:
        conn.execute(sa.text(statement))
    assert entries(db) == before


# --- the chain ---------------------------------------------------------------------------------


def test_each_entry_links_to_the_hash_of_the_one_before(
    trail: dict[str, str], db: sa.Engine
) -> None:
    for dossier_id, count in ((trail["withdrawn"], 4), (trail["rejected"], 2)):
        rows = entries(db, dossier_id)
        assert [r.seq for r in rows] == list(range(1, count + 1))
        assert rows[0].prev_hash == "0" * 64
        assert rows[0].trigger == "register" and rows[0].from_state is None
        for earlier, later in itertools.pairwise(rows):
            assert later.prev_hash == earlier.hash
        hashes = [r.hash for r in rows]
        assert len(set(hashes)) == count
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def test_history_shows_the_chain_links(
    trail: dict[str, str], db: sa.Engine, workspace: Workspace
) -> None:
    dossier_id = trail["withdrawn"]
    shown = workspace.run("dossier", "history", dossier_id, "--json", user="hung", check=True)
    assert [(e["seq"], e["prev_hash"], e["hash"]) for e in shown.json()] == [
        (r.seq, r.prev_hash, r.hash) for r in entries(db, dossier_id)
    ]
    assert shown.json()[-1]["reason"] == WITHDRAW_REASON


def test_an_untouched_trail_verifies(
    trail: dict[str, str], store: Store, workspace: Workspace
) -> None:
    report = audit.verify(store)
    assert report.ok, report.problems
    assert (report.dossiers_checked, report.entries_checked) == (2, 6)
    result = workspace.run("audit", "verify", "--json")
    assert result.code == 0, result
    document = result.json()
    assert (document["ok"], document["dossiers_checked"], document["entries_checked"]) == (
        True,
        2,
        6,
    )
    assert document["problems"] == []


# --- tampering is found ------------------------------------------------------------------------


def _edit(column: str, row: Any) -> Any:
    if column == "reason":
        return "Chủ thể tự nguyện rút hồ sơ"
    if column == "actor":
        return "hung"
    if column == "data_after":
        data = json.loads(row.data_after)
        data["product"] = "Cà phê hòa tan"
        return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if column == "at":
        return row.at - timedelta(days=3)
    raise AssertionError(column)


def assert_verify_names(workspace: Workspace, dossier_id: str, seq: int | None) -> None:
    """``ocop audit verify`` exits 7 naming the dossier and the first broken entry."""
    result = workspace.run("audit", "verify")
    assert result.code == 7, result
    assert result.stderr.startswith("error: "), result
    assert dossier_id in result.stderr, result
    if seq is not None:
        assert f"{dossier_id} entry {seq}" in result.stdout, result


@pytest.mark.parametrize("column", ["reason", "actor", "data_after", "at"])
def test_an_edited_entry_is_found_by_verify(
    column: str, trail: dict[str, str], db: sa.Engine, store: Store, workspace: Workspace
) -> None:
    dossier_id = trail["withdrawn"]
    drop_protection(db)
    target = entries(db, dossier_id)[1]  # seq 2, in the middle of the chain
    with db.begin() as conn:
        changed = conn.execute(
            audit_t.update()
            .where(audit_t.c.dossier_id == dossier_id, audit_t.c.seq == 2)
            .values({column: _edit(column, target)})
        )
        assert changed.rowcount == 1
    report = audit.verify(store)
    assert problems_of(report) == [(dossier_id, 2)], report.problems
    assert "hash" in report.problems[0].problem
    assert audit.verify(store, trail["rejected"]).ok
    if column == "reason":  # the command is the same whatever the column: run it once
        assert_verify_names(workspace, dossier_id, 2)
        result = workspace.run("audit", "verify", "--json")
        assert result.code == 7, result
        document = result.json()
        assert document["ok"] is False
        assert [(p["dossier"], p["seq"]) for p in document["problems"]] == [(dossier_id, 2)]


def test_an_edit_that_recomputes_the_entry_hash_breaks_the_next_link(
    trail: dict[str, str], db: sa.Engine, store: Store
) -> None:
    """Re-hashing an edited entry does not help: the next entry still holds the old hash."""
    dossier_id = trail["withdrawn"]
    drop_protection(db)
    row = entries(db, dossier_id)[1]
    digest = audit.entry_hash(
        dossier_id=dossier_id,
        seq=2,
        trigger=row.trigger,
        from_state=row.from_state,
        to_state=row.to_state,
        actor="hung",
        reason=row.reason,
        at=row.at,
        data_before=None if row.data_before is None else json.loads(row.data_before),
        data_after=json.loads(row.data_after),
        prev_hash=row.prev_hash,
    )
    with db.begin() as conn:
        conn.execute(
            audit_t.update()
            .where(audit_t.c.dossier_id == dossier_id, audit_t.c.seq == 2)
            .values(actor="hung", hash=digest)
        )
    assert problems_of(audit.verify(store)) == [(dossier_id, 3)]


def test_a_deleted_middle_entry_is_found_as_a_sequence_gap(
    trail: dict[str, str], db: sa.Engine, store: Store, workspace: Workspace
) -> None:
    dossier_id = trail["withdrawn"]
    drop_protection(db)
    with db.begin() as conn:
        conn.execute(audit_t.delete().where(audit_t.c.dossier_id == dossier_id, audit_t.c.seq == 2))
    report = audit.verify(store)
    assert problems_of(report) == [(dossier_id, 3)], report.problems
    assert "gap" in report.problems[0].problem
    assert_verify_names(workspace, dossier_id, 3)


def test_a_deleted_last_entry_is_found(trail: dict[str, str], db: sa.Engine, store: Store) -> None:
    """Dropping the newest entry leaves a valid chain that no longer matches the dossier."""
    dossier_id = trail["withdrawn"]
    drop_protection(db)
    with db.begin() as conn:
        conn.execute(audit_t.delete().where(audit_t.c.dossier_id == dossier_id, audit_t.c.seq == 4))
    report = audit.verify(store)
    assert [p.dossier for p in report.problems] == [dossier_id], report.problems


def test_a_dossier_whose_state_was_changed_by_sql_is_found(
    trail: dict[str, str], db: sa.Engine, store: Store, workspace: Workspace
) -> None:
    dossier_id = trail["rejected"]
    with db.begin() as conn:
        conn.execute(
            dossier_t.update().where(dossier_t.c.id == dossier_id).values(state="business_plan")
        )
    report = audit.verify(store)
    assert [p.dossier for p in report.problems] == [dossier_id], report.problems
    assert "business_plan" in report.problems[0].problem
    assert_verify_names(workspace, dossier_id, 2)


def test_a_dossier_whose_data_was_changed_by_sql_is_found(
    trail: dict[str, str], db: sa.Engine, store: Store
) -> None:
    dossier_id = trail["withdrawn"]
    with db.begin() as conn:
        conn.execute(
            dossier_t.update()
            .where(dossier_t.c.id == dossier_id)
            .values(data=json.dumps({"stars": 5}))
        )
    assert [p.dossier for p in audit.verify(store).problems] == [dossier_id]


@pytest.mark.parametrize(
    ("column", "value"), [("commune", "Ia Phang"), ("producer", "HTX Hồ tiêu Ia Le")]
)
def test_a_dossier_moved_to_another_commune_or_producer_by_sql_is_found(
    column: str, value: str, trail: dict[str, str], db: sa.Engine, store: Store
) -> None:
    """Commune and producer decide who may act on a dossier; every entry records them."""
    dossier_id = trail["withdrawn"]
    with db.begin() as conn:
        conn.execute(dossier_t.update().where(dossier_t.c.id == dossier_id).values({column: value}))
    assert [p.dossier for p in audit.verify(store).problems] == [dossier_id]


# --- export ------------------------------------------------------------------------------------


def test_export_jsonl_holds_every_entry_with_vietnamese_intact(
    trail: dict[str, str], db: sa.Engine, workspace: Workspace
) -> None:
    result = workspace.run("audit", "export", "--format", "jsonl", check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    stored = entries(db)
    assert [(e["dossier"], e["seq"], e["hash"]) for e in lines] == [
        (r.dossier_id, r.seq, r.hash) for r in stored
    ]
    assert WITHDRAW_REASON in result.stdout  # literally, not as \\u escapes
    assert REJECT_REASON in result.stdout
    assert PRODUCT in result.stdout
    by_key = {(e["dossier"], e["seq"]): e for e in lines}
    withdrawn = by_key[(trail["withdrawn"], 4)]
    assert (withdrawn["trigger"], withdrawn["actor"], withdrawn["reason"]) == (
        "withdraw",
        "htx_iale",
        WITHDRAW_REASON,
    )
    assert withdrawn["from"] == "production" and withdrawn["to"] == "withdrawn"


def test_export_csv_holds_every_entry_with_vietnamese_intact(
    trail: dict[str, str], db: sa.Engine, workspace: Workspace
) -> None:
    out = workspace.root / "kiểm toán.csv"
    workspace.run("audit", "export", "--format", "csv", "-o", str(out), check=True)
    raw = out.read_bytes()
    assert WITHDRAW_REASON.encode("utf-8") in raw
    assert PRODUCT.encode("utf-8") in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    stored = entries(db)
    assert [(r["dossier"], int(r["seq"]), r["hash"]) for r in rows] == [
        (r.dossier_id, r.seq, r.hash) for r in stored
    ]
    reasons = {(r["dossier"], int(r["seq"])): r["reason"] for r in rows}
    assert reasons[(trail["withdrawn"], 4)] == WITHDRAW_REASON
    assert reasons[(trail["rejected"], 2)] == REJECT_REASON
    first = next(r for r in rows if r["dossier"] == trail["withdrawn"] and r["seq"] == "1")
    assert json.loads(first["data"])["product"] == PRODUCT
