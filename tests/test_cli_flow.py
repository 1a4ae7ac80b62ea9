"""The ocop-1489 cycle through the real ``ocop`` command.

Every step is a subprocess run by a user holding the role the workflow names (documents attached
by the producer, scores entered through ``ocop score``); every wrong attempt on the way is checked
for its exit code, its one-line ``error:`` on stderr, its JSON error document, and a database left
exactly as it was. The cycle to ``closed`` runs on SQLite and PostgreSQL; the 5-star path and the
reading commands (list filters, triggers, export, diagrams) on SQLite.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    MANDATORY_DOCUMENTS,
    WORKFLOWS,
    Workspace,
    council_scores,
    dump_database,
    write_config,
)

from ocop_workflow.cli import option_hint

PRODUCT = "Cà phê bột Ia Le"
PRODUCER = "HTX Cà phê Ia Le"
GROUP = "beverages"  # Đồ uống

DOSSIER_KEYS = {
    "id",
    "product",
    "producer",
    "commune",
    "group",
    "workflow",
    "state",
    "stage",
    "state_entered_at",
    "deadline_at",
    "overdue",
    "version",
    "data",
}
ADVANCE_KEYS = {"id", "trigger", "from", "to", "seq", "at", "deadline_at"}
HISTORY_KEYS = {
    "seq",
    "trigger",
    "from",
    "to",
    "actor",
    "reason",
    "at",
    "data",
    "prev_hash",
    "hash",
}
TRIGGER_KEYS = {"trigger", "to", "allowed", "reasons"}

T0 = "2026-03-02T09:00:00+07:00"  # a Monday
LATER = "2026-04-01T08:00:00+07:00"
FAR_FUTURE = "2031-01-01T00:00:00+07:00"


# --- helpers ------------------------------------------------------------------------------------


def ok(ws: Workspace, *args: str, user: str | None = None, now: str = T0) -> Any:
    """Run ``ocop ARGS --json``; it must succeed and print exactly one JSON document."""
    result = ws.run(*args, "--json", user=user, now=now)
    assert result.code == 0, str(result)
    assert "Traceback" not in result.stderr
    return result.json()


def refused(ws: Workspace, exit_code: int, code: str, *args: str, user: str, now: str = T0) -> str:
    """Run a command that must be refused: its exit code, the error on stderr (one line) and as
    JSON on stdout, and not one row of the database changed. Returns the message."""
    before = dump_database(ws.url)
    result = ws.run(*args, "--json", user=user, now=now)
    after = dump_database(ws.url)
    assert result.code == exit_code, str(result)
    assert after == before, f"ocop {' '.join(args)} as {user} changed the database"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    document = json.loads(result.stdout)
    assert list(document) == ["error"]
    assert {"code", "message"} <= set(document["error"])
    assert document["error"]["code"] == code
    message = document["error"]["message"]
    assert isinstance(message, str) and message
    assert lines[0] == f"error: {message}{option_hint(document['error'].get('fields', ()))}"
    return message


def register(
    ws: Workspace,
    *,
    user: str = "htx_iale",
    product: str = PRODUCT,
    producer: str = PRODUCER,
    commune: str = "Ia Le",
    now: str = T0,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    document = ok(
        ws,
        "dossier",
        "register",
        "--product",
        product,
        "--producer",
        producer,
        "--commune",
        commune,
        *extra,
        user=user,
        now=now,
    )
    assert isinstance(document, dict)
    return document


def advance(
    ws: Workspace, dossier_id: str, trigger: str, *extra: str, user: str, now: str = T0
) -> dict[str, Any]:
    document = ok(ws, "dossier", "advance", dossier_id, trigger, *extra, user=user, now=now)
    assert isinstance(document, dict)
    return document


def instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f"{text} has no UTC offset"
    return value


# --- the whole cycle ----------------------------------------------------------------------------

#: Extra evidence a 4-star recognition needs (ocop-1489 [scorecard.mandatory_documents] 4).
FOUR_STAR_DOCUMENTS = ("quality_standard", "lab_test", "product_story")
#: And a 5-star one.
FIVE_STAR_DOCUMENTS = (*FOUR_STAR_DOCUMENTS, "traceability", "trademark")
#: Six of the seven province council members (quorum 75 %, the chair present), 70-89 points.
FOUR_STAR_SCORES = {
    "chair": (30.0, 20.0, 28.0),
    "m1": (31.0, 19.0, 27.0),
    "m2": (29.0, 21.0, 29.0),
    "m3": (30.0, 20.0, 28.0),
    "m4": (30.0, 20.0, 25.0),
    "m5": (30.0, 18.0, 28.0),
}
#: 90 points or more: beyond the province, worth sending to the central council.
FIVE_STAR_SCORES = {
    "chair": (38.0, 23.0, 33.0),
    "m1": (37.0, 24.0, 32.0),
    "m2": (38.0, 22.0, 33.0),
    "m3": (36.0, 24.0, 34.0),
    "m4": (38.0, 23.0, 31.0),
    "m5": (37.0, 23.0, 33.0),
}
CENTRAL_SCORES = {
    "tw_chair": (38.0, 24.0, 33.0),
    "tw1": (37.0, 23.0, 33.0),
    "tw2": (38.0, 23.0, 32.0),
}
CERTIFICATE = ("--set", "certificate_no=127/GCN-OCOP", "--set", "decision_no=2345/QĐ-UBND")


def attach(
    ws: Workspace, dossier_id: str, kinds: tuple[str, ...], now: str = T0, user: str = "htx_iale"
) -> None:
    for kind in kinds:
        path = ws.root / f"{dossier_id}-{kind}.pdf"
        path.write_text(f"{dossier_id}: {kind} — bản scan", encoding="utf-8")
        ok(ws, "dossier", "attach", dossier_id, kind, str(path), user=user, now=now)


def score(
    ws: Workspace,
    dossier_id: str,
    scores: dict[str, tuple[float, float, float]],
    chair: str,
    now: str = T0,
) -> dict[str, Any]:
    """The council's scoring through ``ocop score``; returns the chair's closing document."""
    result = council_scores(ws, dossier_id, scores, chair=chair, now=now)
    assert result.code == 0, str(result)
    document = result.json()
    assert isinstance(document, dict)
    return document


# (user, trigger, from, to, extra arguments, now)
HAPPY_PATH = [
    ("lan", "accept_idea", "registration", "business_plan", (), "2026-03-05T10:00:00+07:00"),
    ("lan", "approve_plan", "business_plan", "production", (), "2026-03-10T14:30:00+07:00"),
    (
        "htx_iale",
        "submit_dossier",
        "production",
        "evaluation_commune",
        (),
        "2026-06-01T08:15:00+07:00",
    ),
    (
        "lan",
        "forward",
        "evaluation_commune",
        "evaluation_province",
        (),
        "2026-06-05T16:00:00+07:00",
    ),
    (
        "hung",
        "certify",
        "evaluation_province",
        "promotion",
        CERTIFICATE,
        "2026-07-01T09:00:00+07:00",
    ),
    ("hung", "start_review", "promotion", "review", (), "2026-09-01T09:00:00+07:00"),
    ("hung", "close", "review", "closed", (), "2026-12-01T09:00:00+07:00"),
]

# Wrong attempts tried in a state before the right move: (exit code, user, trigger, extra
# arguments, what the message must name). 6 = role or commune scope, 4 = wrong state or a failed
# guard, 2 = a malformed request.
WRONG_ATTEMPTS: dict[str, list[tuple[int, str, str, tuple[str, ...], tuple[str, ...]]]] = {
    "registration": [
        (6, "htx_iale", "accept_idea", (), ("commune_officer",)),  # a producer, not the office
        (6, "tuan", "accept_idea", (), ("Ia Le",)),  # the right role, another commune
        (4, "lan", "approve_plan", (), ("registration",)),  # not from this state
        (4, "lan", "reject", (), ("reason_given",)),  # no --reason
        (4, "lan", "reject", ("--reason", "   "), ("reason_given",)),  # a blank one
        (4, "htx_iale", "withdraw", (), ("reason_given",)),
    ],
    "production": [
        (6, "htx_other", "submit_dossier", (), ("HTX Hồ tiêu Ia Le", PRODUCER)),
        (4, "htx_iale", "submit_dossier", (), ("documents_complete", "samples")),
    ],
    "evaluation_commune": [
        (4, "lan", "return_dossier", (), ("reason_given",)),
        (6, "tuan", "forward", (), ("Ia Le",)),
    ],
    "evaluation_province": [
        # no council score, hence no stars, and no certificate: every failed guard is named
        (4, "hung", "certify", (), ("scoring_closed", "stars_within_level", "certificate_details")),
        # the stars are the council's to give, not the officer's to type
        (2, "hung", "certify", ("--set", "stars=4", *CERTIFICATE), ("stars", "protected")),
        (6, "lan", "certify", CERTIFICATE, ("province_officer",)),
        (4, "hung", "close", (), ("evaluation_province",)),
    ],
    "review": [
        (4, "hung", "revoke", (), ("reason_given",)),
    ],
}
ERROR_CODES = {2: "usage", 4: "refused", 6: "permission_denied"}


def test_cycle_to_close_by_the_right_roles_every_wrong_attempt_refused_unchanged(
    workspace: Workspace,
) -> None:
    ws = workspace
    created = register(ws, extra=("--group", GROUP))
    assert set(created) >= DOSSIER_KEYS
    dossier_id = created["id"]
    assert re.fullmatch(r"OCOP-2026-\d{4}", dossier_id), dossier_id
    assert created["product"] == PRODUCT
    assert created["producer"] == PRODUCER
    assert created["commune"] == "Ia Le"
    assert created["group"] == GROUP
    assert created["workflow"] == "ocop-1489"
    assert (created["state"], created["stage"]) == ("registration", "registration")
    assert created["version"] == 1
    assert created["data"] == {}
    assert created["overdue"] is False
    assert instant(created["state_entered_at"]) == instant(T0)
    # 15 working days from Monday 2 March 2026: the 15th is Monday 23 March.
    assert instant(created["deadline_at"]) == instant("2026-03-24T00:00:00+07:00")

    moves = []
    refusals = 0
    for user, trigger, source, dest, extra, now in HAPPY_PATH:
        for exit_code, who, wrong, arguments, named in WRONG_ATTEMPTS.get(source, []):
            message = refused(
                ws,
                exit_code,
                ERROR_CODES[exit_code],
                "dossier",
                "advance",
                dossier_id,
                wrong,
                *arguments,
                user=who,
                now=now,
            )
            for name in named:
                assert name in message, (source, who, wrong, message)
            refusals += 1
        if trigger == "submit_dossier":  # the producer files the dossier's documents first
            attach(ws, dossier_id, MANDATORY_DOCUMENTS + FOUR_STAR_DOCUMENTS, now=now)
        if trigger == "certify":  # the province council scores, its chair closes the round
            closed = score(ws, dossier_id, FOUR_STAR_SCORES, chair="chair", now=now)
            assert closed["stars"] == 4
        moved = advance(ws, dossier_id, trigger, *extra, user=user, now=now)
        moves.append(moved)
        assert set(moved) >= ADVANCE_KEYS, moved
        assert moved["id"] == dossier_id
        assert (moved["trigger"], moved["from"], moved["to"]) == (trigger, source, dest)
        assert instant(moved["at"]) == instant(now)
        if dest == "closed":
            assert moved["deadline_at"] is None
        else:
            assert instant(moved["deadline_at"]) > instant(now)
        if trigger == "accept_idea":
            # 20 working days from Thursday 5 March 2026 end with Thursday 2 April.
            assert instant(moved["deadline_at"]) == instant("2026-04-03T00:00:00+07:00")
        if trigger == "certify":
            # the certificate is valid 36 months from its issue on 1 July 2026
            assert moved["deadline_at"].startswith("2029-07-0"), moved
    assert refusals == sum(len(v) for v in WRONG_ATTEMPTS.values())
    assert [m["seq"] for m in moves] == sorted({m["seq"] for m in moves})

    final = ok(ws, "dossier", "show", dossier_id, now=HAPPY_PATH[-1][5])
    assert set(final) >= DOSSIER_KEYS
    assert (final["state"], final["stage"]) == ("closed", "review")
    assert final["deadline_at"] is None
    assert final["overdue"] is False
    assert final["product"] == PRODUCT
    assert final["data"]["stars"] == 4
    assert final["data"]["certified_on"] == "2026-07-01"
    assert final["data"]["certificate_no"] == "127/GCN-OCOP"
    assert final["data"]["decision_no"] == "2345/QĐ-UBND"
    assert instant(final["state_entered_at"]) == instant(HAPPY_PATH[-1][5])

    entries = ok(ws, "dossier", "history", dossier_id)
    assert final["version"] == len(entries)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    for entry in entries:
        assert set(entry) >= HISTORY_KEYS, entry
        assert re.fullmatch(r"[0-9a-f]{64}", entry["hash"]), entry["hash"]
    first = entries[0]
    assert (first["trigger"], first["from"], first["to"]) == ("register", None, "registration")
    assert first["actor"] == "htx_iale"
    assert first["reason"] is None
    assert instant(first["at"]) == instant(T0)
    assert PRODUCT in json.dumps(first["data"], ensure_ascii=False)
    # every move is in the trail under the seq `advance` reported, by whom and when it was made;
    # none of the refused attempts is
    by_seq = {e["seq"]: e for e in entries}
    for moved, (user, trigger, source, dest, _extra, now) in zip(moves, HAPPY_PATH, strict=True):
        entry = by_seq[moved["seq"]]
        assert (entry["trigger"], entry["from"], entry["to"]) == (trigger, source, dest)
        assert entry["actor"] == user
        assert entry["reason"] is None
        assert instant(entry["at"]) == instant(now)
    moving = [e for e in entries if e["from"] != e["to"]]
    assert [e["trigger"] for e in moving] == ["register"] + [m[1] for m in HAPPY_PATH]
    assert not {e["actor"] for e in entries} & {"tuan", "htx_other"}
    for previous, entry in itertools.pairwise(entries):
        assert entry["prev_hash"] == previous["hash"]
    assert first["prev_hash"] not in {e["hash"] for e in entries}
    assert len({e["hash"] for e in entries}) == len(entries)

    report = ok(ws, "audit", "verify")
    assert report == {
        "ok": True,
        "dossiers_checked": 1,
        "entries_checked": len(entries),
        "problems": [],
        "imported": [],  # registered, not imported: no dossier entered by import
    }

    # the human views keep the Vietnamese text intact
    shown = ws.run("dossier", "show", dossier_id, now=T0)
    assert shown.code == 0, str(shown)
    assert PRODUCT in shown.stdout
    assert PRODUCER in shown.stdout
    assert "Đã kết thúc chu trình" in shown.stdout
    listed = ws.run("dossier", "list", now=T0)
    assert listed.code == 0, str(listed)
    header, row = listed.stdout.splitlines()
    assert row.startswith(dossier_id)
    # aligned: each value starts under its header (NFC text: one cell per code point)
    assert row.index(PRODUCT) == header.index("PRODUCT")
    assert row.index("closed") == header.index("STATE")


def test_five_star_path_goes_through_the_central_council(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    dossier_id = register(ws, product="Cà phê hạt rang Ia Le")["id"]
    advance(ws, dossier_id, "accept_idea", user="lan")
    advance(ws, dossier_id, "approve_plan", user="lan")
    attach(ws, dossier_id, MANDATORY_DOCUMENTS + FIVE_STAR_DOCUMENTS)
    advance(ws, dossier_id, "submit_dossier", user="htx_iale")
    advance(ws, dossier_id, "forward", user="lan")
    province = score(ws, dossier_id, FIVE_STAR_SCORES, chair="chair")
    assert province["score"] >= 90
    assert province["stars"] == 5
    # five stars are beyond the province's power: it may not certify them
    message = refused(
        ws, 4, "refused", "dossier", "advance", dossier_id, "certify", *CERTIFICATE, user="hung"
    )
    assert "stars_within_level" in message
    assert "5★" in message
    moved = advance(ws, dossier_id, "forward", user="hung")
    assert (moved["from"], moved["to"]) == ("evaluation_province", "evaluation_central")
    central = score(ws, dossier_id, CENTRAL_SCORES, chair="tw_chair")
    assert central["stars"] == 5
    moved = advance(ws, dossier_id, "certify", *CERTIFICATE, user="minh")
    assert (moved["from"], moved["to"]) == ("evaluation_central", "promotion")

    shown = ok(ws, "dossier", "show", dossier_id)
    assert shown["state"] == "promotion"
    assert shown["data"]["stars"] == 5
    assert shown["product"] == "Cà phê hạt rang Ia Le"
    entries = ok(ws, "dossier", "history", dossier_id)
    moving = [(e["trigger"], e["actor"], e["to"]) for e in entries if e["from"] != e["to"]]
    assert moving == [
        ("register", "htx_iale", "registration"),
        ("accept_idea", "lan", "business_plan"),
        ("approve_plan", "lan", "production"),
        ("submit_dossier", "htx_iale", "evaluation_commune"),
        ("forward", "lan", "evaluation_province"),
        ("forward", "hung", "evaluation_central"),
        ("certify", "minh", "promotion"),
    ]
    report = ok(ws, "audit", "verify")
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["entries_checked"] == len(entries)


# --- refusals -----------------------------------------------------------------------------------


def test_refusal_without_json_prints_only_the_error_line(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    d = register(ws)["id"]
    result = ws.run("dossier", "advance", d, "approve_plan", user="lan", now=T0)
    assert result.code == 4, str(result)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1
    assert "registration" in result.stderr


def test_each_transition_is_logged_once_as_a_json_line_on_stderr_after_commit(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    d = register(ws)["id"]
    moved = ws.run("dossier", "advance", d, "accept_idea", "--json", user="lan", now=T0)
    assert moved.code == 0, str(moved)
    assert moved.json()["to"] == "business_plan"  # stdout: the command's one JSON document
    events = [json.loads(line) for line in moved.stderr.splitlines()]
    advanced = [e for e in events if e["event"] == "dossier.advanced"]
    assert len(advanced) == 1, events
    (event,) = advanced
    assert {k: event[k] for k in ("dossier", "trigger", "actor", "from_state", "to_state")} == {
        "dossier": d,
        "trigger": "accept_idea",
        "actor": "lan",
        "from_state": "registration",
        "to_state": "business_plan",
    }
    assert event["seq"] == 2 and event["level"] == "info"
    assert datetime.fromisoformat(event["timestamp"]).utcoffset() is not None
    # a refused move commits nothing and so logs no transition
    refused = ws.run("dossier", "advance", d, "accept_idea", user="lan", now=T0)
    assert refused.code == 4
    assert "dossier.advanced" not in refused.stderr


# --- reading commands on a populated workspace --------------------------------------------------


@dataclass
class Populated:
    ws: Workspace
    ids: dict[str, str]
    entries: int


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    """A SQLite workspace with dossiers in several states, communes and workflows (read only)."""
    root = tmp_path_factory.mktemp("populated")
    workflows = root / "workflows"
    workflows.mkdir()
    for path in WORKFLOWS.glob("*.toml"):  # the shipped workflows, and a pilot copy of 1489
        (workflows / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    shipped = (WORKFLOWS / "ocop-1489.toml").read_text(encoding="utf-8")
    pilot = shipped.replace('name = "ocop-1489"', 'name = "ocop-pilot"')
    assert pilot != shipped
    (workflows / "ocop-pilot.toml").write_text(pilot, encoding="utf-8")
    config = write_config(root)
    text = config.read_text(encoding="utf-8")
    assert f'workflows_dir = "{WORKFLOWS}"' in text
    config.write_text(
        text.replace(f'workflows_dir = "{WORKFLOWS}"', f'workflows_dir = "{workflows}"'),
        encoding="utf-8",
    )
    ws = Workspace(root, f"sqlite:///{root / 'ocop.db'}")
    ws.run("init", check=True)

    # IALE-1: registration, the producer's own registration
    register(ws, extra=("--id", "IALE-1", "--group", GROUP))
    # IAPHANG-1: business_plan, in the other commune
    register(
        ws,
        user="tuan",
        product="Hồ tiêu Ia Phang",
        producer="HTX Hồ tiêu Ia Phang",
        commune="Ia Phang",
        extra=("--id", "IAPHANG-1"),
    )
    advance(ws, "IAPHANG-1", "accept_idea", user="tuan")
    # IALE-2: production, two of its five mandatory documents filed
    register(
        ws,
        user="lan",
        product="Mật ong Ia Le",
        producer="THT Mật ong Ia Le",
        extra=("--id", "IALE-2"),
    )
    for trigger in ("accept_idea", "approve_plan"):
        advance(ws, "IALE-2", trigger, user="lan")
    attach(ws, "IALE-2", ("registration_form", "business_plan"), user="lan")
    # IALE-3: withdrawn, on the pilot workflow, a month later
    register(
        ws,
        user="lan",
        product="Chè dây Ia Le",
        producer="Tổ hợp tác Chè Ia Le",
        now=LATER,
        extra=("--id", "IALE-3", "--workflow", "ocop-pilot"),
    )
    advance(ws, "IALE-3", "withdraw", "--reason", "Chủ thể xin rút hồ sơ", user="lan", now=LATER)
    return Populated(
        ws,
        {
            "registration": "IALE-1",
            "business_plan": "IAPHANG-1",
            "production": "IALE-2",
            "withdrawn": "IALE-3",
        },
        entries=1 + 2 + 5 + 2,
    )


def ids(ws: Workspace, *filters: str, now: str = T0) -> list[str]:
    rows = ok(ws, "dossier", "list", *filters, now=now)
    for row in rows:
        assert set(row) >= DOSSIER_KEYS, row
    return [row["id"] for row in rows]


def test_dossier_list_filters_by_state_stage_commune_workflow_and_overdue(
    populated: Populated,
) -> None:
    ws = populated.ws
    rows = ok(ws, "dossier", "list")
    assert [r["id"] for r in rows] == ["IALE-1", "IALE-2", "IALE-3", "IAPHANG-1"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["IALE-1"]["product"] == PRODUCT
    assert by_id["IALE-1"]["group"] == GROUP
    assert by_id["IALE-3"]["workflow"] == "ocop-pilot"
    assert ids(ws, "--state", "registration") == ["IALE-1"]
    assert ids(ws, "--stage", "production") == ["IALE-2"]
    assert ids(ws, "--commune", "Ia Phang") == ["IAPHANG-1"]
    assert ids(ws, "--workflow", "ocop-pilot") == ["IALE-3"]
    assert ids(ws, "--commune", "Ia Le", "--workflow", "ocop-1489") == ["IALE-1", "IALE-2"]
    assert ids(ws, "--overdue") == []
    late = ok(ws, "dossier", "list", "--overdue", now=FAR_FUTURE)
    # every open dossier is overdue by 2031; the withdrawn one has no deadline any more
    assert [r["id"] for r in late] == ["IALE-1", "IALE-2", "IAPHANG-1"]
    assert all(r["overdue"] is True for r in late)


def test_triggers_list_what_the_acting_user_may_fire_and_why_not(populated: Populated) -> None:
    ws = populated.ws
    rows = ok(ws, "dossier", "triggers", "IALE-2", user="lan")  # production, 2 of 5 documents
    for row in rows:
        assert set(row) >= TRIGGER_KEYS, row
        assert row["allowed"] is (not row["reasons"])
    by_trigger = {r["trigger"]: r for r in rows}
    assert set(by_trigger) == {"submit_dossier", "withdraw"}
    assert by_trigger["submit_dossier"]["to"] == "evaluation_commune"
    assert by_trigger["submit_dossier"]["allowed"] is False
    (why,) = by_trigger["submit_dossier"]["reasons"]
    assert "documents_complete" in why
    for missing in ("organisation", "business_registration", "samples"):
        assert missing in why
    assert "registration_form" not in why  # filed already
    assert by_trigger["withdraw"]["to"] == "withdrawn"
    assert by_trigger["withdraw"]["allowed"] is True
    assert by_trigger["withdraw"]["reasons"] == []

    rows = ok(ws, "dossier", "triggers", "IALE-1", user="lan")  # registration
    by_trigger = {r["trigger"]: r for r in rows}
    assert {"accept_idea", "reject", "withdraw"} <= set(by_trigger)
    assert by_trigger["accept_idea"]["to"] == "business_plan"
    assert all(r["allowed"] and r["reasons"] == [] for r in rows), rows

    rows = ok(ws, "dossier", "triggers", "IALE-1", user="tuan")  # another commune's officer
    assert rows and not any(r["allowed"] for r in rows)
    assert all(any("Ia Le" in reason for reason in r["reasons"]) for r in rows), rows

    human = ws.run("dossier", "triggers", "IALE-2", user="lan", now=T0)
    assert human.code == 0, str(human)
    assert "documents_complete" in human.stdout
    assert "withdraw" in human.stdout


def test_audit_export_writes_every_entry_as_csv_and_jsonl(
    populated: Populated, tmp_path: Path
) -> None:
    ws = populated.ws
    jsonl = ws.run("audit", "export", "--format", "jsonl", now=T0)
    assert jsonl.code == 0, str(jsonl)
    docs = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(docs) == populated.entries
    for doc in docs:
        assert HISTORY_KEYS | {"dossier"} <= set(doc), doc
    assert {d["dossier"] for d in docs} == {"IALE-1", "IALE-2", "IALE-3", "IAPHANG-1"}
    per_dossier: dict[str, list[int]] = {}
    for doc in docs:
        per_dossier.setdefault(doc["dossier"], []).append(doc["seq"])
    assert per_dossier == {
        "IALE-1": [1],
        "IALE-2": [1, 2, 3, 4, 5],
        "IALE-3": [1, 2],
        "IAPHANG-1": [1, 2],
    }
    withdrawn = next(d for d in docs if d["trigger"] == "withdraw")
    assert withdrawn["reason"] == "Chủ thể xin rút hồ sơ"
    assert PRODUCT in jsonl.stdout

    as_csv = ws.run("audit", "export", "--format", "csv", now=T0)
    assert as_csv.code == 0, str(as_csv)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == populated.entries
    assert {
        "dossier",
        "seq",
        "trigger",
        "from",
        "to",
        "actor",
        "reason",
        "at",
        "data",
        "prev_hash",
        "hash",
    } <= set(rows[0])
    assert [(r["dossier"], int(r["seq"]), r["hash"]) for r in rows] == [
        (d["dossier"], d["seq"], d["hash"]) for d in docs
    ]
    assert any(r["reason"] == "Chủ thể xin rút hồ sơ" for r in rows)
    assert any(PRODUCT in r["data"] for r in rows)

    out = tmp_path / "recent.jsonl"
    since = ws.run(
        "audit", "export", "--format", "jsonl", "--since", "2026-03-15", "-o", str(out), now=T0
    )
    assert since.code == 0, str(since)
    assert since.stdout == ""
    recent = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(d["dossier"], d["trigger"]) for d in recent] == [
        ("IALE-3", "register"),
        ("IALE-3", "withdraw"),
    ]


def test_workflow_diagram_in_mermaid_and_dot(populated: Populated) -> None:
    ws = populated.ws
    mermaid = ws.run("workflow", "diagram", "ocop-1489", "--format", "mermaid")
    assert mermaid.code == 0, str(mermaid)
    assert mermaid.stdout.startswith("stateDiagram")
    assert "[*] --> registration" in mermaid.stdout
    assert "registration --> business_plan : accept_idea" in mermaid.stdout
    assert "evaluation_province --> evaluation_central : forward" in mermaid.stdout
    assert "closed --> [*]" in mermaid.stdout

    dot = ws.run("workflow", "diagram", "ocop-1489", "--format", "dot")
    assert dot.code == 0, str(dot)
    assert dot.stdout.lstrip().startswith("digraph")
    assert dot.stdout.rstrip().endswith("}")
    assert "registration -> business_plan" in dot.stdout
    assert "review -> closed" in dot.stdout
    assert "Đăng ký ý tưởng sản phẩm" in dot.stdout


def test_workflow_show_json_describes_states_triggers_and_roles(populated: Populated) -> None:
    document = ok(populated.ws, "workflow", "show", "ocop-1489")
    assert document["name"] == "ocop-1489"
    assert document["stages"] == [
        "registration",
        "business_plan",
        "production",
        "evaluation",
        "promotion",
        "review",
    ]
    states = {s["name"]: s for s in document["states"]}
    assert set(states) == {
        "registration",
        "business_plan",
        "production",
        "evaluation_commune",
        "evaluation_province",
        "evaluation_central",
        "promotion",
        "review",
        "closed",
        "rejected",
        "withdrawn",
        "expired",
        "revoked",
    }
    assert states["evaluation_province"]["stage"] == "evaluation"
    assert states["closed"]["final"] is True
    assert states["registration"]["initial"] is True
    moves = {(t["trigger"], t["from"]): t for t in document["transitions"]}
    assert moves[("accept_idea", "registration")]["to"] == "business_plan"
    assert moves[("accept_idea", "registration")]["roles"] == ["commune_officer"]
    assert moves[("certify", "evaluation_province")]["roles"] == ["province_officer"]
    assert moves[("certify", "evaluation_central")]["roles"] == ["central_officer"]
    assert "stars_within_level" in moves[("certify", "evaluation_province")]["guards"]
    assert moves[("expire", "promotion")]["roles"] == ["system"]
    triggers = {t["trigger"] for t in document["transitions"]}
    assert triggers >= {
        "accept_idea",
        "approve_plan",
        "reject",
        "submit_dossier",
        "forward",
        "return_dossier",
        "certify",
        "not_certified",
        "start_review",
        "renew",
        "close",
        "withdraw",
        "revoke",
        "expire",
    }


def test_workflow_show_lists_ten_dossier_ids_then_points_to_dossier_list() -> None:
    from ocop_workflow.cli import _dossiers_line

    ids = [f"OCOP-2026-{n:04d}" for n in range(1, 13)]
    line = _dossiers_line(
        "ocop-1489",
        {
            "dossiers": 12,
            "dossier_ids": ids,
            "dossiers_by_version": {"1489/QĐ-TTg": 12},
        },
    )
    assert line.splitlines() == [
        "dossiers on ocop-1489: 12 (12 on 1489/QĐ-TTg)",
        "  " + ", ".join(ids[:10]) + ", … 2 more",
        "  all of them: ocop dossier list --workflow ocop-1489",
    ]
    empty = {"dossiers": 0, "dossier_ids": [], "dossiers_by_version": {}}
    assert _dossiers_line("ocop-148", empty) == "dossiers on ocop-148: 0"
