"""Who may fire a trigger: every reason against is named, so one answer tells the whole story."""

from __future__ import annotations

from conftest import WORKFLOWS

from ocop_workflow.config import User
from ocop_workflow.definitions import Registry, TransitionDef
from ocop_workflow.engine import permission_problems

WF = Registry(WORKFLOWS).get("ocop-1489")
DOSSIER = {"commune": "Ia Le", "producer": "HTX Cà phê Ia Le"}


def user(key: str, role: str, communes: str, organisation: str | None = None) -> User:
    return User(key, key, frozenset({role}), frozenset({communes}), organisation=organisation)


def t(trigger: str, state: str) -> TransitionDef:
    found = WF.transition(trigger, state)
    assert found is not None
    return found


def test_wrong_role_and_wrong_commune_are_both_named() -> None:
    # a producer of another commune, asked to accept an idea (a commune officer's step)
    outsider = user("htx_phang", "producer", "Ia Phang", "HTX Ia Phang")
    problems = permission_problems(outsider, t("accept_idea", "registration"), DOSSIER)
    assert len(problems) == 2, problems
    assert "lacks the role for 'accept_idea'" in problems[0]
    assert "commune_officer" in problems[0]
    assert "does not cover commune Ia Le" in problems[1]


def test_a_producer_of_another_commune_and_organisation_hears_both() -> None:
    other = user("htx_phang", "producer", "Ia Phang", "HTX Ia Phang")
    problems = permission_problems(other, t("submit_dossier", "production"), DOSSIER)
    assert len(problems) == 2, problems
    assert "does not cover commune Ia Le" in problems[0]
    assert "acts for HTX Ia Phang, not for HTX Cà phê Ia Le" in problems[1]


def test_the_right_officer_of_the_right_commune_has_no_problem() -> None:
    lan = user("lan", "commune_officer", "Ia Le")
    assert permission_problems(lan, t("accept_idea", "registration"), DOSSIER) == []


def test_nobody_but_the_scheduler_fires_expire_whatever_their_roles() -> None:
    head = User(
        "head", "head", frozenset({"province_officer", "commune_officer"}), frozenset({"*"})
    )
    (why,) = permission_problems(head, t("expire", "promotion"), DOSSIER)
    assert "only the scheduler (system)" in why


def test_the_scheduler_itself_may_fire_expire_on_any_commune() -> None:
    from ocop_workflow.engine import SYSTEM

    assert permission_problems(SYSTEM, t("expire", "promotion"), DOSSIER) == []
