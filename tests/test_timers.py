"""Reminders, deadlines, escalations and certificate expiry, fired by ``ocop sweep``.

Dossiers are set up through the library (fast); every step under test — the move that plans the
timers, each sweep, what ``dossier show`` / ``timers list`` / ``history`` say — is the real
``ocop`` command in a subprocess, with ``OCOP_NOW`` as the clock. Notifications go to the file
channel; its JSON lines are what the recipients get.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import MANDATORY_DOCUMENTS, Workspace, write_config

from ocop_workflow import council, documents

PRODUCER = "HTX Cà phê Ia Le"
SWEEP_KEYS = {"timers_fired", "notifications_sent", "notifications_failed", "notifications_dead"}
LINE_KEYS = {
    "id",
    "dossier",
    "channel",
    "recipient",
    "subject",
    "status",
    "attempts",
    "key",
    "kind",
    "body",
    "sent_at",
}
FOUR_STAR_DOCUMENTS = ("quality_standard", "lab_test", "product_story")
FOUR_STAR_SCORES = {
    "chair": (30.0, 20.0, 28.0),
    "m1": (31.0, 19.0, 27.0),
    "m2": (29.0, 21.0, 29.0),
    "m3": (30.0, 20.0, 28.0),
    "m4": (30.0, 20.0, 25.0),
    "m5": (30.0, 18.0, 28.0),
}
CERTIFICATE = ("--set", "certificate_no=127/GCN-OCOP", "--set", "decision_no=2345/QĐ-UBND")


# --- helpers ------------------------------------------------------------------------------------


@contextmanager
def library(ws: Workspace, user: str, now: str) -> Iterator[tuple[Any, Any]]:
    """(engine, acting user) of the in-process library at ``now``; the pool is closed after."""
    app = ws.app(user=user, now=now)
    try:
        yield app.engine, app.actor()
    finally:
        app.store.dispose()


def register(
    ws: Workspace,
    now: str,
    *,
    user: str = "lan",
    product: str = "Cà phê bột Ia Le",
    producer: str = PRODUCER,
    commune: str = "Ia Le",
) -> str:
    with library(ws, user, now) as (engine, actor):
        row = engine.register(actor, product=product, producer=producer, commune=commune)
    return str(row["id"])


def advance(
    ws: Workspace,
    dossier_id: str,
    trigger: str,
    now: str,
    *,
    user: str = "lan",
    reason: str | None = None,
) -> None:
    with library(ws, user, now) as (engine, actor):
        engine.advance(dossier_id, trigger, actor, reason=reason)


def ok(ws: Workspace, *args: str, now: str, user: str | None = None) -> Any:
    """``ocop ARGS --json``: exit 0 and one JSON document on stdout."""
    result = ws.run(*args, "--json", user=user, now=now)
    assert result.code == 0, str(result)
    assert "Traceback" not in result.stderr, result.stderr
    return result.json()


def sweep(ws: Workspace, now: str) -> dict[str, int]:
    counts = ok(ws, "sweep", now=now)
    assert set(counts) >= SWEEP_KEYS, counts
    assert all(isinstance(counts[k], int) for k in SWEEP_KEYS)
    assert counts["notifications_failed"] == 0 and counts["notifications_dead"] == 0, counts
    return counts


def outbox(ws: Workspace) -> list[dict[str, Any]]:
    """Every line the file channel delivered so far."""
    path = ws.root / "outbox.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        assert set(line) >= LINE_KEYS, line
    return lines


def timers_of(
    ws: Workspace, dossier_id: str, now: str, *, everything: bool = False
) -> list[dict[str, Any]]:
    args = ["timers", "list", "--dossier", dossier_id] + (["--all"] if everything else [])
    rows = ok(ws, *args, now=now)
    assert all({"id", "dossier", "kind", "due_at", "status"} <= set(r) for r in rows)
    return list(rows)


def same_instant(a: str | None, b: str) -> bool:
    return a is not None and datetime.fromisoformat(a) == datetime.fromisoformat(b)


def certified_dossier(ws: Workspace, product: str) -> str:
    """A dossier taken through the cycle to the province council's closed 4-star scoring."""
    dossier_id = register(ws, "2026-03-02T09:00:00+07:00", user="htx_iale", product=product)
    advance(ws, dossier_id, "accept_idea", "2026-03-03T09:00:00+07:00")
    advance(ws, dossier_id, "approve_plan", "2026-03-10T09:00:00+07:00")
    with library(ws, "htx_iale", "2026-05-04T09:00:00+07:00") as (engine, actor):
        for kind in MANDATORY_DOCUMENTS + FOUR_STAR_DOCUMENTS:
            path = ws.root / f"{dossier_id.replace('/', '_')}-{kind}.pdf"
            path.write_text(f"{product}: {kind} — bản scan", encoding="utf-8")
            documents.attach(engine, dossier_id, actor, kind, Path(path))
        engine.advance(dossier_id, "submit_dossier", actor)
    advance(ws, dossier_id, "forward", "2026-05-11T09:00:00+07:00")
    with library(ws, "chair", "2026-06-15T09:00:00+07:00") as (engine, actor):
        for member, (a, b, c) in FOUR_STAR_SCORES.items():
            council.record_score(
                engine, dossier_id, actor, member=member, parts={"a": a, "b": b, "c": c}
            )
        closed = council.close_scoring(engine, dossier_id, actor)
    assert closed["stars"] == 4, closed
    return dossier_id


