"""Eight ``ocop`` processes racing on one dossier (or one new id), on SQLite and on PostgreSQL.

Each racer is a real ``ocop`` process. To make the race tight, every process first imports the
whole program (the slow part of a start), then waits at a barrier — a file the test creates once
all eight are ready — and only then runs the command; so the eight transactions really overlap
instead of being spread out by interpreter start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Workspace

T0 = "2026-03-02T09:00:00+07:00"
RACERS = 8

# Imports what a dossier command needs, says "ready", waits for the barrier, then runs `ocop`.
RACER = r"""
import os, sys, time
import sqlalchemy, sqlmodel, structlog, transitions, holidays  # noqa: F401
import sqlalchemy.dialects.postgresql, sqlalchemy.dialects.sqlite  # noqa: F401
try:
    import psycopg  # noqa: F401
except ImportError:
    pass
from ocop_workflow import app, audit, calendar, cli, definitions, engine, machine, store  # noqa
barrier, ready = sys.argv[1], sys.argv[2]
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(barrier):
    if time.monotonic() > deadline:
        sys.exit("racer: barrier never opened")
    time.sleep(0.005)
cli.main(sys.argv[3:])
"""


def ok(ws: Workspace, *args: str, user: str | None = None) -> Any:
    result = ws.run(*args, "--json", user=user, now=T0)
    assert result.code == 0, str(result)
    return result.json()


def race(ws: Workspace, commands: list[list[str]], user: str) -> list[tuple[int, str, str]]:
    """Run each command in its own ``ocop`` process, released together; (code, out, err)."""
    gate = ws.root / "race"
    gate.mkdir(exist_ok=True)
    barrier = gate / "go"
    barrier.unlink(missing_ok=True)
    readies = [gate / f"ready-{i}" for i in range(len(commands))]
    for ready in readies:
        ready.unlink(missing_ok=True)
    env = ws.env(OCOP_USER=user, OCOP_NOW=T0)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), str(ready), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=ws.root,
        )
        for ready, command in zip(readies, commands, strict=True)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "the racers did not get ready"
            assert all(p.poll() is None for p in processes), "a racer died before the barrier"
            time.sleep(0.01)
        barrier.touch()
        outcomes = []
        for p in processes:
            out, err = p.communicate(timeout=120)
            outcomes.append((p.returncode, out, err))
        return outcomes
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


def register(ws: Workspace) -> str:
    document = ok(
        ws,
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        user="htx_iale",
    )
    return str(document["id"])


def check_one_winner(
    ws: Workspace, dossier_id: str, results: list[tuple[int, str, str]], allowed_losers: set[int]
) -> None:
    codes = sorted(code for code, _, _ in results)
    assert codes.count(0) == 1, results
    assert set(codes) - {0} <= allowed_losers, results
    for code, out, err in results:
        assert "Traceback" not in err, err
        if code == 0:
            moved = json.loads(out)
            assert (moved["from"], moved["to"], moved["seq"]) == (
                "registration",
                "business_plan",
                2,
            )
            continue
        error = json.loads(out)["error"]
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0] == f"error: {error['message']}", err
        if code == 4:
            assert error["code"] == "refused"
            assert "business_plan" in error["message"], error
        else:
            assert error["code"] == "conflict", error

    entries = ok(ws, "dossier", "history", dossier_id)
    assert [(e["seq"], e["trigger"]) for e in entries] == [(1, "register"), (2, "accept_idea")]
    report = ok(ws, "audit", "verify")
    assert report["ok"] is True, report
    assert report["entries_checked"] == 2


@pytest.mark.slow(7)
def test_eight_processes_advancing_one_dossier_only_one_moves_it(workspace: Workspace) -> None:
    ws = workspace
    dossier_id = register(ws)
    command = ["dossier", "advance", dossier_id, "accept_idea", "--json"]
    results = race(ws, [command] * RACERS, user="lan")
    check_one_winner(ws, dossier_id, results, allowed_losers={4, 5})


@pytest.mark.slow(7)
def test_eight_processes_expecting_version_1_only_one_moves_it(workspace: Workspace) -> None:
    ws = workspace
    dossier_id = register(ws)
    command = ["dossier", "advance", dossier_id, "accept_idea", "--expect-version", "1", "--json"]
    results = race(ws, [command] * RACERS, user="lan")
    check_one_winner(ws, dossier_id, results, allowed_losers={4, 5})
    # with the version given, the losers are told the dossier changed, not merely refused
    assert all(code == 5 for code, _, _ in results if code != 0), results


@pytest.mark.slow(7)
def test_eight_processes_registering_one_id_only_one_gets_it(workspace: Workspace) -> None:
    ws = workspace
    command = [
        "dossier",
        "register",
        "--product",
        "Mật ong Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--id",
        "IALE-RACE-1",
        "--json",
    ]
    results = race(ws, [command] * RACERS, user="htx_iale")
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [5] * (RACERS - 1), results
    for code, out, err in results:
        assert "Traceback" not in err, err
        if code:
            error = json.loads(out)["error"]
            assert error["code"] == "conflict", error
            assert "IALE-RACE-1" in error["message"]
    listed = ok(ws, "dossier", "list")
    assert [d["id"] for d in listed] == ["IALE-RACE-1"]
    report = ok(ws, "audit", "verify")
    assert report["ok"] is True, report
    assert (report["dossiers_checked"], report["entries_checked"]) == (1, 1)


@pytest.mark.postgres
@pytest.mark.parametrize("second", ["advance", "attach"])
def test_a_transition_that_waited_for_the_lock_links_to_the_entry_written_meanwhile(
    pg_url: str, tmp_path: Path, second: str
) -> None:
    """PostgreSQL, READ COMMITTED: a ``SELECT … FOR UPDATE`` that waited for another
    transaction returns the row as that one left it, but its subqueries read the snapshot of
    before the wait. The chain's head read that way was the one before the other's entry: the
    second of two acts on one dossier, correctly put in order by the lock, failed with a
    conflict ("try again") on the audit key. Both go through now, in order — an advance
    (``PgWrites``) and an amendment (``Store.lock_dossier`` over SQLAlchemy Core) alike."""
    from datetime import UTC, datetime

    from conftest import write_config

    from ocop_workflow import audit, documents
    from ocop_workflow.clock import ManualClock
    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.service import Ocop

    write_config(tmp_path)
    config = load_config(tmp_path / "config.toml", {"OCOP_DATABASE_URL": pg_url})
    ocop = Ocop(config, ManualClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC)))
    upgrade(ocop.store)
    lan = config.user("lan")
    dossier = ocop.register(
        lan, product="Cà phê bột", producer="HTX Cà phê Ia Le", commune="Ia Le"
    ).id
    engine = ocop.engine
    first_wrote, outcome = threading.Event(), {}

    def first() -> None:  # accept_idea, holding the dossier's lock a while after its entry
        with engine.store.write() as conn:
            engine.advance_in(conn, dossier, "accept_idea", lan, now=engine.clock())
            first_wrote.set()
            time.sleep(0.8)

    def then() -> None:  # started while the first holds the lock: waits for it
        try:
            if second == "advance":
                outcome["seq"] = engine.advance(dossier, "approve_plan", lan).seq
            else:
                plan = tmp_path / "ke-hoach.pdf"
                plan.write_text("kế hoạch", encoding="utf-8")
                documents.attach(engine, dossier, lan, "business_plan", plan)
                outcome["seq"] = 3
        except Exception as exc:
            outcome["error"] = exc

    holder = threading.Thread(target=first)
    holder.start()
    assert first_wrote.wait(10)
    waiter = threading.Thread(target=then)
    waiter.start()
    holder.join()
    waiter.join()
    try:
        assert "error" not in outcome, outcome
        history = ocop.history(lan, dossier)
        assert [e.seq for e in history] == [1, 2, 3], history
        assert audit.verify(ocop.store).ok
    finally:
        ocop.store.dispose()
