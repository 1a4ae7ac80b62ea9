"""Council evaluation, star recognition, certificates and dossier documents, through ``ocop``.

Every step is a real ``ocop`` subprocess against a real database. Dossiers that only need to be
*at* an evaluation level are brought there with ``ocop import`` (one subprocess for several
dossiers); the full 1489 path walks every step from registration. The long scenarios run on
SQLite; the refusals and the tamper check run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from conftest import (
    MANDATORY_DOCUMENTS,
    WORKFLOWS,
    Result,
    Workspace,
    attach_mandatory,
    council_scores,
    dump_database,
)

from ocop_workflow.cli import option_hint

PRODUCT = "Cà phê bột Ia Le"
PRODUCER = "HTX Cà phê Ia Le"

T_REGISTER = "2026-03-02T09:00:00+07:00"
T_IMPORT = "2026-05-20T09:00:00+07:00"
T_IDEA = "2026-03-05T10:00:00+07:00"
T_PLAN = "2026-03-10T14:30:00+07:00"
T_PREPARE = "2026-05-25T09:00:00+07:00"
T_SUBMIT = "2026-06-01T08:15:00+07:00"
T_FORWARD = "2026-06-05T16:00:00+07:00"
T_SCORE = "2026-06-22T09:00:00+07:00"
T_CERTIFY = "2026-07-01T09:00:00+07:00"
T_CENTRAL = "2026-08-03T09:00:00+07:00"
T_CENTRAL_CERTIFY = "2026-09-01T09:00:00+07:00"

FOUR_STAR_DOCUMENTS = ("quality_standard", "lab_test", "product_story")
FIVE_STAR_DOCUMENTS = (*FOUR_STAR_DOCUMENTS, "traceability", "trademark")

#: The province council of the issue: 6 of 7 present, the chair among them (m6 absent);
#: totals 70, 72, 74, 73, 71, 74.4 — at most 4.4 apart — mean 72.4 (parts A ≤ 40, B ≤ 25, C ≤ 35).
FOUR_STAR_COUNCIL = {
    "chair": (30.0, 20.0, 20.0),
    "m1": (30.0, 20.0, 22.0),
    "m2": (30.0, 20.0, 24.0),
    "m3": (30.0, 20.0, 23.0),
    "m4": (30.0, 20.0, 21.0),
    "m5": (30.0, 20.0, 24.4),
}
PROVINCE_PRESENT = ("chair", "m1", "m2", "m3", "m4", "m5")


# --- helpers ------------------------------------------------------------------------------------


def ok(ws: Workspace, *args: str, user: str | None = None, now: str = T_SCORE) -> Any:
    """``ocop ARGS --json``: must succeed and print one JSON document."""
    result = ws.run(*args, "--json", user=user, now=now)
    assert result.code == 0, str(result)
    assert "Traceback" not in result.stderr
    return result.json()


def refused(
    ws: Workspace, exit_code: int, code: str, *args: str, user: str | None, now: str = T_SCORE
) -> str:
    """A refused command: its exit code, one ``error:`` line on stderr (the message, then the
    options of the inputs it names), the JSON error on stdout, and not one row of the database
    changed. Returns the message."""
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
    assert document["error"]["code"] == code, document
    message = document["error"]["message"]
    assert lines[0] == f"error: {message}{option_hint(document['error'].get('fields', ()))}"
    return str(message)


def dossier_row(
    dossier_id: str,
    state: str,
    *,
    workflow: str = "ocop-1489",
    group: str = "beverages",
    product: str = PRODUCT,
) -> dict[str, str]:
    return {
        "id": dossier_id,
        "product": product,
        "producer": PRODUCER,
        "commune": "Ia Le",
        "group": group,
        "workflow": workflow,
        "state": state,
    }


def import_dossiers(ws: Workspace, rows: list[dict[str, str]], now: str = T_IMPORT) -> list[str]:
    """Bring dossiers straight to a state (one ``ocop import`` by the province officer)."""
    path = ws.root / f"import-{uuid.uuid4().hex[:8]}.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = ok(ws, "import", str(path), user="records", now=now)
    assert report["imported"] == len(rows), report
    return list(report["ids"])


def attach(
    ws: Workspace, dossier_id: str, kind: str, *, user: str = "htx_iale", now: str = T_PREPARE
) -> dict[str, Any]:
    path = ws.root / f"{dossier_id}-{kind}.pdf"
    path.write_text(f"{dossier_id} {kind} — hồ sơ sản phẩm OCOP", encoding="utf-8")
    document = ok(ws, "dossier", "attach", dossier_id, kind, str(path), user=user, now=now)
    assert isinstance(document, dict)
    return document


def score(
    ws: Workspace,
    dossier_id: str,
    member: str,
    parts: tuple[float, float, float],
    *,
    user: str,
    now: str = T_SCORE,
) -> Result:
    a, b, c = parts
    return ws.run(
        "score",
        dossier_id,
        "--member",
        member,
        "--a",
        str(a),
        "--b",
        str(b),
        "--c",
        str(c),
        user=user,
        now=now,
    )


def closed_result(result: Result, level: str) -> dict[str, Any]:
    """The round's result from ``score --close --json``, which must have succeeded."""
    assert result.code == 0, str(result)
    document = result.json()
    scoring = document["scoring"][level]
    assert scoring["closed"] is True, document
    assert document["score"] == scoring["result"]["score"]
    assert document["stars"] == scoring["result"]["stars"]
    return dict(scoring["result"])