# --- office deadlines: reminders, deadline, escalations -----------------------------------------


def test_business_plan_entered_before_tet_reminds_warns_and_escalates_until_it_is_left(
    workspace: Workspace,
) -> None:
    ws = workspace
    entered = "2026-02-13T10:00:00+07:00"  # the Friday before Tết 2026 (16-20 February)
    late = register(ws, "2026-02-13T09:00:00+07:00", product="Cà phê bột Ia Le")
    early = register(ws, "2026-02-13T09:00:00+07:00", product="Mật ong Ia Le")

    moved = ok(ws, "dossier", "advance", late, "accept_idea", user="lan", now=entered)
    # 20 working days from Friday 13 Feb, Tết skipped, end with Friday 20 March.
    assert same_instant(moved["deadline_at"], "2026-03-21T00:00:00+07:00"), moved
    advance(ws, early, "accept_idea", entered)

    shown = ok(ws, "dossier", "show", late, now=entered)
    assert shown["state"] == "business_plan"
    assert same_instant(shown["deadline_at"], "2026-03-21T00:00:00+07:00")
    assert shown["overdue"] is False
    why = shown["deadline"]
    assert why["start"] == "2026-02-13" and why["last_day"] == "2026-03-20", why
    assert "20 working days" in why["rule"]
    days_off = dict(why["days_off"])
    tet = [f"2026-02-{d}" for d in range(16, 21)]  # Monday to Friday
    assert [d for d in days_off if "2026-02-15" < d < "2026-02-21"] == tet, days_off
    assert all("Tết Nguyên Đán" in days_off[d] for d in tet), days_off
    assert days_off["2026-02-14"] == "Thứ Bảy"
    # the same explanation for a person at a terminal
    human = ws.run("dossier", "show", late, now=entered)
    assert human.code == 0, str(human)
    why_lines = human.stdout.split("deadline", 1)[1].splitlines()[:4]
    text = "\n".join(why_lines)
    assert "2026-03-21T00:00:00+07:00" in why_lines[0]
    assert "20 working days" in why_lines[1]
    assert "from 2026-02-13 to the end of 2026-03-20" in text
    assert (
        "skipping 15 days off: 10 weekend days; Tết Nguyên Đán 2026-02-16 to 2026-02-20 "
        "(5 days: Giao thừa, Tết Nguyên Đán, Mùng hai, Mùng ba, Mùng bốn)"
    ) in text  # every day off named, the five of Tết as one group
    assert "Thứ Bảy" not in text  # weekends are counted, not listed one by one

    # The other plan is approved long before its deadline: its timers are cancelled.
    ok(ws, "dossier", "advance", early, "approve_plan", user="lan", now="2026-03-02T09:00:00+07:00")
    listed = ok(ws, "timers", "list", "--all", now="2026-03-02T09:00:00+07:00")
    plan_timers = {
        (t["kind"], t["due_at"]): t
        for t in listed
        if t["dossier"] == late and t["state"] == "business_plan"
    }
    assert set(plan_timers) == {
        ("reminder", "2026-03-16T08:00:00+07:00"),  # 5 working days before, the last included
        ("reminder", "2026-03-20T08:00:00+07:00"),  # 1 working day before: the last day itself
        ("deadline", "2026-03-21T00:00:00+07:00"),
        ("escalation", "2026-03-27T08:00:00+07:00"),  # 5 working days after the last day
    }
    assert {t["status"] for t in plan_timers.values()} == {"pending"}
    by_kind_due = {k: t["id"] for k, t in plan_timers.items()}
    early_plan = [t for t in listed if t["dossier"] == early and t["state"] == "business_plan"]
    assert sorted(t["kind"] for t in early_plan) == [
        "deadline",
        "escalation",
        "reminder",
        "reminder",
    ]
    assert {t["status"] for t in early_plan} == {"cancelled"}, early_plan
    assert {t["state"] for t in listed if t["dossier"] == early and t["status"] == "pending"} == {
        "production"
    }
    cancelled_ids = {t["id"] for t in early_plan}

    # Just before the first reminder: nothing at all.
    counts = sweep(ws, "2026-03-16T07:59:59+07:00")
    assert counts["timers_fired"] == 0 and counts["notifications_sent"] == 0, counts
    assert outbox(ws) == []

    # Five working days before the end (Monday 16 March, 08:00): the first reminder.
    counts = sweep(ws, "2026-03-16T08:00:00+07:00")
    assert (counts["timers_fired"], counts["notifications_sent"]) == (1, 1), counts
    [first] = outbox(ws)
    assert first["dossier"] == late
    assert first["kind"] == "reminder"
    assert first["recipient"] == "lan" and first["channel"] == "file"
    assert first["status"] == "sent"
    assert first["subject"].startswith("[OCOP] Nhắc hạn: Cà phê bột Ia Le"), first["subject"]
    assert "hết ngày 20/03/2026" in first["subject"]
    assert "Xét duyệt phương án sản xuất kinh doanh" in first["subject"]
    assert f"Mã hồ sơ: {late}" in first["body"] and "approve_plan" in first["body"]
    assert first["key"] == f"timer-{by_kind_due['reminder', '2026-03-16T08:00:00+07:00']}/file/lan"

    # The last working day (Friday 20 March, 08:00): the second reminder.
    counts = sweep(ws, "2026-03-20T08:00:00+07:00")
    assert (counts["timers_fired"], counts["notifications_sent"]) == (1, 1), counts
    second = outbox(ws)[1]
    assert (second["dossier"], second["kind"], second["recipient"]) == (late, "reminder", "lan")
    assert second["key"] == f"timer-{by_kind_due['reminder', '2026-03-20T08:00:00+07:00']}/file/lan"

    # Midnight after the last day: the deadline notice.
    counts = sweep(ws, "2026-03-21T00:00:00+07:00")
    assert (counts["timers_fired"], counts["notifications_sent"]) == (1, 1), counts
    third = outbox(ws)[2]
    assert (third["dossier"], third["kind"], third["recipient"]) == (late, "deadline", "lan")
    assert third["subject"].startswith("[OCOP] Đến hạn: Cà phê bột Ia Le")

    # Five working days after the last day: the first escalation, to the province too …
    counts = sweep(ws, "2026-03-27T08:00:00+07:00")
    assert (counts["timers_fired"], counts["notifications_sent"]) == (1, 2), counts
    lines = outbox(ws)[3:]
    assert {(x["kind"], x["recipient"]) for x in lines} == {
        ("escalation", "lan"),
        ("escalation", "hung"),  # escalate_to = province_officer
    }
    assert all(x["subject"].startswith("[OCOP] Báo cáo cấp trên: Cà phê bột Ia Le") for x in lines)
    assert all("Đã quá hạn: 6 ngày" in x["body"] for x in lines), lines[0]["body"]

    # … and again five working days later, while the plan is still not decided.
    counts = sweep(ws, "2026-04-03T08:00:00+07:00")
    assert (counts["timers_fired"], counts["notifications_sent"]) == (1, 2), counts
    lines = outbox(ws)[5:]
    assert sorted((x["kind"], x["recipient"]) for x in lines) == [
        ("escalation", "hung"),
        ("escalation", "lan"),
    ]
    # The plan is approved: the escalation still pending is cancelled and never sent.
    ok(ws, "dossier", "advance", late, "approve_plan", user="lan", now="2026-04-06T09:00:00+07:00")
    counts = sweep(ws, "2026-04-10T08:00:00+07:00")
    assert (counts["timers_fired"], counts["notifications_sent"]) == (0, 0), counts
    assert len(outbox(ws)) == 7

    history = timers_of(ws, late, "2026-04-10T08:00:00+07:00", everything=True)
    settled = sorted(
        (t["due_at"], t["kind"], t["status"]) for t in history if t["state"] == "business_plan"
    )
    assert settled == [
        ("2026-03-16T08:00:00+07:00", "reminder", "fired"),
        ("2026-03-20T08:00:00+07:00", "reminder", "fired"),
        ("2026-03-21T00:00:00+07:00", "deadline", "fired"),
        ("2026-03-27T08:00:00+07:00", "escalation", "fired"),
        # each repeat planned 5 working days after the sweep that sent the previous one
        ("2026-04-03T08:00:00+07:00", "escalation", "fired"),
        ("2026-04-10T08:00:00+07:00", "escalation", "cancelled"),
    ], history
    assert all(t["state"] == "production" for t in history if t["status"] == "pending")

    # Nothing was ever sent about the plan approved early.
    assert not [x for x in outbox(ws) if x["dossier"] == early]
    assert all(
        x["key"].split("/")[0] not in {f"timer-{i}" for i in cancelled_ids} for x in outbox(ws)
    )
    keys = [x["key"] for x in outbox(ws)]
    assert len(keys) == len(set(keys))


