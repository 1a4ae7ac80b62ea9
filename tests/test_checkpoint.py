"""Signed checkpoints catch what a consistent-looking database hides, on SQLite and PostgreSQL.

Someone with write access to the database can rewrite a chain with recomputed hashes, cut its
last entries and roll the dossier back, or delete a dossier with its history: plain ``audit
verify`` is then clean. A checkpoint signed before (with a key the database does not hold) is
not: ``audit verify --checkpoint`` exits 7 naming the dossier. Rows are changed with plain SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_support import drop_protection, upgraded_workspace
from conftest import Workspace, write_config

from ocop_workflow import audit
from ocop_workflow import checkpoint as cp
from ocop_workflow.config import load_config
from ocop_workflow.definitions import Registry
from ocop_workflow.engine import Engine
from ocop_workflow.store import Store, audit_t, dossier_t

START = datetime.fromisoformat("2026-03-02T09:00+07:00")
AUDIT = """
[audit]
signing_key = "keys/audit.pem"
"""


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Workspace:
    ws = upgraded_workspace(tmp_path, db_url, extra=AUDIT)
    ws.run("audit", "keygen", check=True)
    return ws


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
        now[0] += timedelta(hours=1)
        return now[0]

    return Engine(store, Registry(config.workflows_dir), config, clock=clock)


@pytest.fixture
def trail(engine: Engine) -> dict[str, str]:
    """Two dossiers: one moved three times (4 entries), one just registered."""
    user = engine.config.user
    moved = engine.register(
        user("lan"), product="Cà phê bột Ia Le", producer="HTX Cà phê Ia Le", commune="Ia Le"
    )["id"]
    fresh = engine.register(
        user("lan"), product="Mật ong hoa cà phê", producer="HTX Cà phê Ia Le", commune="Ia Le"
    )["id"]
    engine.advance(moved, "accept_idea", user("lan"))
    engine.advance(moved, "approve_plan", user("lan"))
    engine.advance(moved, "withdraw", user("htx_iale"), reason="Chủ thể xin rút hồ sơ")
    return {"moved": moved, "fresh": fresh}


def checkpoint(ws: Workspace, name: str = "cp.json") -> Path:
    result = ws.run("audit", "checkpoint", "-o", name)
    assert result.code == 0, result
    return ws.root / name


def assert_caught(ws: Workspace, path: Path, dossier: str, word: str) -> None:
    result = ws.run("audit", "verify", "--checkpoint", str(path))
    assert result.code == 7, result
    assert dossier in result.stderr, result
    assert f"{dossier} " in result.stdout and word in result.stdout, result


def roll_back_to(conn: sa.Connection, dossier: str, seq: int) -> None:
    """Delete the entries after ``seq`` and make the dossier row what entry ``seq`` says."""
    conn.execute(audit_t.delete().where(audit_t.c.dossier_id == dossier, audit_t.c.seq > seq))
    last = conn.execute(
        sa.select(audit_t).where(audit_t.c.dossier_id == dossier, audit_t.c.seq == seq)
    ).one()
    first_at = conn.execute(
        sa.select(audit_t.c.at).where(audit_t.c.dossier_id == dossier, audit_t.c.seq == 1)
    ).scalar_one()
    row = audit.expected_row(audit._Tail(last, first_at))
    values: dict[str, Any] = {}
    for column, value in row.items():
        if column in ("data", "deadline_note"):
            value = None if value is None else json.dumps(value, ensure_ascii=False)
        elif column in ("state_entered_at", "deadline_at", "created_at", "updated_at"):
            value = None if value is None else datetime.fromisoformat(value)
        values[column] = value
    conn.execute(dossier_t.update().where(dossier_t.c.id == dossier).values(values))


# --- a sound trail ------------------------------------------------------------------------------


def test_a_checkpoint_verifies_and_still_does_after_the_chains_grow(
    trail: dict[str, str], workspace: Workspace, engine: Engine
) -> None:
    path = checkpoint(workspace)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["count"] == 2 and document["entries"] == 5
    assert {(h["dossier"], h["seq"]) for h in document["heads"]} == {
        (trail["moved"], 4),
        (trail["fresh"], 1),
    }
    engine.advance(trail["fresh"], "accept_idea", engine.config.user("lan"))
    result = workspace.run("audit", "verify", "--checkpoint", str(path))
    assert result.code == 0, result


def test_an_auditor_checks_a_checkpoint_with_only_the_public_key(
    trail: dict[str, str], workspace: Workspace, tmp_path: Path
) -> None:
    path = checkpoint(workspace)
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    public = workspace.root / "keys" / "audit.pub.pem"
    auditor = Workspace(elsewhere, "sqlite:///nowhere.db")
    result = auditor.run(
        "audit",
        "checkpoint",
        "--verify-only",
        str(path),
        "--public-key",
        str(public),
        "--json",
        OCOP_CONFIG=str(elsewhere / "no-config.toml"),
    )
    assert result.code == 0, result
    assert result.json()["count"] == 2
    assert not (elsewhere / "nowhere.db").exists()


def test_a_changed_checkpoint_file_has_a_bad_signature(
    trail: dict[str, str], workspace: Workspace
) -> None:
    path = checkpoint(workspace)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["heads"] = [h for h in document["heads"] if h["dossier"] != trail["moved"]]
    document["count"] = len(document["heads"])
    document["root"] = cp.root_hash(document["heads"])
    path.write_text(json.dumps(document), encoding="utf-8")
    for args in (
        ("audit", "verify", "--checkpoint", str(path)),
        ("audit", "checkpoint", "--verify-only", str(path)),
    ):
        result = workspace.run(*args)
        assert result.code == 7, result
        assert "bad signature" in result.stderr and str(path) in result.stderr, result


# --- what the database alone cannot show --------------------------------------------------------


def test_a_chain_rewritten_with_recomputed_hashes_is_caught(
    trail: dict[str, str], workspace: Workspace, store: Store
) -> None:
    path = checkpoint(workspace)
    dossier = trail["moved"]
    drop_protection(workspace.url)
    with store.write() as conn:
        prev = audit.GENESIS
        for row in conn.execute(
            sa.select(audit_t).where(audit_t.c.dossier_id == dossier).order_by(audit_t.c.seq)
        ).all():
            actor = "hung" if row.seq == 2 else row.actor
            digest = audit.entry_hash(
                dossier_id=dossier,
                seq=row.seq,
                trigger=row.trigger,
                from_state=row.from_state,
                to_state=row.to_state,
                actor=actor,
                reason=row.reason,
                at=row.at,
                data_before=None if row.data_before is None else json.loads(row.data_before),
                data_after=json.loads(row.data_after),
                prev_hash=prev,
            )
            conn.execute(
                audit_t.update()
                .where(audit_t.c.dossier_id == dossier, audit_t.c.seq == row.seq)
                .values(actor=actor, prev_hash=prev, hash=digest)
            )
            prev = digest
    assert audit.verify(store).ok  # consistent: the database alone cannot tell
    assert_caught(workspace, path, dossier, "rewritten")


def test_a_chain_cut_short_with_its_dossier_rolled_back_is_caught(
    trail: dict[str, str], workspace: Workspace, store: Store
) -> None:
    path = checkpoint(workspace)
    drop_protection(workspace.url)
    with store.write() as conn:
        roll_back_to(conn, trail["moved"], 2)
    assert audit.verify(store).ok
    assert_caught(workspace, path, trail["moved"], "truncated")


def test_a_dossier_deleted_with_its_history_is_caught(
    trail: dict[str, str], workspace: Workspace, store: Store
) -> None:
    path = checkpoint(workspace)
    drop_protection(workspace.url)
    with store.write() as conn:
        conn.execute(sa.text("DELETE FROM timer"))
        conn.execute(audit_t.delete().where(audit_t.c.dossier_id == trail["fresh"]))
        conn.execute(dossier_t.delete().where(dossier_t.c.id == trail["fresh"]))
    assert audit.verify(store).ok
    assert_caught(workspace, path, trail["fresh"], "deleted")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # PostgreSQL only
def test_a_superuser_bypassing_the_triggers_is_caught(
    trail: dict[str, str], workspace: Workspace, store: Store
) -> None:
    """``session_replication_role = replica`` silences the append-only trigger: the chain can
    be cut with the triggers in place. Only the checkpoint notices."""
    path = checkpoint(workspace)
    engine = sa.create_engine(workspace.url)
    try:
        with engine.begin() as conn:
            with pytest.raises(sa.exc.DBAPIError), conn.begin_nested():
                conn.execute(audit_t.delete().where(audit_t.c.dossier_id == trail["moved"]))
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            roll_back_to(conn, trail["moved"], 3)
    finally:
        engine.dispose()
    assert audit.verify(store).ok
    assert_caught(workspace, path, trail["moved"], "truncated")


# --- the worker ---------------------------------------------------------------------------------


def test_the_worker_writes_checkpoints_on_schedule_and_mails_them_to_the_auditor(
    trail: dict[str, str], workspace: Workspace, store: Store
) -> None:
    from ocop_workflow.notify import deliver_pending

    write_config(
        workspace.root,
        extra=AUDIT
        + """checkpoint_interval_hours = 24
