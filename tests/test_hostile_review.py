"""A hostile review: what an outsider's values do at every edge nobody wrote down.

Each test is one way in that an attacker (or a careless user) could use, and the behaviour the
office relies on: a one-line error with the documented exit code and the database exactly as it
was — never a traceback, never a hang, never a rule walked around.
"""

from __future__ import annotations

from pathlib import Path

from conftest import Workspace, dump_database
from test_rule_migration import MIGRATE, NOW, on_148

PLAN_HEAD = '[plan]\nfrom = "ocop-148"\nto = "ocop-1489"\n'


def _plan(ws: Workspace, body: str, name: str = "plan.toml") -> Path:
    path = ws.root / name
    path.write_text(PLAN_HEAD + body, encoding="utf-8")
    return path


# --- workflow migrate: a plan is a records change, never a shortcut through the cycle ---------


def test_a_migration_plan_cannot_certify_a_dossier_by_mapping_it_to_a_later_stage(
    workspace: Workspace,
) -> None:
    ws = workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea")])  # in business_plan
    plan = _plan(ws, '[states]\nbusiness_plan = "promotion"\n')
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 2, done
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: --plan")
    assert "business_plan = 'promotion'" in done.stderr and "stage" in done.stderr
    assert dump_database(ws.url) == before


def test_a_migration_plan_cannot_finish_a_dossier_by_mapping_it_to_a_final_state(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea"), ("dung", "approve_plan")])
    plan = _plan(ws, '[states]\nproduction = "closed"\n')
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 2, done
    assert "production = 'closed'" in done.stderr and "final" in done.stderr
    assert dump_database(ws.url) == before


def test_a_migration_plan_cannot_turn_a_producers_field_into_a_protected_one(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    plan = _plan(ws, 'same_names = true\n[fields]\nrename = { note = "stars" }\n')
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 2, done
    assert "protected" in done.stderr


def test_a_migration_refuses_a_value_the_new_rules_would_refuse(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    dossier = on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    plan = _plan(ws, 'same_names = true\n[fields]\nrename = { note = "producer_email" }\n')
    ws.run(
        "dossier",
        "advance",
        dossier,
        "approve_plan",
        "--set",
        "note=không phải email",
        user="dung",
        now="2025-05-06T09:00:00+07:00",
        check=True,
    )
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 4, done
    assert "producer_email" in done.stderr and "e-mail" in done.stderr
    assert dump_database(ws.url) == before