# --- certificates ------------------------------------------------------------------------------


def test_certificate_expiry_is_announced_then_fired_by_the_system_unless_renewed(
    workspace: Workspace,
) -> None:
    ws = workspace
    kept = certified_dossier(ws, "Cà phê bột Ia Le")
    renewed = certified_dossier(ws, "Cà phê hạt rang Ia Le")
    certified_at = "2026-07-01T09:00:00+07:00"
    for dossier_id in (kept, renewed):
        moved = ok(
            ws,
            "dossier",
            "advance",
            dossier_id,
            "certify",
            *CERTIFICATE,
            user="hung",
            now=certified_at,
        )
        assert (moved["from"], moved["to"]) == ("evaluation_province", "promotion")
        assert same_instant(moved["deadline_at"], "2029-07-02T00:00:00+07:00"), moved

    shown = ok(ws, "dossier", "show", kept, now=certified_at)
    assert shown["data"]["certified_on"] == "2026-07-01"
    assert shown["data"]["valid_until"] == "2029-07-01"
    assert shown["data"]["stars"] == 4
    planned = {(t["kind"], t["due_at"]): t for t in shown["timers"]}
    assert set(planned) == {
        ("expiry_notice", "2029-06-02T00:00:00+07:00"),  # 30 days before
        ("expiry", "2029-07-02T00:00:00+07:00"),  # 36 months after issue
    }, shown["timers"]
    listed = ok(ws, "timers", "list", now=certified_at)
    expiry = next(t for t in listed if t["dossier"] == kept and t["kind"] == "expiry")
    assert expiry["auto_trigger"] == "expire"
    old_timers = [t for t in listed if t["dossier"] == renewed]
    assert sorted(t["kind"] for t in old_timers) == ["expiry", "expiry_notice"]
    old_keys = {f"timer-{t['id']}" for t in old_timers}

    # The other producer asks for re-evaluation in time: that certificate's timers are cancelled.
    moved = ok(
        ws, "dossier", "advance", renewed, "renew", user="htx_iale", now="2029-05-15T09:00:00+07:00"
    )
    assert moved["to"] == "evaluation_commune"

    # 30 days before expiry: the notice, to the producer among others.
    sweep(ws, "2029-06-02T00:00:00+07:00")
    notices = [x for x in outbox(ws) if x["dossier"] == kept]
    assert {x["kind"] for x in notices} == {"expiry_notice"}, notices
    recipients = {x["recipient"] for x in notices}
    assert "htx_iale" in recipients, recipients
    assert "htx_other" not in recipients, "a producer hears only of its own certificates"
    notice = next(x for x in notices if x["recipient"] == "htx_iale")
    assert notice["subject"].startswith("[OCOP] Giấy chứng nhận OCOP sắp hết hiệu lực")
    assert "hết ngày 01/07/2029" in notice["subject"]
    assert len(notices) == len({x["key"] for x in notices})

    # At expiry the scheduler expires the certificate, as `system`, audited.
    expired_at = "2029-07-02T00:00:00+07:00"
    counts = sweep(ws, expired_at)
    assert counts["timers_fired"] >= 1
    expiry_lines = [x for x in outbox(ws) if x["dossier"] == kept and x["kind"] == "expiry"]
    assert "htx_iale" in {x["recipient"] for x in expiry_lines}
    assert expiry_lines[0]["subject"].startswith("[OCOP] Giấy chứng nhận OCOP đã hết hiệu lực")
    history = ok(ws, "dossier", "history", kept, now=expired_at)
    last = history[-1]
    assert (last["trigger"], last["actor"], last["from"], last["to"]) == (
        "expire",
        "system",
        "promotion",
        "expired",
    ), last
    assert last["reason"] and "expiry" in last["reason"]
    verified = ok(ws, "audit", "verify", now=expired_at)
    assert verified["ok"] is True, verified
    assert verified["problems"] == []

    states = {d["id"]: d["state"] for d in ok(ws, "dossier", "list", now=expired_at)}
    assert states == {kept: "expired", renewed: "evaluation_commune"}
    everything = ok(ws, "timers", "list", "--all", now=expired_at)
    assert not [t for t in everything if t["dossier"] == kept and t["status"] == "pending"]
    status = {t["id"]: t["status"] for t in everything}
    assert {status[t["id"]] for t in old_timers} == {"cancelled"}
    # The renewed dossier's old certificate timers sent nothing and expired nothing.
    assert not [x for x in outbox(ws) if x["key"].split("/")[0] in old_keys]


