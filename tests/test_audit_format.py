"""What an audit entry stores in the after-only format, and that older entries still verify.

New entries store the dossier as the change left it (``data_after``) and no ``data_before``:
that was the previous entry's ``data_after``, already pinned by ``prev_hash``. The hash body is
the row as stored, so old entries keep their hashes and any value written into either column
later is a hash mismatch. Every test runs on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_support import drop_protection, upgraded_workspace
from conftest import Workspace

from ocop_workflow import audit
from ocop_workflow.config import load_config
from ocop_workflow.definitions import Registry
from ocop_workflow.engine import Engine, snapshot
from ocop_workflow.store import Store, audit_t, dossier_t, dumps

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
def engine(workspace: Workspace, store: Store) -> Engine:
    config = load_config(workspace.config, {"OCOP_DATABASE_URL": workspace.url})
    now = [START]

    def clock() -> datetime:
        now[0] += timedelta(minutes=7)
        return now[0]

    return Engine(store, Registry(config.workflows_dir), config, clock=clock)


def _entries(store: Store, dossier_id: str) -> list[Any]:
    with store.read() as conn:
        return list(
            conn.execute(
                sa.select(audit_t).where(audit_t.c.dossier_id == dossier_id).order_by(audit_t.c.seq)
            )
        )


def _moved_dossier(engine: Engine) -> str:
    """A dossier with four entries: registered, accepted, a note amended, the plan approved."""
    user = engine.config.user
    dossier_id = str(
        engine.register(
            user("lan"), product="Trà hoa vàng", producer="HTX Trà Ia Le", commune="Ia Le"
        )["id"]
    )
    engine.advance(dossier_id, "accept_idea", user("lan"))
    engine.amend(
        dossier_id,
        user("lan"),
        "attach",
        lambda _row, data: {**data, "note": "đã bổ sung bản vẽ bao bì"},
    )
    engine.advance(dossier_id, "approve_plan", user("lan"))
    return dossier_id


def _tamper(url: str, dossier_id: str, seq: int, values: dict[str, Any]) -> None:
    drop_protection(url)
    db = sa.create_engine(url)
    try:
        with db.begin() as conn:
            changed = conn.execute(
                audit_t.update()
                .where(audit_t.c.dossier_id == dossier_id, audit_t.c.seq == seq)
                .values(**values)
            )
            assert changed.rowcount == 1
    finally:
        db.dispose()


def test_a_new_entry_stores_only_the_dossier_as_the_change_left_it(
    engine: Engine, store: Store
) -> None:
    dossier_id = _moved_dossier(engine)
    rows = _entries(store, dossier_id)
    assert [r.trigger for r in rows] == ["register", "accept_idea", "attach", "approve_plan"]
    assert [r.data_before for r in rows] == [None] * 4
    with store.read() as conn:
        row = conn.execute(sa.select(dossier_t).where(dossier_t.c.id == dossier_id)).one()
    assert json.loads(rows[-1].data_after) == snapshot(row._mapping)
    assert audit.verify(store).ok


def test_history_shows_what_each_entry_changed(engine: Engine, workspace: Workspace) -> None:
    """``dossier history --json`` gives each entry the dossier before it (the previous entry's
    snapshot), so the change is visible although the entry no longer stores it."""
    dossier_id = _moved_dossier(engine)
    history = workspace.run("dossier", "history", dossier_id, "--json", check=True).json()
    assert history[0]["data_before"] is None
    for previous, entry in itertools.pairwise(history):
        assert entry["data_before"] == previous["data"]
    amended = history[2]
    assert "note" not in amended["data_before"]["data"]
    assert amended["data"]["data"]["note"] == "đã bổ sung bản vẽ bao bì"
    accepted = history[1]
    assert (accepted["data_before"]["stage"], accepted["data"]["stage"]) == (
        "registration",
        "business_plan",
    )


def test_an_export_since_a_date_gives_its_first_entry_the_dossier_before_it(
    engine: Engine, store: Store, workspace: Workspace
) -> None:
    dossier_id = _moved_dossier(engine)
    rows = _entries(store, dossier_id)
    since = rows[2].at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    out = workspace.run(
        "audit", "export", "--format", "jsonl", "--since", since + "+00:00", check=True
    )
    exported = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["seq"] for e in exported] == [3, 4]
    assert exported[0]["data_before"] == json.loads(rows[1].data_after)
    assert exported[1]["data_before"] == json.loads(rows[2].data_after)


#: Every stored column of an entry but its key and its own hash, and a value an intruder writes.
CHANGES = {
    "data_before": lambda rows: rows[1].data_after,  # even the true before-state
    "data_after": lambda rows: dumps({**json.loads(rows[2].data_after), "product": "Trà xanh"}),
    "trigger": lambda rows: "approve_plan",
    "from_state": lambda rows: "registration",
    "to_state": lambda rows: "production",
    "actor": lambda rows: "hung",
    "reason": lambda rows: "bổ sung",
    "at": lambda rows: rows[2].at - timedelta(seconds=1),
    "prev_hash": lambda rows: rows[0].hash,
}


@pytest.mark.parametrize("column", sorted(CHANGES))
def test_a_change_to_any_column_of_a_new_entry_is_found(
    column: str, engine: Engine, store: Store, workspace: Workspace
) -> None:
    dossier_id = _moved_dossier(engine)
    rows = _entries(store, dossier_id)
    assert {c.name for c in audit_t.columns} == {*CHANGES, "dossier_id", "seq", "hash"}
    _tamper(workspace.url, dossier_id, 3, {column: CHANGES[column](rows)})
    report = audit.verify(store)
    assert [(p.dossier, p.seq) for p in report.problems] == [(dossier_id, 3)], report.problems


#: An entry as earlier versions wrote it (both snapshots), and the hash the
#: code of those versions computed for it: the format change must not move it.
OLD_ENTRY = {
    "dossier_id": "OLD-2",
    "seq": 2,
    "trigger": "amend_note",
    "from_state": "registration",
    "to_state": "registration",
    "actor": "lan",
    "reason": "ghi chú",
    "at": datetime(2026, 3, 2, 2, 0, tzinfo=UTC),
    "data_before": {"product": "Trà hoa vàng", "data": {}},
    "data_after": {"product": "Trà hoa vàng", "data": {"note": "đã bổ sung"}},
    "prev_hash": "a" * 64,
}
OLD_HASH = "a2e3d0aafc39ae8cd5b50f1ad75d40621aba6e15c1710fbdb8b55f9a2e8129cc"


def test_the_hash_of_an_entry_in_the_earlier_format_is_unchanged() -> None:
    assert audit.entry_hash(**OLD_ENTRY) == OLD_HASH
    assert audit.entry_row(**OLD_ENTRY)["hash"] == OLD_HASH
    without_before = {**OLD_ENTRY, "data_before": None}
    assert audit.entry_hash(**without_before) != OLD_HASH


def _old_then_new_chain(engine: Engine, store: Store) -> str:
    """A dossier registered, given a second entry as earlier versions wrote it (both snapshots),
    then advanced by this version."""
    user = engine.config.user
    dossier_id = str(
        engine.register(
            user("lan"), product="Trà hoa vàng", producer="HTX Trà Ia Le", commune="Ia Le"
        )["id"]
    )
    first = _entries(store, dossier_id)[0]
    at = START + timedelta(minutes=10)  # between the engine's ticks (every 7 minutes)
    with store.write() as conn:
        row = dict(
            conn.execute(sa.select(dossier_t).where(dossier_t.c.id == dossier_id)).one()._mapping
        )
        data = {"note": "hồ sơ cũ"}
        old = audit.entry_row(
            dossier_id=dossier_id,
            seq=2,
            prev_hash=first.hash,
            trigger="attach",
            from_state=row["state"],
            to_state=row["state"],
            actor="lan",
            reason=None,
            at=at,
            data_before=snapshot(row),
            data_after=snapshot(row, data),
        )
        conn.execute(audit_t.insert(), [old])
        conn.execute(
            dossier_t.update()
            .where(dossier_t.c.id == dossier_id)
            .values(data=dumps(data), version=2, updated_at=at)
        )
    engine.advance(dossier_id, "accept_idea", user("lan"))
    return dossier_id


def test_a_chain_begun_in_the_earlier_format_verifies_and_goes_on_in_the_new_one(
    engine: Engine, store: Store, workspace: Workspace
) -> None:
    """The whole chain verifies, history shows the stored before-state, and clearing the old
    entry's ``data_before`` is found."""
    dossier_id = _old_then_new_chain(engine, store)
    rows = _entries(store, dossier_id)
    assert rows[1].data_before is not None and rows[2].data_before is None
    assert audit.verify(store).ok
    history = workspace.run("dossier", "history", dossier_id, "--json", check=True).json()
    assert history[1]["data_before"]["data"] == {}
    assert history[2]["data_before"]["data"] == {"note": "hồ sơ cũ"}
    _tamper(workspace.url, dossier_id, 2, {"data_before": None})
    assert [(p.dossier, p.seq) for p in audit.verify(store).problems] == [(dossier_id, 2)]


