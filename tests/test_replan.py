"""A day-off decision added after dossiers were planned: the next sweep re-plans their deadlines.

The decision here is a province's own day off added to config.toml after registration (the same
path as a government swap shipped in a newer ocop: both change the calendar's fingerprint).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
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


def test_a_certificate_planned_under_the_old_count_of_months_is_replanned_with_its_valid_until(
    sqlite_workspace: Workspace,
) -> None:
    """Upgrading: a certificate planned when 36 months ended at 00:00 of the corresponding day
    (before calendars were recorded) is re-planned through the end of that day, audited."""
    import csv

    import sqlalchemy as sa

    from ocop_workflow.store import dossier_t, timer_t

    ws = sqlite_workspace
    sheet = ws.root / "chung-nhan.csv"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "id",
                "product",
                "producer",
                "commune",
                "group",
                "state",
                "state_entered_at",
                "certified_on",
                "valid_until",
                "stars",
                "certificate_stars",
                "certificate_no",
                "decision_no",
            ]
        )
        writer.writerow(
            [
                "OCOP-2023-0007",
                "Cà phê bột",
                PRODUCER,
                "Ia Le",
                "food",
                "promotion",
                "2023-11-17",
                "2023-11-17",
                "2026-11-16",
                "3",
                "3",
                "GCN-7",
                "7/QĐ",
            ]
        )
    ws.run("import", str(sheet), user="records", now="2026-10-01T09:00:00+07:00", check=True)
    # as an earlier ocop planned it: expiry at 00:00 on 17/11/2026, last day 16/11
    engine = sa.create_engine(ws.url)
    try:
        with engine.begin() as conn:
            row = conn.execute(sa.select(dossier_t).where(dossier_t.c.id == "OCOP-2023-0007")).one()
            note = json.loads(row.deadline_note)
            note["last_day"] = "2026-11-16"
            old_at = datetime.fromisoformat("2026-11-17T00:00:00+07:00")
            conn.execute(
                dossier_t.update()
                .where(dossier_t.c.id == row.id)
                .values(
                    calendar_fingerprint=None, deadline_at=old_at, deadline_note=json.dumps(note)
                )
            )
            conn.execute(
                timer_t.update()
                .where(timer_t.c.dossier_id == row.id, timer_t.c.kind == "expiry")
                .values(due_at=old_at)
            )
    finally:
        engine.dispose()

    swept = ws.run("sweep", "--json", now="2026-10-02T09:00:00+07:00", check=True).json()
    assert swept["deadlines_replanned"] == 1
    shown = ws.run("dossier", "show", "OCOP-2023-0007", "--json", user="hung", check=True).json()
    assert shown["data"]["valid_until"] == "2026-11-17"
    assert shown["deadline_at"].startswith("2026-11-18T00:00:00")
    history = ws.run("dossier", "history", "OCOP-2023-0007", "--json", user="hung", check=True)
    last = history.json()[-1]
    assert last["trigger"] == "replan"
    assert last["reason"].startswith(
        "Hạn được tính lại theo lịch ngày nghỉ và cách tính thời hạn hiện hành: "
        "ngày cuối 16/11/2026 → 17/11/2026"
    )
    assert ws.run("audit", "verify").code == 0


def test_an_idle_worker_rescans_for_other_calendars_only_every_few_minutes(
    sqlite_workspace: Workspace,
) -> None:
    """The scan for dossiers planned under another calendar reads the whole dossier table; a
    worker that found none skips it for ``RECHECK_AFTER`` and then looks again."""
    import sqlalchemy as sa

    from ocop_workflow.replan import RECHECK_AFTER, replan_for_calendar
    from ocop_workflow.store import dossier_t

    ws = sqlite_workspace
    dossier = register(ws, "2026-03-02T09:00:00+07:00", "Cà phê bột")
    app = ws.app(now="2026-03-03T08:00:00+07:00")
    try:
        engine = app.engine
        now = datetime.fromisoformat("2026-03-03T08:00:00+07:00")
        assert replan_for_calendar(engine, now) == 0  # nothing planned under another calendar
        # Another process, running a calendar with one more day off, planned this dossier.
        with engine.store.write() as conn:
            conn.execute(
                dossier_t.update()
                .where(dossier_t.c.id == dossier)
                .values(calendar_fingerprint="another-calendar")
            )

        def fingerprint() -> str:
            with engine.store.read() as conn:
                query = sa.select(dossier_t.c.calendar_fingerprint).where(dossier_t.c.id == dossier)
                return str(conn.execute(query).scalar_one())

        assert replan_for_calendar(engine, now + RECHECK_AFTER / 2) == 0
        assert fingerprint() == "another-calendar"  # not looked at yet
        assert replan_for_calendar(engine, now + RECHECK_AFTER) == 0  # same days: no move
        assert fingerprint() == engine.calendar.fingerprint  # but re-planned and re-stamped
    finally:
        app.store.dispose()


class _ReadEnvironment(dict[str, str]):
    """``os.environ`` as a spy: every variable read through it is noted."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_the_sweep_reads_no_environment_variable_when_it_checks_config_toml_for_a_new_calendar(
    sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the edges read the environment: the worker's check that config.toml's calendar is
    still its own (``replan._config_drifted``) once reloaded the file with ``os.environ``,
    from inside the sweep, where ``OCOP_DATABASE_URL`` and the channels' secrets have no say."""
    import os

    ws = sqlite_workspace
    register(ws, "2026-03-02T09:00:00+07:00", "Cà phê bột")
    app = ws.app(now="2026-03-03T08:00:00+07:00")
    try:
        ocop = app.ocop  # config and clock from the workspace's environment, at the edge
        spy = _ReadEnvironment(dict(os.environ))
        monkeypatch.setattr(os, "environ", spy)
        write_config(ws.root, extra=LOCAL_DAY_OFF)  # the worker's calendar is now stale
        assert ocop.sweep().deadlines_replanned == 0  # (the file was read again: it changed)
    finally:
        app.close()
    assert spy.read == set()