# --- downtime -----------------------------------------------------------------------------------


def test_a_sweep_after_weeks_of_downtime_sends_each_due_message_once(
    workspace: Workspace,
) -> None:
    ws = workspace
    t0 = "2026-03-02T09:00:00+07:00"  # a Monday
    # Registration: 15 working days, last day Monday 23 March; escalations from 30 March.
    first = register(ws, t0, product="Cà phê bột Ia Le")
    second = register(ws, t0, product="Mật ong Ia Le")
    elsewhere = register(
        ws, t0, user="tuan", product="Hồ tiêu Ia Phang", producer="HTX Ia Phang", commune="Ia Phang"
    )
    # Business plan: 20 working days, last day Monday 30 March; escalation from 6 April.
    planned = register(ws, t0, product="Chuối sấy Ia Le")
    advance(ws, planned, "accept_idea", t0)
    # Registered on Tuesday 24 March: last day Tuesday 14 April, so at the sweep both its
    # reminders are due (8 and 14 April, 08:00) but its deadline is not.
    recent = register(ws, "2026-03-24T09:00:00+07:00", product="Măng khô Ia Le")

    now = "2026-04-14T12:00:00+07:00"  # three weeks after the first deadline
    counts = sweep(ws, now)
    lines = outbox(ws)
    sent = Counter((x["dossier"], x["kind"], x["recipient"]) for x in lines)
    expected: Counter[tuple[str, str, str]] = Counter()
    for dossier_id, officer in (
        (first, "lan"),
        (second, "lan"),
        (elsewhere, "tuan"),
        (planned, "lan"),
    ):
        expected[dossier_id, "deadline", officer] = 1
        expected[dossier_id, "escalation", officer] = 1
        expected[dossier_id, "escalation", "hung"] = 1
    expected[recent, "reminder", "lan"] = 1
    assert sent == expected, sent
    assert counts["notifications_sent"] == sum(expected.values()) == len(lines)
    assert len({x["key"] for x in lines}) == len(lines)
    # Reminders: four dossiers' deadlines passed, the recent one's first reminder is stale.
    assert counts["timers_fired"] == 4 * 2 + 1, counts
    assert counts.get("timers_superseded") == 4 * 2 + 1, counts

    everything = ok(ws, "timers", "list", "--all", now=now)
    for dossier_id in (first, second, elsewhere, planned):
        mine = [t for t in everything if t["dossier"] == dossier_id and t["status"] != "cancelled"]
        statuses = Counter((t["kind"], t["status"]) for t in mine)
        assert statuses == Counter(
            {
                ("reminder", "superseded"): 2,
                ("deadline", "fired"): 1,
                ("escalation", "fired"): 1,
                ("escalation", "pending"): 1,
            }
        ), (dossier_id, mine)
        [next_one] = [t for t in mine if t["status"] == "pending"]
        # Planned from now (Tuesday 14 April), not from the repeats it missed.
        assert next_one["due_at"] == "2026-04-21T08:00:00+07:00", next_one
        assert datetime.fromisoformat(next_one["due_at"]) > datetime.fromisoformat(now)
    mine = [t for t in everything if t["dossier"] == recent]
    assert Counter((t["kind"], t["status"]) for t in mine) == Counter(
        {
            ("reminder", "superseded"): 1,
            ("reminder", "fired"): 1,
            ("deadline", "pending"): 1,
            ("escalation", "pending"): 1,
        }
    ), mine
    sent_reminder = next(t for t in mine if t["status"] == "fired")
    assert sent_reminder["due_at"] == "2026-04-14T08:00:00+07:00"

    # The same instant again: nothing is due any more, nothing is sent twice.
    counts = sweep(ws, now)
    assert (counts["timers_fired"], counts["notifications_sent"]) == (0, 0), counts
    assert len(outbox(ws)) == len(lines)


