"""A day-off decision added after dossiers were planned: the next sweep re-plans their deadlines.

The decision here is a province's own day off added to config.toml after registration (the same
path as a government swap shipped in a newer ocop: both change the calendar's fingerprint).
"""

from __future__ import annotations

from conftest import Workspace, write_config

PRODUCER = "HTX Cà phê Ia Le"
LOCAL_DAY_OFF = """
[[calendar.days]]
date = 2026-03-10
status = "off"
name = "Ngày nghỉ của tỉnh"
source = "Quyết định 99/QĐ-UBND của UBND tỉnh"
"""


def register(ws: Workspace, now: str, product: str) -> str:
    app = ws.app(user="lan", now=now)
    try:
        row = app.engine.register(app.actor(), product=product, producer=PRODUCER, commune="Ia Le")
    finally:
        app.store.dispose()
    return str(row["id"])


def test_a_day_off_added_later_moves_pending_deadlines_with_an_audited_system_note(
    workspace: Workspace,
) -> None:
    ws = workspace
    # Mon 2/3/2026 + 15 working days = Mon 23/3; a dossier registered on 11/3 is not touched.
    early = register(ws, "2026-03-02T09:00:00+07:00", "Cà phê bột")
    late = register(ws, "2026-03-11T09:00:00+07:00", "Cà phê hạt")
    before = ws.run("dossier", "show", early, "--json", check=True).json()
    assert before["deadline"]["last_day"] == "2026-03-23"
    untouched = ws.run("dossier", "show", late, "--json", check=True).json()

    write_config(ws.root, extra=LOCAL_DAY_OFF)
    swept = ws.run("sweep", "--json", now="2026-03-12T08:00:00+07:00", check=True).json()
    assert swept["deadlines_replanned"] == 1

    after = ws.run("dossier", "show", early, "--json", check=True).json()
    assert after["deadline"]["last_day"] == "2026-03-24"
    assert ["2026-03-10", "Ngày nghỉ của tỉnh"] in after["deadline"]["days_off"]
    assert after["version"] == before["version"] + 1
    history = ws.run("dossier", "history", early, "--json", check=True).json()
    note = history[-1] if isinstance(history, list) else history["entries"][-1]
    assert note["trigger"] == "replan" and note["actor"] == "system"
    assert note["from"] == note["to"] == "registration"
    assert "23/03/2026 → 24/03/2026" in note["reason"]
    assert "Quyết định 99/QĐ-UBND" in note["reason"]

    assert ws.run("dossier", "show", late, "--json", check=True).json() == untouched
    timers = ws.run("timers", "list", "--dossier", early, "--json", check=True).json()
    pending = [t for t in timers if t["status"] == "pending"]
    assert pending and all(t["deadline_at"] == after["deadline_at"] for t in pending)

    again = ws.run("sweep", "--json", now="2026-03-12T08:05:00+07:00", check=True).json()
    assert again["deadlines_replanned"] == 0
    verified = ws.run("audit", "verify", "--json", check=True).json()
    assert verified["ok"] is True


def test_a_deadline_already_passed_is_not_moved(workspace: Workspace) -> None:
    ws = workspace
    dossier = register(ws, "2026-03-02T09:00:00+07:00", "Cà phê bột")
    ws.run("sweep", now="2026-03-24T08:00:00+07:00", check=True)  # the deadline fired on 24/3
    write_config(ws.root, extra=LOCAL_DAY_OFF)
    swept = ws.run("sweep", "--json", now="2026-03-25T08:00:00+07:00", check=True).json()
    assert swept["deadlines_replanned"] == 0
    shown = ws.run("dossier", "show", dossier, "--json", check=True).json()
    assert shown["deadline"]["last_day"] == "2026-03-23"


def test_a_worker_started_before_the_calendar_changed_does_not_replan_with_its_stale_calendar(
    sqlite_workspace: Workspace,
) -> None:
    from datetime import datetime

    from ocop_workflow.replan import replan_for_calendar

    ws = sqlite_workspace
    dossier = register(ws, "2026-03-02T09:00:00+07:00", "Cà phê bột")
    app = ws.app(now="2026-03-03T08:00:00+07:00")
    try:
        engine = app.engine  # the long-running process: config read now, calendar kept
        assert engine.calendar.fingerprint
        write_config(ws.root, extra=LOCAL_DAY_OFF)  # the office adds a day off meanwhile
        now = datetime.fromisoformat("2026-03-03T08:00:00+07:00")
        assert replan_for_calendar(engine, now) == 0
    finally:
        app.store.dispose()
    shown = ws.run("dossier", "show", dossier, "--json", check=True).json()
    assert shown["deadline"]["last_day"] == "2026-03-23"
    # a process started now reads the new calendar and re-plans
    swept = ws.run("sweep", "--json", now="2026-03-03T08:05:00+07:00", check=True).json()
    assert swept["deadlines_replanned"] == 1