checkpoint_dir = "checkpoints"
checkpoint_recipients = ["kiemtoan@example.vn"]
checkpoint_channel = "file"
""",
    )
    result = workspace.run("worker", "--once", now="2026-03-03T08:00:00+07:00")
    assert result.code == 0, result
    written = sorted((workspace.root / "checkpoints").glob("checkpoint-*.json"))
    assert len(written) == 1
    config = load_config(workspace.config, {"OCOP_DATABASE_URL": workspace.url})
    later = datetime.fromisoformat("2026-03-03T09:00+07:00")
    assert cp.write_scheduled(store, config.audit, later) is None  # not due yet
    assert cp.write_scheduled(store, config.audit, later + timedelta(days=1)) is not None
    deliver_pending(store, config.notifications, later + timedelta(days=1))
    lines = [
        json.loads(line)
        for line in (workspace.root / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    mailed = [line for line in lines if line["kind"] == "audit_checkpoint"]
    assert [m["recipient"] for m in mailed] == ["kiemtoan@example.vn"] * 2
    copy = workspace.root / "copy.json"
    copy.write_text(mailed[0]["body"], encoding="utf-8")
    key = cp.load_public(workspace.root / "keys" / "audit.pub.pem")
    assert cp.read(copy, key).count == 2


def test_a_missing_signing_key_is_logged_and_never_stops_the_sweep(
    trail: dict[str, str], workspace: Workspace
) -> None:
    (workspace.root / "keys" / "audit.pem").unlink()
    write_config(workspace.root, extra=AUDIT + "checkpoint_interval_hours = 1\n")
    later = "2026-06-01T08:00:00+07:00"  # the fresh dossier's deadline has passed
    due = workspace.run("timers", "list", "--due", "--json", now=later).json()
    assert due, "the trail should leave a due timer"
    result = workspace.run("worker", "--once", now=later)
    assert result.code == 0, result
    assert "worker.checkpoint_failed" in result.stderr and "audit.pem" in result.stderr, result
    assert workspace.run("timers", "list", "--due", "--json", now=later).json() == []


def test_keygen_never_overwrites_a_signing_key(workspace: Workspace) -> None:
    import stat

    private = workspace.root / "keys" / "audit.pem"
    before = private.read_bytes()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    result = workspace.run("audit", "keygen")
    assert result.code == 2, result
    assert result.stderr.startswith("error: ") and "never overwritten" in result.stderr
    assert private.read_bytes() == before


# --- hostile files (h7 review) ------------------------------------------------------------------


def test_two_signed_checkpoints_that_disagree_on_an_entry_name_the_rewritten_dossier(
    trail: dict[str, str], workspace: Workspace, store: Store
) -> None:
    """The chain rewritten after the first checkpoint, the worker's next checkpoint signs the
    rewritten heads: given both (in any order), verify must not let the later one win."""
    first = checkpoint(workspace, "cp-1.json")
    dossier = trail["moved"]
    drop_protection(workspace.url)
    with store.write() as conn:
        prev = audit.GENESIS
        rows = conn.execute(
            sa.select(audit_t).where(audit_t.c.dossier_id == dossier).order_by(audit_t.c.seq)
        ).all()
        for row in rows:
            reason = "sửa lại" if row.seq == len(rows) else row.reason
            digest = audit.entry_hash(
                dossier_id=dossier,
                seq=row.seq,
                trigger=row.trigger,
                from_state=row.from_state,
                to_state=row.to_state,
                actor=row.actor,
                reason=reason,
                at=row.at,
                data_before=None if row.data_before is None else json.loads(row.data_before),
                data_after=json.loads(row.data_after),
                prev_hash=prev,
            )
            conn.execute(
                audit_t.update()
                .where(audit_t.c.dossier_id == dossier, audit_t.c.seq == row.seq)
                .values(reason=reason, prev_hash=prev, hash=digest)
            )
            prev = digest
    second = checkpoint(workspace, "cp-2.json")
    for order in ((first, second), (second, first)):
        result = workspace.run(
            "audit", "verify", "--checkpoint", str(order[0]), "--checkpoint", str(order[1])
        )
        assert result.code == 7, result
        assert dossier in result.stderr and "disagree" in result.stdout, result


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep-json", "huge-number"])
def test_a_checkpoint_that_is_no_file_or_no_document_is_refused_in_one_line(
    kind: str, trail: dict[str, str], workspace: Workspace
) -> None:
    import os
    import threading

    path = workspace.root / "odd.json"
    if kind == "fifo":
        os.mkfifo(path)
        # a safety net: if the command opened the FIFO to read, unblock it after 10 s
        opener = threading.Timer(10, lambda: os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK)))
        opener.daemon = True
        opener.start()
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "deep-json":
        path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    else:
        path.write_text('{"format": ' + "9" * 5000 + "}", encoding="utf-8")
    for args in (
        ("audit", "verify", "--checkpoint", str(path)),
        ("audit", "checkpoint", "--verify-only", str(path)),
    ):
        result = workspace.run(*args)
        assert result.code in (2, 7), result
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result
        assert "unexpected" not in result.stderr, result
        if kind in ("fifo", "dev-zero"):
            assert "not a regular file" in result.stderr, result
    if kind == "fifo":
        opener.cancel()


def test_a_public_key_that_is_not_ed25519_or_not_a_key_is_refused_in_one_line(
    trail: dict[str, str], workspace: Workspace
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    path = checkpoint(workspace)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = {
        "rsa.pub.pem": rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "ec.pem": ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "garbage.pem": b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
        "empty.pem": b"",
    }
    for name, data in keys.items():
        key = workspace.root / name
        key.write_bytes(data)
        result = workspace.run(
            "audit", "verify", "--checkpoint", str(path), "--public-key", str(key)
        )
        assert result.code == 2, (name, result)
        assert result.stderr.count("\n") == 1 and "Ed25519" in result.stderr, (name, result)
    zero = workspace.root / "zero.pem"
    zero.symlink_to("/dev/zero")
    result = workspace.run("audit", "verify", "--checkpoint", str(path), "--public-key", str(zero))
    assert result.code == 2 and "not a regular file" in result.stderr, result


def test_a_checkpoint_written_onto_a_folder_or_through_a_file_is_a_usage_error(
    trail: dict[str, str], workspace: Workspace
) -> None:
    (workspace.root / "afolder").mkdir()
    (workspace.root / "afile").write_text("x")
    for target in ("afolder", "afile/cp.json"):
        result = workspace.run("audit", "checkpoint", "-o", target)
        assert result.code == 2, result
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result
    assert [p.name for p in workspace.root.iterdir() if p.name.startswith(".")] == []


def test_a_checkpoint_through_a_symlink_writes_the_linked_file_and_keeps_the_link(
    trail: dict[str, str], workspace: Workspace
) -> None:
    archive = workspace.root / "luu-tru"
    archive.mkdir()
    real = archive / "latest.json"
    real.write_text("{}\n")
    link = workspace.root / "latest.json"
    link.symlink_to(real)
    result = workspace.run("audit", "checkpoint", "-o", str(link))
    assert result.code == 0, result
    assert link.is_symlink() and link.resolve() == real
    assert '"root"' in real.read_text(encoding="utf-8")
    assert [p.name for p in archive.iterdir()] == ["latest.json"]


# --- through the API ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")
def test_the_api_verifies_against_posted_checkpoints_with_the_cli_outcomes(
    tmp_path: Path, db_url: str
) -> None:
    """``POST /api/v1/audit/verify`` is ``ocop audit verify --checkpoint``: 200 when the chains
    extend what the checkpoint signed, 409 with the report naming a chain cut short behind the
    engine's back (the database alone looks sound), 409 ``audit_failed`` for a checkpoint
    changed after signing or signed by another key; only those who read every dossier."""
    from test_server import NOW, make_api

    api = make_api(tmp_path / "server", db_url, extra=AUDIT)
    try:
        signing = api.ocop.config.audit.signing_key
        assert signing is not None
        cp.keygen(signing)
        dossier = api.register("lan")["id"]
        moved = api.post(
            f"/api/v1/dossiers/{dossier}/advance", "lan", json={"trigger": "accept_idea"}
        )
        assert moved.status_code == 200, moved.text
        signed = cp.build(api.ocop.store, signing, NOW)
        body = {"checkpoints": [signed], "names": ["cp-0302.json"]}

        sound = api.post("/api/v1/audit/verify", "auditor", json=body)
        assert sound.status_code == 200, sound.text
        assert sound.json()["ok"] is True
        assert sound.json()["checkpoints"][0]["count"] == 1
        assert sound.json()["checkpoints"][0]["file"] == "cp-0302.json"
        assert api.post("/api/v1/audit/verify", "lan", json=body).status_code == 403

        changed = json.loads(json.dumps(signed))
        changed["heads"][0]["seq"] = 1
        changed["root"] = cp.root_hash(changed["heads"])
        forged = api.post("/api/v1/audit/verify", "auditor", json={"checkpoints": [changed]})
        assert forged.status_code == 409, forged.text
        assert forged.json()["error"]["code"] == "audit_failed"
        assert "#1: bad signature" in forged.json()["error"]["message"]
        other = cp.keygen(tmp_path / "other" / "key.pem").read_text(encoding="utf-8")
        foreign = api.post("/api/v1/audit/verify", "auditor", json={**body, "public_key": other})
        assert foreign.status_code == 409 and "cp-0302.json" in foreign.text, foreign.text
        not_pem = api.post("/api/v1/audit/verify", "auditor", json={**body, "public_key": "x"})
        assert not_pem.status_code == 422, not_pem.text

        drop_protection(db_url)
        with api.ocop.store.write() as conn:
            roll_back_to(conn, dossier, 1)
        plain = api.get("/api/v1/audit/verify", "auditor")
        assert plain.status_code == 200 and plain.json()["ok"], plain.text
        cut = api.post("/api/v1/audit/verify", "auditor", json=body)
        assert cut.status_code == 409, cut.text
        assert cut.json()["ok"] is False
        assert [p["dossier"] for p in cut.json()["problems"]] == [dossier]
        assert "truncated" in cut.json()["problems"][0]["problem"]
    finally:
        api.ocop.store.dispose()