def test_after_downtime_only_the_latest_due_reminder_is_sent_even_when_swept_in_batches(
    sqlite_workspace: Workspace,
) -> None:
    """Three dossiers whose two reminders are both due (their deadline is not): each must get
    one reminder, however the sweep splits the due timers into batches (500 by default; many
    dossiers after a long outage, or several workers, split them the same way)."""
    ws = sqlite_workspace
    write_config(ws.root, extra="[scheduler]\nbatch_size = 2\n")
    ids = [register(ws, "2026-03-24T09:00:00+07:00", product=f"Sản phẩm {i}") for i in range(3)]
    counts = sweep(ws, "2026-04-14T12:00:00+07:00")
    reminders = Counter(x["dossier"] for x in outbox(ws) if x["kind"] == "reminder")
    assert reminders == Counter({dossier_id: 1 for dossier_id in ids}), (reminders, counts)


def test_a_certificate_under_re_evaluation_still_tells_its_producer_before_it_lapses(
    sqlite_workspace: Workspace,
) -> None:
    """The certificate watched while a renewal is evaluated: "the producer is told 30 days
    before it lapses" (ocop-1489, certificate_watch) — in evaluation as in promotion."""
    ws = sqlite_workspace
    dossier_id = certified_dossier(ws, "Cà phê bột Ia Le")
    ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "certify",
        *CERTIFICATE,
        user="hung",
        now="2026-07-01T09:00:00+07:00",
    )
    ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "renew",
        user="htx_iale",
        now="2029-05-15T09:00:00+07:00",
    )
    sweep(ws, "2029-06-02T00:00:00+07:00")
    notices = [x for x in outbox(ws) if x["kind"] == "expiry_notice"]
    assert notices, outbox(ws)
    assert "htx_iale" in {x["recipient"] for x in notices}, notices


