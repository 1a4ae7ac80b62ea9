"""``ocop workflow migrate``: dossiers in flight moved from QĐ 148 to QĐ 1489 (and in-place edits).

Dossiers are set up through the library (fast); the migration itself, the histories and the audit
verification are the real ``ocop`` commands in a subprocess.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import MANDATORY_DOCUMENTS, WORKFLOWS, Workspace, dump_database

from ocop_workflow import documents

PRODUCER = "HTX Cà phê Ia Le"
MIGRATE = ("workflow", "migrate", "--from", "ocop-148", "--to", "ocop-1489", "--json")
SHIPPED_PLAN = ("--plan", "ocop-148-to-ocop-1489")
NOW = "2025-08-04T09:00:00+07:00"


def on_148(
    ws: Workspace,
    product: str,
    moves: list[tuple[str, str]],
    *,
    docs: bool = False,
    reason: str | None = None,
) -> str:
    """A dossier registered under ocop-148 in May 2025, moved by ``moves`` ((user, trigger))."""
    app = ws.app(user="dung", now="2025-05-05T09:00:00+07:00")
    try:
        row = app.engine.register(
            app.actor(),
            product=product,
            producer=PRODUCER,
            commune="Ia Le",
            workflow="ocop-148",
            group="food",
        )
        dossier = str(row["id"])
        producer = app.config.user("htx_iale")
        for user, trigger in moves:
            if trigger == "submit_dossier" and docs:
                for kind in MANDATORY_DOCUMENTS:
                    path = ws.root / f"{dossier}-{kind}.pdf"
                    path.write_text(f"{dossier} {kind}", encoding="utf-8")
                    documents.attach(app.engine, dossier, producer, kind, path)
            app.engine.advance(dossier, trigger, app.config.user(user), reason=reason)
    finally:
        app.store.dispose()
    return dossier


def setup_148(ws: Workspace) -> dict[str, str]:
    district = on_148(
        ws,
        "Cà phê bột",
        [("dung", "accept_idea"), ("dung", "approve_plan"), ("dung", "submit_dossier")],
        docs=True,
    )
    production = on_148(ws, "Cà phê hạt", [("dung", "accept_idea"), ("dung", "approve_plan")])
    rejected = on_148(ws, "Cà phê sữa", [("dung", "reject")], reason="trùng sản phẩm")
    return {"district": district, "production": production, "rejected": rejected}


def test_dry_run_reports_each_dossier_and_writes_nothing(workspace: Workspace) -> None:
    ws = workspace
    ids = setup_148(ws)
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, *SHIPPED_PLAN, "--dry-run", user="hung", now=NOW)
    assert done.code == 0, done
    report = done.json()
    assert report["dry_run"] is True and report["migrated"] == 0 and report["refused"] == 0
    assert len(report["plan_sha256"]) == 64
    by_id = {d["id"]: d for d in report["dossiers"]}
    assert ids["rejected"] not in by_id  # finished under its rules: not migrated
    district = by_id[ids["district"]]
    assert (district["from"], district["to"]) == ("evaluation_district", "evaluation_commune")
    assert district["timers_cancelled"] >= 1
    assert "deadline" in {t["kind"] for t in district["timers_planned"]}
    assert district["documents_missing"] == []
    assert "forward" not in district["guards_failing"]  # the commune forwards without scoring
    production = by_id[ids["production"]]
    assert (production["from"], production["to"]) == ("production", "production")
    assert "submit_dossier" in production["guards_failing"]  # documents not yet attached
    assert dump_database(ws.url) == before


def test_real_run_migrates_each_dossier_audited_and_audit_verify_accepts_it(
    workspace: Workspace,
) -> None:
    ws = workspace
    ids = setup_148(ws)
    done = ws.run(
        *MIGRATE, *SHIPPED_PLAN, "--reason", "QĐ 1489: không còn cấp huyện", user="hung", now=NOW
    )
    assert done.code == 0, done
    assert done.json()["migrated"] == 2

    shown = ws.run("dossier", "show", ids["district"], "--json", check=True).json()
    assert (shown["workflow"], shown["state"]) == ("ocop-1489", "evaluation_commune")
    assert shown["workflow_version"] == "1489/QĐ-TTg"
    history = ws.run("dossier", "history", ids["district"], "--json", check=True).json()
    last = history[-1]
    assert (last["trigger"], last["actor"]) == ("migrate", "hung")
    assert (last["from"], last["to"]) == ("evaluation_district", "evaluation_commune")
    assert last["reason"].startswith("QĐ 1489: không còn cấp huyện — migrate ocop-148")
    assert done.json()["plan_sha256"] in last["reason"]
    timers = ws.run("timers", "list", "--dossier", ids["district"], "--json", check=True).json()
    pending = [t for t in timers if t["status"] == "pending"]
    assert pending and {t["state"] for t in pending} == {"evaluation_commune"}

    verified = ws.run("audit", "verify", "--json")
    assert verified.code == 0 and verified.json()["ok"] is True, verified
    # the officers of the new rules can act on it: the commune forwards to the province
    moved = ws.run(
        "dossier",
        "advance",
        ids["district"],
        "forward",
        "--json",
        user="lan",
        now="2025-08-05T09:00:00+07:00",
    )
    assert moved.code == 0, moved
    assert moved.json()["to"] == "evaluation_province"
    # the rejected dossier stays on its rules
    rejected = ws.run("dossier", "show", ids["rejected"], "--json", check=True).json()
    assert rejected["workflow"] == "ocop-148"
    # and a second run finds nothing left to migrate
    again = ws.run(*MIGRATE, *SHIPPED_PLAN, user="hung", now=NOW).json()
    assert again["dossiers"] == []


def test_an_unmapped_state_refuses_the_whole_migration_exit_4(workspace: Workspace) -> None:
    ws = workspace
    ids = setup_148(ws)
    plan = ws.root / "partial.toml"
    plan.write_text(
        '[plan]\nfrom = "ocop-148"\nto = "ocop-1489"\nsame_names = true\n', encoding="utf-8"
    )
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 4, done
    report = done.json()
    assert report["refused"] == 1
    refused = next(d for d in report["dossiers"] if d["problems"])
    assert refused["id"] == ids["district"]
    assert "evaluation_district" in refused["problems"][0]
    assert done.stderr.startswith("error: migration refused: 1 dossier(s) cannot be mapped")
    assert dump_database(ws.url) == before


def test_a_bad_plan_is_a_usage_error_and_only_province_officers_migrate(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    setup_148(ws)
    plan = ws.root / "bad.toml"
    plan.write_text(
        '[plan]\nfrom = "ocop-148"\nto = "ocop-1489"\n[states]\nevaluation_district'
        ' = "evaluation_district"\n',
        encoding="utf-8",
    )
    bad = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert bad.code == 2, bad
    assert "'evaluation_district': not a state of ocop-1489" in bad.stderr
    denied = ws.run(*MIGRATE, *SHIPPED_PLAN, user="lan", now=NOW)
    assert denied.code == 6, denied


def on_own_1489(ws: Workspace) -> tuple[Path, str]:
    """The workspace's own copy of the workflow files (to edit) and a dossier on ocop-1489."""
    own = ws.root / "workflows"
    shutil.copytree(WORKFLOWS, own)
    ws.config.write_text(
        ws.config.read_text("utf-8").replace(str(WORKFLOWS), str(own)), encoding="utf-8"
    )
    app = ws.app(user="lan", now="2026-03-02T09:00:00+07:00")
    try:
        row = app.engine.register(app.actor(), product="Cà phê", producer=PRODUCER, commune="Ia Le")
    finally:
        app.store.dispose()
    return own / "ocop-1489.toml", str(row["id"])


