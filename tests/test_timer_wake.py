"""The sweep finds due timers through one waking timer per dossier (migration 0007).

Only each dossier's pending timer due first is in the sweep's index (``timer.wake = 1``). That
is correct only while the invariant holds after every write: every dossier with pending timers
has its earliest one waking. These tests walk dossiers through registrations, moves, sweeps at
later and later instants (reminders fired, superseded, escalations repeated, timers cancelled)
and check the invariant after each step, on SQLite and PostgreSQL; and that a sweep long after
fires every due timer of a dossier, not only its waking one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa
from conftest import Workspace

from ocop_workflow.store import Store, timer_t

T0 = datetime.fromisoformat("2026-03-02T09:00+07:00")


def _pending_by_dossier(url: str) -> dict[str, list[tuple[datetime, int, int | None]]]:
    store = Store(url)
    try:
        with store.read() as conn:
            rows = conn.execute(
                sa.select(timer_t.c.dossier_id, timer_t.c.due_at, timer_t.c.id, timer_t.c.wake)
                .where(timer_t.c.status == "pending")
                .order_by(timer_t.c.due_at, timer_t.c.id)
            ).all()
    finally:
        store.dispose()
    out: dict[str, list[tuple[datetime, int, int | None]]] = defaultdict(list)
    for dossier_id, due_at, timer_id, wake in rows:
        out[dossier_id].append((due_at, timer_id, wake))
    return out


def assert_each_dossier_wakes_at_its_first_pending_timer(url: str, step: str) -> None:
    for dossier_id, pending in _pending_by_dossier(url).items():
        assert pending[0][2] == 1, (step, dossier_id, pending)


def test_every_write_keeps_each_dossiers_first_pending_timer_waking(
    workspace: Workspace,
) -> None:
    ws = workspace
    now = T0
    ids = []
    for product in ("Cà phê bột", "Mật ong", "Hồ tiêu"):
        created = ws.run(
            "dossier",
            "register",
            "--product",
            product,
            "--producer",
            "HTX Cà phê Ia Le",
            "--commune",
            "Ia Le",
            "--json",
            user="lan",
            now=now.isoformat(),
            check=True,
        ).json()
        ids.append(created["id"])
    assert_each_dossier_wakes_at_its_first_pending_timer(ws.url, "registered")
    ws.run("dossier", "advance", ids[0], "accept_idea", user="lan", now=now.isoformat(), check=True)
    assert_each_dossier_wakes_at_its_first_pending_timer(ws.url, "moved")
    fired = 0
    for days in (12, 15, 16, 17, 25, 40, 60):  # reminders, deadlines, repeated escalations
        at = (now + timedelta(days=days)).isoformat()
        swept = ws.run("sweep", "--json", now=at, check=True).json()
        fired += swept["timers_fired"] + swept["timers_superseded"]
        assert_each_dossier_wakes_at_its_first_pending_timer(ws.url, f"swept at +{days} d")
        due = ws.run("timers", "list", "--due", "--json", now=at, check=True).json()
        assert due == [], (days, due)  # the sweep left nothing due behind
    assert fired >= 6
    ws.run(
        "dossier",
        "advance",
        ids[1],
        "reject",
        "--reason",
        "Trùng sản phẩm đã có",
        user="lan",
        now=(now + timedelta(days=61)).isoformat(),
        check=True,
    )
    assert_each_dossier_wakes_at_its_first_pending_timer(ws.url, "rejected")


def test_a_sweep_long_after_fires_every_due_timer_of_a_dossier_not_only_its_waking_one(
    workspace: Workspace,
) -> None:
    ws = workspace
    created = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê bột",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--json",
        user="lan",
        now=T0.isoformat(),
        check=True,
    ).json()
    pending = _pending_by_dossier(ws.url)[created["id"]]
    assert len(pending) >= 3 and [w for _, _, w in pending].count(1) == 1
    late = (T0 + timedelta(days=90)).isoformat()
    listed = ws.run("timers", "list", "--due", "--json", now=late, check=True).json()
    assert len(listed) == len(pending)  # every pending timer is due by then, all listed
    swept = ws.run("sweep", "--json", now=late, check=True).json()
    settled = swept["timers_fired"] + swept["timers_superseded"] + swept["timers_stale"]
    assert settled == len(pending), swept
    statuses = {
        t["id"]: t["status"]
        for t in ws.run("timers", "list", "--all", "--json", now=late, check=True).json()
        if t["dossier"] == created["id"]
    }
    assert all(statuses[i] in {"fired", "superseded"} for _, i, _ in pending), statuses