# --- upgrade and revoke ------------------------------------------------------------------------


def test_an_upgrade_keeps_the_old_certificate_watched_until_the_new_one_supersedes_it(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    dossier_id = certified_dossier(ws, "Cà phê bột Ia Le")
    first = ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "certify",
        *CERTIFICATE,
        user="hung",
        now="2026-07-01T09:00:00+07:00",
    )
    assert first["to"] == "promotion"

    # A year later the producer asks for a higher rating; the 2026 certificate stays valid.
    upgraded = ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "upgrade",
        user="htx_iale",
        now="2027-06-01T09:00:00+07:00",
    )
    assert (upgraded["from"], upgraded["to"]) == ("promotion", "evaluation_commune")
    watched = {t["kind"]: t for t in timers_of(ws, dossier_id, "2027-06-01T09:00:00+07:00")}
    assert same_instant(watched["expiry_notice"]["due_at"], "2029-06-02T00:00:00+07:00")
    old_watch = {t["id"] for t in timers_of(ws, dossier_id, "2027-06-01T09:00:00+07:00")}

    advance(ws, dossier_id, "forward", "2027-06-08T09:00:00+07:00")
    with library(ws, "chair", "2027-06-22T09:00:00+07:00") as (engine, actor):
        for member, (a, b, c) in FOUR_STAR_SCORES.items():
            council.record_score(
                engine, dossier_id, actor, member=member, parts={"a": a, "b": b, "c": c}
            )
        council.close_scoring(engine, dossier_id, actor)
    second = ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "certify",
        "--set",
        "certificate_no=311/GCN-OCOP",
        "--set",
        "decision_no=777/QĐ-UBND",
        user="hung",
        now="2027-07-01T09:00:00+07:00",
    )
    assert same_instant(second["deadline_at"], "2030-07-02T00:00:00+07:00"), second

    data = ok(ws, "dossier", "show", dossier_id, now="2027-07-01T09:00:00+07:00")["data"]
    assert (data["certificate_no"], data["certified_on"], data["valid_until"]) == (
        "311/GCN-OCOP",
        "2027-07-01",
        "2030-07-01",
    )
    assert data["previous_certificates"] == [
        {
            "certificate_no": "127/GCN-OCOP",
            "decision_no": "2345/QĐ-UBND",
            "certified_on": "2026-07-01",
            "valid_until": "2029-07-01",
            "certificate_stars": 4,
        }
    ]
    # the superseded certificate's timers are cancelled; only the new one is watched
    everything = timers_of(ws, dossier_id, "2027-07-01T09:00:00+07:00", everything=True)
    assert {t["status"] for t in everything if t["id"] in old_watch} == {"cancelled"}
    pending = [t for t in everything if t["status"] == "pending"]
    assert sorted((t["kind"], t["due_at"][:10]) for t in pending) == [
        ("expiry", "2030-07-02"),
        ("expiry_notice", "2030-06-02"),
    ]


