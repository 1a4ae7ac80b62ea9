"""One policy decides who may do what, whichever way in: register, import, advance, score, reads.

The review's examples are here: a producer importing a certified 5★ dossier, and the chair of a
council covering one commune scoring (and closing) a dossier of another.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import pytest
from conftest import Workspace, dump_database, write_config

from ocop_workflow.errors import PermissionDenied

T_IMPORT = "2026-03-02T09:00:00+07:00"
PRODUCER = "HTX Cà phê Ia Le"


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


CERTIFIED_HEADER = [
    "id", "product", "producer", "commune", "group", "state",
    "stars", "score", "certificate_no", "valid_until",
]  # fmt: skip
CERTIFIED_ROW = [
    "OCOP-FAKE-1", "Cà phê bột Ia Le", PRODUCER, "Ia Le", "food", "promotion",
    "5", "99", "GCN-FAKE-001", "2099-12-31",
]  # fmt: skip


def test_a_producer_importing_a_certified_five_star_dossier_is_refused_with_exit_6_and_nothing_written(  # noqa: E501
    workspace: Workspace,
) -> None:
    ws = workspace
    sheet = write_csv(ws.root / "tu-cap.csv", CERTIFIED_HEADER, [CERTIFIED_ROW])
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), user="htx_iale", now=T_IMPORT)
    assert result.code == 6, str(result)
    assert "Traceback" not in result.stderr
    assert "records migration" in result.stderr and "records_officer" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert dump_database(ws.url) == before


def test_an_officer_without_the_records_role_may_not_place_a_dossier_mid_cycle(
    workspace: Workspace,
) -> None:
    ws = workspace
    sheet = write_csv(
        ws.root / "dang-danh-gia.csv",
        ["product", "producer", "commune", "state"],
        [["Cà phê bột Ia Le", PRODUCER, "Ia Le", "evaluation_province"]],
    )
    before = dump_database(ws.url)
    for officer in ("lan", "hung", "minh"):
        result = ws.run("import", str(sheet), user=officer, now=T_IMPORT)
        assert result.code == 6, str(result)
        assert "state evaluation_province" in result.stderr
    assert dump_database(ws.url) == before


def test_a_producer_imports_new_ideas_of_its_own_organisation_and_communes_only(
    workspace: Workspace,
) -> None:
    ws = workspace
    mine = write_csv(
        ws.root / "y-tuong.csv",
        ["product", "producer", "commune", "group"],
        [["Cà phê bột Ia Le", PRODUCER, "Ia Le", "food"]],
    )
    report = ws.run("import", str(mine), "--json", user="htx_iale", now=T_IMPORT)
    assert report.code == 0, str(report)
    (dossier_id,) = report.json()["ids"]
    shown = ws.run("dossier", "show", dossier_id, "--json").json()
    assert shown["state"] == "registration"

    before = dump_database(ws.url)
    others = write_csv(
        ws.root / "cua-nguoi-khac.csv",
        ["product", "producer", "commune"],
        [
            ["Hồ tiêu đen", "HTX Hồ tiêu Ia Le", "Ia Le"],  # another organisation
            ["Cà phê hạt", PRODUCER, "Ia Phang"],  # a commune it does not cover
        ],
    )
    result = ws.run("import", str(others), user="htx_iale", now=T_IMPORT)
    assert result.code == 6, str(result)
    lines = [line for line in result.stderr.splitlines() if line.startswith("cua-nguoi-khac")]
    assert len(lines) == 2, result.stderr
    assert "not for HTX Hồ tiêu Ia Le" in lines[0]
    assert "does not cover commune Ia Phang" in lines[1]
    assert dump_database(ws.url) == before


def test_a_records_officer_migrates_a_dossier_audited_with_the_file_sha256_and_line(
    workspace: Workspace,
) -> None:
    ws = workspace
    row = [*CERTIFIED_ROW[:6], "4", "75", "GCN-2024-014", "2027-06-30"]
    row[0] = "OCOP-2024-0014"
    sheet = write_csv(ws.root / "so-lieu-cu.csv", CERTIFIED_HEADER, [row])
    digest = hashlib.sha256(sheet.read_bytes()).hexdigest()
    result = ws.run("import", str(sheet), "--json", user="records", now=T_IMPORT)
    assert result.code == 0, str(result)

    shown = ws.run("dossier", "show", "OCOP-2024-0014", "--json").json()
    assert (shown["state"], shown["data"]["stars"]) == ("promotion", 4)
    assert shown["entered"] == {
        "by": "import",
        "actor": "records",
        "at": shown["entered"]["at"],
        "file": "so-lieu-cu.csv",
        "sha256": digest,
        "line": 2,
    }
    text = ws.run("dossier", "show", "OCOP-2024-0014")
    (line,) = [x for x in text.stdout.splitlines() if x.strip().startswith("entered")]
    assert f"import by records from so-lieu-cu.csv line 2 (sha256 {digest[:12]}" in line

    verified = ws.run("audit", "verify", "--json")
    assert verified.code == 0, str(verified)
    assert verified.json()["imported"] == [
        {"dossier": "OCOP-2024-0014", "file": "so-lieu-cu.csv", "sha256": digest, "line": 2}
    ]
    plain = ws.run("audit", "verify")
    assert "1 dossier(s) entered by import" in plain.stdout, plain.stdout


# --- council scope --------------------------------------------------------------------------------

PHANG_COUNCIL = """
[users.chair_phang]
name = "Chủ tịch Hội đồng Ia Phang"
roles = ["council_chair"]
communes = ["*"]