def close_refused(ws: Workspace, dossier_id: str, chair: str = "chair") -> str:
    return refused(ws, 4, "refused", "score", dossier_id, "--close", user=chair)


def certify_args(dossier_id: str, number: str) -> tuple[str, ...]:
    return (
        "dossier",
        "advance",
        dossier_id,
        "certify",
        "--set",
        f"certificate_no={number}",
        "--set",
        f"decision_no=QĐ-{number}",
    )


def blobs(ws: Workspace) -> list[Path]:
    """The files of the content-addressed document store (documents/xx/sha256)."""
    root = ws.root / "documents"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


# --- the full 1489 path -------------------------------------------------------------------------


def test_1489_commune_pre_assessment_then_province_council_recognises_and_certifies_4_stars(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    d = ok(
        ws,
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        "--group",
        "beverages",
        user="htx_iale",
        now=T_REGISTER,
    )["id"]
    ok(ws, "dossier", "advance", d, "accept_idea", user="lan", now=T_IDEA)
    ok(ws, "dossier", "advance", d, "approve_plan", user="lan", now=T_PLAN)
    attach_mandatory(ws, d, now=T_PREPARE)
    for kind in FOUR_STAR_DOCUMENTS:
        attach(ws, d, kind)

    submitted = ok(ws, "dossier", "advance", d, "submit_dossier", user="htx_iale", now=T_SUBMIT)
    assert (submitted["from"], submitted["to"]) == ("production", "evaluation_commune")
    forwarded = ok(ws, "dossier", "advance", d, "forward", user="lan", now=T_FORWARD)
    assert (forwarded["from"], forwarded["to"]) == ("evaluation_commune", "evaluation_province")

    # each member enters their own score; the chair closes the round
    for member, parts in FOUR_STAR_COUNCIL.items():
        result = score(ws, d, member, parts, user=member)
        assert result.code == 0, str(result)
    result = closed_result(
        ws.run("score", d, "--close", "--json", user="chair", now=T_SCORE), "province"
    )
    assert result["score"] == 72.4
    assert (result["stars_by_points"], result["stars"], result["capped"]) == (4, 4, [])
    assert result["present"] == sorted(PROVINCE_PRESENT)
    assert result["absent"] == ["m6"]

    # 72.4 is below the 90 points the province needs to propose a product to the central council
    message = refused(
        ws, 4, "refused", "dossier", "advance", d, "forward", user="hung", now=T_CERTIFY
    )
    assert "score_at_least" in message and "90" in message

    certified = ok(ws, *certify_args(d, "GCN-2026-014"), user="hung", now=T_CERTIFY)
    assert (certified["from"], certified["to"]) == ("evaluation_province", "promotion")

    entries = ok(ws, "dossier", "history", d, now=T_CERTIFY)
    last = entries[-1]
    assert (last["trigger"], last["to"], last["actor"]) == ("certify", "promotion", "hung")
    data = last["data"]["data"]
    assert data["score"] == 72.4
    assert data["stars"] == 4
    assert data["certificate_stars"] == 4
    assert data["certificate_no"] == "GCN-2026-014"
    assert data["decision_no"] == "QĐ-GCN-2026-014"
    assert data["certified_on"] == "2026-07-01"
    # 36 months from issue, through the end of the corresponding day (Civil Code Art. 147-148)
    assert data["valid_until"] == date(2029, 7, 1).isoformat()

    scores = [e for e in entries if e["trigger"] == "score"]
    assert [e["actor"] for e in scores] == list(PROVINCE_PRESENT)
    for entry in scores:  # each entry adds exactly its member's score, with its parts
        member = entry["actor"]
        after = entry["data"]["data"]["scoring"]["province"]["scores"]
        before = entry["data_before"]["data"].get("scoring", {}).get("province", {})
        assert set(after) - set(before.get("scores", {})) == {member}
        a, b, c = FOUR_STAR_COUNCIL[member]
        assert (after[member]["a"], after[member]["b"], after[member]["c"]) == (a, b, c)
        assert after[member]["total"] == round(a + b + c, 2)
    closes = [e for e in entries if e["trigger"] == "close_scoring"]
    assert [e["actor"] for e in closes] == ["chair"]
    assert entries.index(closes[0]) > entries.index(scores[-1])
    assert [e["trigger"] for e in entries if e["from"] != e["to"]] == [
        "register",
        "accept_idea",
        "approve_plan",
        "submit_dossier",
        "forward",
        "certify",
    ]
    assert [e["trigger"] for e in entries].count("attach") == len(MANDATORY_DOCUMENTS) + 3

    verified = ok(ws, "audit", "verify", now=T_CERTIFY)
    assert verified["ok"] is True, verified
    assert verified["problems"] == []


# --- council rules ------------------------------------------------------------------------------


def test_closing_needs_75_percent_of_the_members(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-FEW", "evaluation_province")])
    # four of seven (57 %), the chair among them: below the 75 % quorum
    council_scores(
        ws,
        d,
        {m: (30.0, 20.0, 25.0) for m in ("chair", "m1", "m2", "m3")},
        close=False,
        now=T_SCORE,
    )
    message = close_refused(ws, d)
    assert "council_quorum" in message
    assert "4 of 7" in message
    assert "at least 6" in message
    assert "scores_agree" not in message


def test_closing_needs_the_chair_and_totals_within_10_points_until_the_member_rescores(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-SPREAD", "evaluation_province")])
    # six of seven members (enough by count), the chair absent, m5 12 points below m1
    council_scores(
        ws,
        d,
        {
            "m1": (30.0, 20.0, 30.0),  # 80, the highest
            "m2": (30.0, 20.0, 29.0),  # 79
            "m3": (30.0, 20.0, 29.0),
            "m4": (30.0, 20.0, 29.0),
            "m5": (28.0, 18.0, 22.0),  # 68: 12 points below m1
            "m6": (30.0, 20.0, 29.0),
        },
        close=False,
        now=T_SCORE,
    )
    message = close_refused(ws, d)
    assert "council_quorum" in message
    assert "the chair (chair)" in message
    assert "6 of 7" not in message  # the count is fine; the chair is what is missing
    assert "scores_agree" in message
    assert "m5 68" in message and "m1 80" in message

    # a re-score needs a reason
    message = refused(ws, 4, "refused", "score", d, "--rescore", "--member", "m5", user="chair")
    assert "reason" in message
    cleared = ok(
        ws,
        "score",
        d,
        "--rescore",
        "--member",
        "m5",
        "--reason",
        "Hội đồng thảo luận lại tiêu chí chất lượng",
        user="chair",
    )
    assert "m5" not in cleared["scoring"]["province"]["scores"]
    assert len(cleared["scoring"]["province"]["scores"]) == 5
    result = score(ws, d, "m5", (30.0, 20.0, 26.0), user="m5")  # 76
    assert result.code == 0, str(result)

    # the totals agree now, but the chair is still absent
    message = close_refused(ws, d)
    assert "council_quorum" in message and "the chair (chair)" in message
    assert "scores_agree" not in message

    result = score(ws, d, "chair", (30.0, 20.0, 29.0), user="chair")  # 79
    assert result.code == 0, str(result)
    result = closed_result(
        ws.run("score", d, "--close", "--json", user="chair", now=T_SCORE), "province"
    )
    assert result["score"] == round((79 * 5 + 80 + 76) / 7, 2)
    assert result["stars_by_points"] == 4
    assert result["absent"] == []

    entries = ok(ws, "dossier", "history", d)
    triggers = [e["trigger"] for e in entries]
    assert triggers == ["import", *["score"] * 6, "rescore", "score", "score", "close_scoring"]
    rescore = entries[triggers.index("rescore")]
    assert rescore["actor"] == "chair"
    assert rescore["reason"] == "Hội đồng thảo luận lại tiêu chí chất lượng"
    # the cleared score stays in the trail: re-scoring never erases what was given
    assert rescore["data_before"]["data"]["scoring"]["province"]["scores"]["m5"]["total"] == 68


def test_totals_exactly_10_points_apart_are_not_more_than_10_apart(
    sqlite_workspace: Workspace,
) -> None:
    """The rule re-scores when members differ by *more than* 10 points; 54.4 and 64.4 differ
    by exactly 10 (a difference the float subtraction makes 10.000000000000007)."""
    ws = sqlite_workspace
    [d] = import_dossiers(
        ws, [dossier_row("OCOP-T-TEN", "evaluation_district", workflow="ocop-148")]
    )
    result = council_scores(
        ws,
        d,
        {
            "h_chair": (20.0, 14.0, 20.4),  # 54.4
            "h1": (24.0, 16.0, 20.0),  # 60
            "h2": (24.0, 16.0, 24.4),  # 64.4
        },
        chair="h_chair",
        now=T_SCORE,
    )
    assert result.code == 0, f"totals exactly 10 apart were refused: {result}"
    assert closed_result(result, "district")["score"] == 59.6


# --- stars: caps and the power of each level ----------------------------------------------------


def test_province_may_not_give_5_stars_it_forwards_to_the_central_council(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-5SAO", "evaluation_province")])
    for kind in FIVE_STAR_DOCUMENTS:
        attach(ws, d, kind)
    result = closed_result(
        council_scores(ws, d, {m: (38.0, 24.0, 30.0) for m in PROVINCE_PRESENT}, now=T_SCORE),
        "province",
    )
    assert (result["score"], result["stars"], result["capped"]) == (92.0, 5, [])

    message = refused(ws, 4, "refused", *certify_args(d, "GCN-TINH-5"), user="hung", now=T_CERTIFY)
    assert "stars_within_level" in message
    assert "5★" in message and "evaluation_province" in message
    assert "certificate_details" not in message and "scoring_closed" not in message

    forwarded = ok(ws, "dossier", "advance", d, "forward", user="hung", now=T_CERTIFY)
    assert (forwarded["from"], forwarded["to"]) == ("evaluation_province", "evaluation_central")

    result = closed_result(
        council_scores(
            ws,
            d,
            {m: (38.0, 24.0, 33.0) for m in ("tw_chair", "tw1", "tw2")},
            chair="tw_chair",
            now=T_CENTRAL,
        ),
        "central",
    )
    assert (result["score"], result["stars"]) == (95.0, 5)
    assert result["absent"] == ["tw3"]

    certified = ok(ws, *certify_args(d, "GCN-TW-5"), user="minh", now=T_CENTRAL_CERTIFY)
    assert (certified["from"], certified["to"]) == ("evaluation_central", "promotion")
    data = ok(ws, "dossier", "show", d, now=T_CENTRAL_CERTIFY)["data"]
    assert (data["certificate_stars"], data["stars"], data["score"]) == (5, 5, 95.0)
    assert data["certified_on"] == "2026-09-01"
    assert data["valid_until"] == "2029-09-01"
    assert data["scoring"]["province"]["result"]["stars"] == 5  # the province's round is kept


def test_missing_mandatory_criteria_cap_a_75_point_product_at_3_stars(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-CAP", "evaluation_province")])
    result = closed_result(
        council_scores(ws, d, {m: (30.0, 20.0, 25.0) for m in PROVINCE_PRESENT}, now=T_SCORE),
        "province",
    )
    assert result["score"] == 75.0
    assert result["stars_by_points"] == 4
    assert result["stars"] == 3
    assert len(result["capped"]) == 1
    for kind in FOUR_STAR_DOCUMENTS:
        assert kind in result["capped"][0]
    assert "4★" in result["capped"][0]


# --- the older rule versions --------------------------------------------------------------------


def test_148_district_recognises_3_stars_and_forwards_70_points_to_the_province(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    d68, d72 = import_dossiers(
        ws,
        [
            dossier_row("OCOP-148-68", "evaluation_district", workflow="ocop-148"),
            dossier_row("OCOP-148-72", "evaluation_district", workflow="ocop-148"),
        ],
    )
    district = ("h_chair", "h1", "h2")

    result = closed_result(
        council_scores(
            ws, d68, {m: (27.0, 17.0, 24.0) for m in district}, chair="h_chair", now=T_SCORE
        ),
        "district",
    )
    assert (result["score"], result["stars"]) == (68.0, 3)
    message = refused(
        ws, 4, "refused", "dossier", "advance", d68, "forward", user="dung", now=T_CERTIFY
    )
    assert "score_at_least" in message and "70" in message
    certified = ok(ws, *certify_args(d68, "GCN-H-3"), user="dung", now=T_CERTIFY)
    assert (certified["from"], certified["to"]) == ("evaluation_district", "promotion")
    assert ok(ws, "dossier", "show", d68, now=T_CERTIFY)["data"]["certificate_stars"] == 3

    for kind in FOUR_STAR_DOCUMENTS:
        attach(ws, d72, kind)
    result = closed_result(
        council_scores(
            ws, d72, {m: (29.0, 18.0, 25.0) for m in district}, chair="h_chair", now=T_SCORE
        ),
        "district",
    )
    assert (result["score"], result["stars"]) == (72.0, 4)
    message = refused(ws, 4, "refused", *certify_args(d72, "GCN-H-4"), user="dung", now=T_CERTIFY)
    assert "stars_within_level" in message
    assert "4★" in message and "evaluation_district" in message
    forwarded = ok(ws, "dossier", "advance", d72, "forward", user="dung", now=T_CERTIFY)
    assert (forwarded["from"], forwarded["to"]) == ("evaluation_district", "evaluation_province")


def test_1048_district_forwards_50_points_to_the_province(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    d49, d55 = import_dossiers(
        ws,
        [
            dossier_row("OCOP-1048-49", "evaluation_district", workflow="ocop-1048"),
            dossier_row("OCOP-1048-55", "evaluation_district", workflow="ocop-1048"),
        ],
    )
    district = ("h_chair", "h1", "h2")
    result = closed_result(
        council_scores(
            ws, d49, {m: (17.0, 12.0, 20.0) for m in district}, chair="h_chair", now=T_SCORE
        ),
        "district",
    )
    assert result["score"] == 49.0
    message = refused(
        ws, 4, "refused", "dossier", "advance", d49, "forward", user="dung", now=T_CERTIFY
    )
    assert "score_at_least" in message and "50" in message

    # part C counts up to 40 under 1048
    result = closed_result(
        council_scores(
            ws, d55, {m: (12.0, 5.0, 38.0) for m in district}, chair="h_chair", now=T_SCORE
        ),
        "district",
    )
    assert (result["score"], result["stars"]) == (55.0, 3)
    forwarded = ok(ws, "dossier", "advance", d55, "forward", user="dung", now=T_CERTIFY)
    assert (forwarded["from"], forwarded["to"]) == ("evaluation_district", "evaluation_province")


def test_part_c_maximum_35_under_148_and_1489_refuses_38(sqlite_workspace: Workspace) -> None:
    """Under 1048 part C counts up to 40 (``--c 38`` is scored in the 1048 test above); under
    148 and 1489 it counts up to 35."""
    ws = sqlite_workspace
    d148, d1489 = import_dossiers(
        ws,
        [
            dossier_row("OCOP-C-148", "evaluation_district", workflow="ocop-148"),
            dossier_row("OCOP-C-1489", "evaluation_province"),
        ],
    )
    for d, member in ((d148, "h1"), (d1489, "m1")):
        message = refused(
            ws,
            2,
            "usage",
            "score",
            d,
            "--member",
            member,
            "--a",
            "30",
            "--b",
            "22",
            "--c",
            "38",
            user=member,
        )
        assert "part C" in message and "35" in message


def test_a_dossier_stays_on_the_rule_version_it_started_with(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    register = (
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        "--group",
        "food",
    )
    old = ok(ws, *register, user="htx_iale", now=T_REGISTER)
    assert (old["workflow"], old["workflow_version"]) == ("ocop-1489", "1489/QĐ-TTg")

    # the office switches its default rule version; the running dossier keeps its own
    text = ws.config.read_text(encoding="utf-8")
    ws.config.write_text(
        text.replace('default_workflow = "ocop-1489"', 'default_workflow = "ocop-148"'),
        encoding="utf-8",
    )
    new = ok(ws, *register, user="htx_iale", now=T_REGISTER)
    assert (new["workflow"], new["workflow_version"]) == ("ocop-148", "148/QĐ-TTg")
    older = ok(ws, *register, "--workflow", "ocop-1048", user="htx_iale", now=T_REGISTER)
    assert (older["workflow"], older["workflow_version"]) == ("ocop-1048", "1048/QĐ-TTg")

    shown = ok(ws, "dossier", "show", old["id"], now=T_IDEA)
    assert (shown["workflow"], shown["workflow_version"]) == ("ocop-1489", "1489/QĐ-TTg")
    # 1489's rules still apply to it: the commune officer accepts the idea ...
    ok(ws, "dossier", "advance", old["id"], "accept_idea", user="lan", now=T_IDEA)
    # ... while under 148 that is the district officer's
    message = refused(
        ws,
        6,
        "permission_denied",
        "dossier",
        "advance",
        new["id"],
        "accept_idea",
        user="lan",
        now=T_IDEA,
    )
    assert "district_officer" in message

    # workflow show tells which dossiers each rule version still carries
    for name, dossier in (("ocop-148", new), ("ocop-1489", old), ("ocop-1048", older)):
        described = ok(ws, "workflow", "show", name)
        assert described["dossiers"] == 1
        assert described["dossier_ids"] == [dossier["id"]]
        assert described["dossiers_by_version"] == {dossier["workflow_version"]: 1}
    table = ws.run("workflow", "show", "ocop-148")
    assert table.code == 0, str(table)
    assert f"dossiers on ocop-148: 1 (1 on 148/QĐ-TTg)\n  {new['id']}\n" in table.stdout
    assert old["id"] not in table.stdout

    # a group must be one of the workflow's groups
    message = refused(ws, 2, "usage", *register[:-1], "đồ uống", user="htx_iale")
    assert "tourism" in message


def own_workflows(ws: Workspace) -> Path:
    """A copy of the shipped workflow files the workspace's config points at (to edit)."""
    own = ws.root / "workflows"
    shutil.copytree(WORKFLOWS, own)
    text = ws.config.read_text(encoding="utf-8")
    ws.config.write_text(
        text.replace(f'workflows_dir = "{WORKFLOWS}"', f'workflows_dir = "{own}"'), encoding="utf-8"
    )
    return own


def test_rules_edited_in_place_do_not_silently_move_a_running_dossier(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    own = own_workflows(ws)
    dossier = ok(
        ws,
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        user="htx_iale",
        now=T_REGISTER,
    )
    original = (own / "ocop-1489.toml").read_text(encoding="utf-8")
    (own / "ocop-1489.toml").write_text(
        original.replace('version = "1489/QĐ-TTg"', 'version = "1489/QĐ-TTg sửa đổi"'),
        encoding="utf-8",
    )

    message = refused(
        ws,
        1,
        "workflow",
        "dossier",
        "advance",
        dossier["id"],
        "accept_idea",
        user="lan",
        now=T_IDEA,
    )
    assert dossier["id"] in message
    assert "1489/QĐ-TTg sửa đổi" in message and "version 1489/QĐ-TTg," in message
    attached = ws.root / "phieu-dang-ky.pdf"
    attached.write_text("phiếu đăng ký", encoding="utf-8")
    refused(
        ws,
        1,
        "workflow",
        "dossier",
        "attach",
        dossier["id"],
        "registration_form",
        str(attached),
        user="htx_iale",
        now=T_IDEA,
    )
    # reading still works: the officer can see what the dossier is and why it is held
    assert ok(ws, "dossier", "show", dossier["id"], now=T_IDEA)["workflow_version"] == (
        "1489/QĐ-TTg"
    )

    # and `dossier triggers`, a reading command, answers: nothing may fire, and why
    triggers = ok(ws, "dossier", "triggers", dossier["id"], user="lan", now=T_IDEA)
    assert triggers and not any(t["allowed"] for t in triggers)
    assert all("1489/QĐ-TTg sửa đổi" in t["reasons"][0] for t in triggers)

    (own / "ocop-1489.toml").write_text(original, encoding="utf-8")
    moved = ok(ws, "dossier", "advance", dossier["id"], "accept_idea", user="lan", now=T_IDEA)
    assert moved["to"] == "business_plan"


def test_a_certificate_still_expires_on_time_while_its_rules_file_is_being_edited(
    sqlite_workspace: Workspace,
) -> None:
    """Officers are held while the file's version differs; the scheduler is not: the expiry
    planned under the dossier's own rules fires, so no deadline is lost to an edit."""
    ws = sqlite_workspace
    own = own_workflows(ws)
    sheet = ws.root / "chung-nhan-2023.csv"
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
                "OCOP-2023-0001",
                PRODUCT,
                PRODUCER,
                "Ia Le",
                "food",
                "promotion",
                "2023-01-10",
                "2023-01-10",
                "2026-01-09",
                "3",
                "3",
                "OCOP-GL-2023-001",
                "15/QĐ-UBND",
            ]
        )
    ok(ws, "import", str(sheet), user="records", now="2025-06-02T09:00:00+07:00")
    path = own / "ocop-1489.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'version = "1489/QĐ-TTg"', 'version = "1489/QĐ-TTg sửa đổi"'
        ),
        encoding="utf-8",
    )

    swept = ws.run("sweep", "--json", now="2026-02-02T09:00:00+07:00")
    assert swept.code == 0, str(swept)
    assert swept.json()["auto_transitions"] == 1, swept.stdout
    warnings = [json.loads(line) for line in swept.stderr.splitlines()]
    assert any(
        w["event"] == "sweep.workflow_version_changed" and w["dossier"] == "OCOP-2023-0001"
        for w in warnings
    ), swept.stderr
    last = ok(ws, "dossier", "history", "OCOP-2023-0001", now="2026-02-02T09:00:00+07:00")[-1]
    assert (last["trigger"], last["actor"], last["to"]) == ("expire", "system", "expired")


# --- documents ----------------------------------------------------------------------------------


def test_submit_names_each_missing_document_and_show_lists_them(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    food, tour = import_dossiers(
        ws,
        [
            dossier_row("OCOP-DOC-FOOD", "production", group="food"),
            dossier_row(
                "OCOP-DOC-TOUR",
                "production",
                group="tourism",
                product="Du lịch cộng đồng làng Ia Le",
            ),
        ],
    )
    message = refused(
        ws,
        4,
        "refused",
        "dossier",
        "advance",
        food,
        "submit_dossier",
        user="htx_iale",
        now=T_SUBMIT,
    )
    assert "documents_complete" in message
    for kind in MANDATORY_DOCUMENTS:
        assert kind in message

    attach(ws, food, "registration_form")
    attach(ws, food, "business_plan")
    shown = ok(ws, "dossier", "show", food, now=T_SUBMIT)
    by_kind = {d["kind"]: d for d in shown["documents"]}
    assert by_kind["registration_form"]["present"] is True
    assert by_kind["registration_form"]["files"] == [f"{food}-registration_form.pdf"]
    assert by_kind["samples"]["present"] is False
    assert shown["documents_missing"] == ["organisation", "business_registration", "samples"]
    message = refused(
        ws,
        4,
        "refused",
        "dossier",
        "advance",
        food,
        "submit_dossier",
        user="htx_iale",
        now=T_SUBMIT,
    )
    for kind in ("organisation", "business_registration", "samples"):
        assert kind in message
    assert "registration_form" not in message
    assert "business_plan" not in message.replace("business_registration", "")

    # a tourism service gets a site visit instead of samples
    shown = ok(ws, "dossier", "show", tour, now=T_SUBMIT)
    assert shown["documents_missing"] == [
        "registration_form",
        "business_plan",
        "organisation",
        "business_registration",
        "site_visit",
    ]
    message = refused(
        ws,
        4,
        "refused",
        "dossier",
        "advance",
        tour,
        "submit_dossier",
        user="htx_iale",
        now=T_SUBMIT,
    )
    assert "site_visit" in message
    assert "samples" not in message


def test_the_same_file_is_stored_once_and_attaching_it_again_changes_nothing(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    first, second = import_dossiers(
        ws,
        [
            dossier_row("OCOP-BLOB-1", "production"),
            dossier_row("OCOP-BLOB-2", "production"),
        ],
    )
    report = ws.root / "phieu-kiem-nghiem.pdf"
    report.write_bytes("Phiếu kết quả kiểm nghiệm số 123/KN".encode() * 1000)
    attached = ok(ws, "dossier", "attach", first, "lab_test", str(report), user="htx_iale")
    assert attached["already_attached"] is False
    sha = attached["sha256"]
    assert [p.relative_to(ws.root).as_posix() for p in blobs(ws)] == [f"documents/{sha[:2]}/{sha}"]

    before = dump_database(ws.url)
    again = ok(ws, "dossier", "attach", first, "lab_test", str(report), user="htx_iale")
    assert dump_database(ws.url) == before
    assert again["already_attached"] is True
    assert again["sha256"] == sha

    copy = ws.root / "ban-sao.pdf"
    copy.write_bytes(report.read_bytes())
    other = ok(ws, "dossier", "attach", second, "lab_test", str(copy), user="htx_iale")
    assert other["sha256"] == sha and other["already_attached"] is False
    assert len(blobs(ws)) == 1
    assert blobs(ws)[0].read_bytes() == report.read_bytes()

    triggers = [e["trigger"] for e in ok(ws, "dossier", "history", first)]
    assert triggers == ["import", "attach"]


def test_a_stored_document_changed_on_disk_fails_audit_verify(workspace: Workspace) -> None:
    ws = workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-TAMPER", "production")])
    attached = attach(ws, d, "lab_test")
    assert ok(ws, "audit", "verify")["ok"] is True

    [blob] = blobs(ws)
    assert blob.name == attached["sha256"]
    blob.write_text("kết quả kiểm nghiệm đã bị sửa", encoding="utf-8")

    result = ws.run("audit", "verify", now=T_SCORE)
    assert result.code == 7, str(result)
    assert d in result.stdout and attached["name"] in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and d in lines[0], result.stderr

    result = ws.run("audit", "verify", "--json", now=T_SCORE)
    assert result.code == 7, str(result)
    report = result.json()
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["dossier"] == d
    assert attached["name"] in problem["problem"] and "lab_test" in problem["problem"]


# --- refusals -----------------------------------------------------------------------------------


def test_bad_scores_unknown_members_double_scores_and_protected_stars_write_nothing(
    workspace: Workspace,
) -> None:
    ws = workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-BAD", "evaluation_province")])
    result = score(ws, d, "m1", (30.0, 20.0, 25.0), user="m1")
    assert result.code == 0, str(result)

    def score_args(member: str, a: str, b: str = "20", c: str = "25") -> tuple[str, ...]:
        return ("score", d, "--member", member, "--a", a, "--b", b, "--c", c)

    message = refused(ws, 2, "usage", *score_args("m2", "41"), user="m2")
    assert "part A" in message and "40" in message
    message = refused(ws, 2, "usage", *score_args("m2", "-1"), user="m2")
    assert "part A" in message

    message = refused(ws, 3, "not_found", *score_args("ong_x", "30"), user="chair")
    assert "ong_x" in message
    message = refused(ws, 3, "not_found", *score_args("tw1", "30"), user="chair")
    assert "tw1" in message and "tinh" in message  # a user, but not of this council

    message = refused(ws, 4, "refused", *score_args("m1", "31"), user="m1")
    assert "m1" in message and "already" in message

    message = refused(ws, 6, "permission_denied", *score_args("m2", "30"), user="m1")
    assert "m1" in message and "m2" in message
    message = refused(ws, 6, "permission_denied", "score", d, "--close", user="m1")
    assert "chair" in message

    message = refused(
        ws, 2, "usage", *certify_args(d, "GCN-X"), "--set", "stars=5", user="hung", now=T_CERTIFY
    )
    assert "stars" in message and "protected" in message

    shown = ok(ws, "dossier", "show", d)
    assert list(shown["data"]["scoring"]["province"]["scores"]) == ["m1"]
    assert "stars" not in shown["data"]


def test_the_command_line_ends_an_error_with_the_options_of_the_inputs_it_names(
    sqlite_workspace: Workspace,
) -> None:
    """The facade words an error for every caller ("'reject' needs a reason"); at a terminal
    the line ends with the options to type, while ``--json`` prints the API's error: the same
    message, no option in it, and the inputs it names in ``fields``."""
    ws = sqlite_workspace
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-OPT", "evaluation_province")])
    score = ("score", d, "--member", "m1", "--b", "20", "--c", "20")
    cases = [
        (
            ("dossier", "advance", d, "certify"),
            "hung",
            ["data.certificate_no", "data.decision_no"],
            " — options --set certificate_no=…, --set decision_no=…",
        ),
        (
            ("dossier", "advance", d, "return_dossier", "--set", "producer_email=x"),
            "hung",
            ["data.producer_email"],
            " — option --set producer_email=…",
        ),
        (
            ("dossier", "advance", d, "return_dossier"),
            "hung",
            ["reason"],
            " — option --reason TEXT",
        ),
        ((*score, "--a", "99"), "chair", ["a"], " — option --a"),
        (
            (*score, "--a", "30", "--council", "nope"),
            "chair",
            ["council"],
            " — option --council KEY",
        ),
        (("score", d, "--rescore"), "chair", ["reason"], " — option --reason TEXT"),
        (("dossier", "list", "--commune", "Ia le"), None, ["commune"], " — option --commune"),
        (("dossier", "list", "--state", "bussiness_plan"), None, ["state"], " — option --state"),
    ]
    for args, user, fields, hint in cases:
        done = ws.run(*args, "--json", user=user, now=T_SCORE)
        error = json.loads(done.stdout)["error"]
        assert error.get("fields") == fields, done
        assert "--" not in error["message"], done
        assert done.stderr == f"error: {error['message']}{hint}\n", done


def test_a_re_certification_takes_new_numbers_not_those_of_the_certificate_it_supersedes(
    sqlite_workspace: Workspace,
) -> None:
    """After an upgrade the old certificate's numbers are still in the data (that certificate
    is valid until the new one replaces it): ``certify`` with no ``--set`` passed the guard,
    and the new certificate carried the superseded number (review, helper)."""
    ws = sqlite_workspace
    row = dossier_row("OCOP-T-STALE", "promotion")
    row.update(
        certificate_no="GCN-2023-001",
        decision_no="QĐ-2023-001",
        certified_on="2023-07-01",
        valid_until="2026-07-01",
        stars="3",
        certificate_stars="3",
        state_entered_at="2023-07-01",
    )
    [d] = import_dossiers(ws, [row])
    ok(ws, "dossier", "advance", d, "upgrade", user="lan", now="2026-05-21T09:00:00+07:00")
    ok(ws, "dossier", "advance", d, "forward", user="lan", now="2026-05-22T09:00:00+07:00")
    assert council_scores(ws, d, FOUR_STAR_COUNCIL, now=T_SCORE).code == 0
    certify = ("dossier", "advance", d, "certify")
    at = "2026-07-01T09:00:00+07:00"
    message = refused(ws, 4, "refused", *certify, user="hung", now=at)
    assert "certificate_no" in message and "decision_no" in message
    same = ("--set", "certificate_no=GCN-2023-001", "--set", "decision_no=QĐ-2026-088")
    assert "certificate_no" in refused(ws, 4, "refused", *certify, *same, user="hung", now=at)
    new = ("--set", "certificate_no=GCN-2026-017", "--set", "decision_no=QĐ-2026-088")
    ok(ws, *certify, *new, user="hung", now=at)
    data = ok(ws, "dossier", "show", d, now="2026-07-01T10:00:00+07:00")["data"]
    assert (data["certificate_no"], data["decision_no"]) == ("GCN-2026-017", "QĐ-2026-088")
    assert data["previous_certificates"][0]["certificate_no"] == "GCN-2023-001"


TWO_PROVINCE_COUNCILS = """
[councils.tinh_b]
title = "Hội đồng tỉnh thứ hai"
level = "province"
chair = "b_chair"
members = ["b_chair", "b1"]

[users.b_chair]
name = "Chủ tịch Hội đồng tỉnh thứ hai"
roles = ["council_chair"]
communes = ["*"]

[users.b1]
name = "Thành viên Hội đồng tỉnh thứ hai"
roles = ["council_member"]
communes = ["*"]
"""


def test_a_round_is_its_councils_another_council_of_the_level_may_not_score_close_or_clear_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Two province councils cover Ia Le: the round council ``tinh`` scores is ``tinh``'s. The
    other council's chair may not add a score to it, close it with ``tinh``'s scores counted as
    its quorum, or wipe it with a re-score (exit 6, nothing written); ``tinh``'s chair then
    closes it without naming the council again."""
    from conftest import write_config

    write_config(tmp_path, extra=TWO_PROVINCE_COUNCILS)
    ws = Workspace(tmp_path, sqlite_url)
    ws.run("init", check=True)
    [d] = import_dossiers(ws, [dossier_row("OCOP-T-TWO", "evaluation_province")])
    for member, parts in FOUR_STAR_COUNCIL.items():
        given = ws.run(
            "score", d, "--member", member, "--a", str(parts[0]), "--b", str(parts[1]),
            "--c", str(parts[2]), "--council", "tinh", user="chair", now=T_SCORE,
        )  # fmt: skip
        assert given.code == 0, given
    on_b = ("--council", "tinh_b")
    for args in (
        ("score", d, "--member", "b_chair", "--a", "30", "--b", "20", "--c", "25", *on_b),
        ("score", d, "--close", *on_b),
        ("score", d, "--rescore", "--reason", "làm lại", *on_b),
    ):
        message = refused(ws, 6, "permission_denied", *args, user="b_chair")
        assert "council tinh's" in message, message
    # the round is tinh's: its chair need not name the council again
    closed = ws.run("score", d, "--close", "--json", user="chair", now=T_SCORE)
    result = closed_result(closed, "province")
    assert result["present"] == sorted(PROVINCE_PRESENT)