def test_revoking_a_certificate_needs_a_reason_ends_the_dossier_and_cancels_its_timers(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    dossier_id = certified_dossier(ws, "Cà phê bột Ia Le")
    ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "certify",
        *CERTIFICATE,
        user="hung",
        now="2026-07-01T09:00:00+07:00",
    )
    reason = "Sản phẩm vi phạm an toàn thực phẩm (biên bản kiểm tra 12/2026)"
    refused = ws.run(
        "dossier",
        "advance",
        dossier_id,
        "revoke",
        "--json",
        user="hung",
        now="2027-01-05T09:00:00+07:00",
    )
    assert refused.code == 4 and "reason_given" in refused.stderr, str(refused)
    moved = ok(
        ws,
        "dossier",
        "advance",
        dossier_id,
        "revoke",
        "--reason",
        reason,
        user="hung",
        now="2027-01-05T09:00:00+07:00",
    )
    assert (moved["from"], moved["to"]) == ("promotion", "revoked")
    last = ok(ws, "dossier", "history", dossier_id, now="2027-01-05T09:00:00+07:00")[-1]
    assert (last["trigger"], last["actor"], last["reason"]) == ("revoke", "hung", reason)
    assert timers_of(ws, dossier_id, "2027-01-05T09:00:00+07:00") == []
    # nobody is told a revoked certificate is about to expire
    sweep(ws, "2029-07-02T09:00:00+07:00")
    assert [x for x in outbox(ws) if x["dossier"] == dossier_id] == []


def test_timers_list_due_shows_what_the_next_sweep_fires_and_all_shows_how_late_it_fired(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    dossier_id = register(ws, "2026-03-02T09:00:00+07:00")
    planned = timers_of(ws, dossier_id, "2026-03-02T09:00:00+07:00")
    first = min(planned, key=lambda t: t["due_at"])
    assert ok(ws, "timers", "list", "--due", now="2026-03-02T09:00:00+07:00") == []
    # the machine was off: the sweep runs one day and two hours after the first timer was due
    later = (datetime.fromisoformat(first["due_at"]) + timedelta(days=1, hours=2)).isoformat()
    due = ok(ws, "timers", "list", "--due", now=later)
    assert first["id"] in {t["id"] for t in due}
    assert all(datetime.fromisoformat(t["due_at"]) <= datetime.fromisoformat(later) for t in due)
    sweep(ws, later)
    assert ok(ws, "timers", "list", "--due", now=later) == []
    fired = {t["id"]: t for t in timers_of(ws, dossier_id, later, everything=True)}
    assert fired[first["id"]]["status"] in {"fired", "superseded"}
    assert fired[first["id"]]["late_seconds"] == 26 * 3600