def test_a_file_edited_in_place_holds_its_dossiers_until_an_identity_migration(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    path, dossier = on_own_1489(ws)
    # the same version string, one deadline changed: the rules are not the same any more
    path.write_text(
        path.read_text("utf-8").replace("working_days = 15", "working_days = 10", 1),
        encoding="utf-8",
    )

    held = ws.run(
        "dossier", "advance", dossier, "accept_idea", user="lan", now="2026-03-03T09:00:00+07:00"
    )
    assert held.code == 1, held
    assert "changed in place" in held.stderr and "ocop workflow migrate" in held.stderr
    validated = ws.run("workflow", "validate", "--json")
    assert validated.code == 1
    assert any(dossier in p and "changed in place" in p for p in validated.json()["problems"])
    shown = ws.run("workflow", "show", "ocop-1489", "--json", check=True).json()
    assert shown["dossiers_on_other_content"] == [dossier]
    draft = ws.root / "drafts"
    draft.mkdir()
    shutil.copy(path, draft / "ocop-1489.toml")  # a draft elsewhere is no edit in place
    assert ws.run("workflow", "validate", str(draft)).code == 0

    identity = ws.root / "identity.toml"
    identity.write_text(
        '[plan]\nfrom = "ocop-1489"\nto = "ocop-1489"\nsame_names = true\n', encoding="utf-8"
    )
    migrated = ws.run(
        "workflow",
        "migrate",
        "--from",
        "ocop-1489",
        "--to",
        "ocop-1489",
        "--plan",
        str(identity),
        "--json",
        user="hung",
        now="2026-03-03T09:00:00+07:00",
    )
    assert migrated.code == 0, migrated
    assert migrated.json()["migrated"] == 1
    after = ws.run("dossier", "show", dossier, "--json", check=True).json()
    assert after["deadline"]["last_day"] == "2026-03-16"  # 10 working days from 2/3, as edited
    assert ws.run("workflow", "validate").code == 0
    moved = ws.run(
        "dossier", "advance", dossier, "accept_idea", user="lan", now="2026-03-03T10:00:00+07:00"
    )
    assert moved.code == 0, moved
    assert ws.run("audit", "verify").code == 0


def test_the_sweep_still_fires_timers_of_a_dossier_whose_file_changed_in_place(
    sqlite_workspace: Workspace,
) -> None:
    """Officers are held, the scheduler is not: a deadline is never lost to an edit."""
    ws = sqlite_workspace
    path, dossier = on_own_1489(ws)
    path.write_text(path.read_text("utf-8") + "\n# sửa tại chỗ\n", encoding="utf-8")
    swept = ws.run("sweep", "--json", now="2026-03-24T08:00:00+07:00")
    assert swept.code == 0, swept
    assert swept.json()["timers_fired"] >= 1
    warnings = [json.loads(line) for line in swept.stderr.splitlines() if line.startswith("{")]
    assert any(
        w["event"] == "sweep.workflow_content_changed" and w["dossier"] == dossier for w in warnings
    ), swept.stderr


def test_a_plan_renames_and_drops_fields_and_the_history_keeps_the_old_values(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    app = ws.app(user="dung", now="2025-05-05T09:00:00+07:00")
    try:
        dossier = str(
            app.engine.register(
                app.actor(),
                product="Cà phê bột",
                producer=PRODUCER,
                commune="Ia Le",
                workflow="ocop-148",
                data={"producer_phone": "0905 000 111", "note": "hồ sơ cũ"},
            )["id"]
        )
    finally:
        app.store.dispose()
    plan = ws.root / "fields.toml"
    plan.write_text(
        '[plan]\nfrom = "ocop-148"\nto = "ocop-1489"\nsame_names = true\n'
        '[fields]\nrename = { producer_phone = "note" }\ndrop = ["note"]\n',
        encoding="utf-8",
    )
    dry = ws.run(*MIGRATE, "--plan", str(plan), "--dry-run", user="hung", now=NOW).json()
    (move,) = dry["dossiers"]
    assert move["fields_renamed"] == {"producer_phone": "note"}
    assert move["fields_dropped"] == ["note"]
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 0, done
    shown = ws.run("dossier", "show", dossier, "--json", user="hung", check=True).json()
    assert shown["data"]["note"] == "0905 000 111"
    assert "producer_phone" not in shown["data"]
    history = ws.run("dossier", "history", dossier, "--json", user="hung", check=True).json()
    assert history[-1]["data_before"]["data"]["note"] == "hồ sơ cũ"
    assert ws.run("audit", "verify").code == 0