def _rehash(entry: dict[str, Any]) -> str:
    """The README's rule for re-hashing an exported entry, written out without ``ocop``."""
    body = {
        "dossier": entry["dossier"],
        "seq": entry["seq"],
        "trigger": entry["trigger"],
        "from": entry["from"],
        "to": entry["to"],
        "actor": entry["actor"],
        "reason": entry["reason"],
        "at": datetime.fromisoformat(entry["at"])
        .astimezone(UTC)
        .isoformat(timespec="microseconds"),
        "data_before": entry["data_before"] if entry["data_before_stored"] else None,
        "data_after": entry["data"],
        "prev_hash": entry["prev_hash"],
    }
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_auditor_re_hashes_every_exported_entry_from_the_export_alone(
    fmt: str, engine: Engine, store: Store, workspace: Workspace
) -> None:
    """Old-format and new-format entries side by side: ``data_before_stored`` says which
    ``data_before`` the hash covers, and every link of the export checks out."""
    _old_then_new_chain(engine, store)
    _moved_dossier(engine)
    out = workspace.run("audit", "export", "--format", fmt, check=True).stdout
    if fmt == "jsonl":
        exported = [json.loads(line) for line in out.splitlines()]
    else:
        exported = [
            {
                **{k: v or None for k, v in r.items()},  # an empty cell is null
                "seq": int(r["seq"]),
                "data": json.loads(r["data"]),
                "data_before": json.loads(r["data_before"]) if r["data_before"] else None,
                "data_before_stored": {"true": True, "false": False}[r["data_before_stored"]],
            }
            for r in csv.DictReader(io.StringIO(out))
        ]
    assert len(exported) == 3 + 4
    assert [e["data_before_stored"] for e in exported if e["seq"] > 1].count(True) == 1
    previous: dict[str, str] = {}
    for entry in exported:
        assert _rehash(entry) == entry["hash"], entry
        assert entry["prev_hash"] == previous.get(entry["dossier"], audit.GENESIS)
        previous[entry["dossier"]] = entry["hash"]