[users.p1]
name = "Thành viên Ia Phang"
roles = ["council_member"]
communes = ["*"]

[councils.ia_phang]
title = "Hội đồng chỉ của xã Ia Phang"
level = "province"
chair = "chair_phang"
members = ["chair_phang", "p1", "m1"]
communes = ["Ia Phang"]
"""


def test_the_chair_of_a_council_covering_another_commune_may_not_score_or_close_with_council_key(
    tmp_path: Path, db_url: str
) -> None:
    write_config(tmp_path, extra=PHANG_COUNCIL)
    ws = Workspace(tmp_path, db_url)
    ws.run("init", check=True)
    sheet = write_csv(
        ws.root / "dang-danh-gia.csv",
        ["id", "product", "producer", "commune", "group", "state"],
        [["OCOP-IALE-1", "Cà phê bột Ia Le", PRODUCER, "Ia Le", "food", "evaluation_province"]],
    )
    ws.run("import", str(sheet), user="records", now=T_IMPORT, check=True)
    before = dump_database(ws.url)
    for member in ("chair_phang", "p1"):
        result = ws.run(
            "score", "OCOP-IALE-1", "--council", "ia_phang", "--member", member,
            "--a", "38", "--b", "24", "--c", "34", user="chair_phang", now=T_IMPORT,
        )  # fmt: skip
        assert result.code == 6, str(result)
        assert "chair_phang sits on no council covering commune Ia Le" in result.stderr
    # m1 also sits on the province-wide council, but chose the one that does not cover Ia Le
    result = ws.run(
        "score", "OCOP-IALE-1", "--council", "ia_phang", "--member", "m1",
        "--a", "38", "--b", "24", "--c", "34", user="m1", now=T_IMPORT,
    )  # fmt: skip
    assert result.code == 6, str(result)
    assert "council ia_phang does not cover commune Ia Le" in result.stderr
    closed = ws.run("score", "OCOP-IALE-1", "--council", "ia_phang", "--close", user="chair_phang")
    assert closed.code == 6, str(closed)
    rescored = ws.run(
        "score", "OCOP-IALE-1", "--council", "ia_phang", "--rescore", "--reason", "x",
        user="chair_phang",
    )  # fmt: skip
    assert rescored.code == 6, str(rescored)
    assert dump_database(ws.url) == before


# --- in-process: the policy itself -------------------------------------------------------------


def _seed(ws: Workspace) -> Any:
    """Dossiers of two communes and two producers, one before the province council."""
    app = ws.app(now=T_IMPORT)
    engine = app.engine
    users = app.config.users
    engine.register(
        users["lan"], product="A", producer=PRODUCER, commune="Ia Le", dossier_id="D-IALE"
    )
    engine.register(
        users["tuan"],
        product="B",
        producer="HTX Ia Phang",
        commune="Ia Phang",
        dossier_id="D-PHANG",
    )
    engine.register(
        users["lan"],
        product="C",
        producer="HTX Hồ tiêu Ia Le",
        commune="Ia Le",
        dossier_id="D-TIEU",
    )
    sheet = write_csv(
        ws.root / "eval.csv",
        ["id", "product", "producer", "commune", "state"],
        [["D-EVAL", "D", "HTX Ia Phang", "Ia Phang", "evaluation_province"]],
    )
    from ocop_workflow.importer import import_file

    import_file(engine, users["records"], sheet)
    return app


def test_reads_filter_and_can_read_agree_for_every_user(workspace: Workspace) -> None:
    import sqlalchemy as sa

    from ocop_workflow.store import dossier_t

    app = _seed(workspace)
    policy = app.engine.policy
    with app.store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(dossier_t))]
    expected = {
        "lan": {"D-IALE", "D-TIEU"},
        "tuan": {"D-PHANG", "D-EVAL"},
        "dung": {"D-IALE", "D-TIEU", "D-PHANG", "D-EVAL"},
        "htx_iale": {"D-IALE"},
        "htx_other": {"D-TIEU"},
        "m1": {"D-EVAL"},  # a member of the province council: what is before it
        "chair": {"D-EVAL"},
        "h1": set(),  # the district council has nothing before it
        "hung": {"D-IALE", "D-TIEU", "D-PHANG", "D-EVAL"},
        "minh": {"D-IALE", "D-TIEU", "D-PHANG", "D-EVAL"},
        "auditor": {"D-IALE", "D-TIEU", "D-PHANG", "D-EVAL"},
    }
    for key, ids in expected.items():
        user = app.config.users[key]
        readable = {r["id"] for r in rows if policy.can_read(user, r)}
        assert readable == ids, key
        clause = policy.read_filter(user)
        query = sa.select(dossier_t.c.id)
        if clause is not None:
            query = query.where(clause)
        with app.store.read() as conn:
            assert set(conn.execute(query).scalars()) == ids, key


def test_an_auditor_reads_but_may_not_register_attach_or_advance(
    sqlite_workspace: Workspace,
) -> None:
    app = _seed(sqlite_workspace)
    auditor = app.config.users["auditor"]
    before = dump_database(sqlite_workspace.url)
    with pytest.raises(PermissionDenied):
        app.engine.register(auditor, product="X", producer=PRODUCER, commune="Ia Le")
    with pytest.raises(PermissionDenied):
        app.engine.advance("D-IALE", "accept_idea", auditor)
    scan = sqlite_workspace.root / "scan.pdf"
    scan.write_bytes(b"%PDF")
    from ocop_workflow.documents import attach

    with pytest.raises(PermissionDenied):
        attach(app.engine, "D-IALE", auditor, "registration_form", scan)
    assert dump_database(sqlite_workspace.url) == before


def test_amend_refuses_a_change_no_rule_knows_and_writes_nothing(
    sqlite_workspace: Workspace,
) -> None:
    app = _seed(sqlite_workspace)
    before = dump_database(sqlite_workspace.url)

    def forge(row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "stars": 5}

    with pytest.raises(PermissionDenied, match="no rule lets anyone make the change 'forge'"):
        app.engine.amend("D-IALE", app.config.users["minh"], "forge", forge)
    assert dump_database(sqlite_workspace.url) == before


def test_insert_new_asks_the_policy_even_when_called_directly(
    sqlite_workspace: Workspace,
) -> None:
    """A NewDossier checked for one user cannot be written as another."""
    app = _seed(sqlite_workspace)
    users = app.config.users
    new = app.engine.check_new(
        users["lan"],
        product="E",
        producer=PRODUCER,
        commune="Ia Le",
        group=None,
        workflow=None,
        dossier_id="D-NEW",
        values={},
    )
    before = dump_database(sqlite_workspace.url)
    with app.store.write() as conn, pytest.raises(PermissionDenied):
        app.engine.insert_new(conn, new, users["tuan"], app.now)
    assert dump_database(sqlite_workspace.url) == before


def test_the_certificate_numbers_go_with_the_transition_that_asks_for_them(
    workspace: Workspace,
) -> None:
    """``certificate_no`` and ``decision_no`` are accepted with a transition that issues the
    certificate or whose ``certificate_details`` guard asks for them — a workflow may ask
    for the numbers on a transition with no validity of its own — and with no other."""
    from dataclasses import replace

    app = workspace.app()
    policy, lan = app.engine.policy, app.config.user("lan")
    certify = next(t for t in app.registry.get("ocop-1489").transitions if t.trigger == "certify")
    numbers = ["certificate_no", "decision_no"]
    policy.check_data(lan, certify, numbers)
    asks = replace(certify, certificate_months=None)
    assert "certificate_details" in asks.guards
    policy.check_data(lan, asks, numbers)
    neither = replace(asks, guards=("scoring_closed",))
    with pytest.raises(PermissionDenied, match="certificate_no, decision_no"):
        policy.check_data(lan, neither, numbers)
    policy.check_data(lan, neither, ["note"])  # any other field is no business of this rule
