"""Each rule version carries its own data: product groups, documents, who recognises which stars."""

from __future__ import annotations

import pytest
from conftest import WORKFLOWS, Workspace

from ocop_workflow import demo
from ocop_workflow.definitions import Registry

QD_1048_GROUPS = {
    "Thực phẩm",
    "Đồ uống",
    "Thảo dược",
    "Vải và may mặc",
    "Lưu niệm - nội thất - trang trí",
    "Dịch vụ du lịch nông thôn, bán hàng",
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(WORKFLOWS)


def test_qd_1048_has_its_own_six_product_groups_not_those_of_qd_148(registry: Registry) -> None:
    wf = registry.get("ocop-1048")
    assert set(wf.groups.values()) == QD_1048_GROUPS
    assert set(wf.groups) != set(registry.get("ocop-148").groups)


@pytest.mark.parametrize("name", ["ocop-1048", "ocop-148", "ocop-1489"])
def test_every_group_has_mandatory_documents_a_service_a_site_visit(
    registry: Registry, name: str
) -> None:
    wf = registry.get(name)
    for group in wf.groups:
        required = wf.required_documents(group)
        assert "registration_form" in required and "business_plan" in required
        service = "tourism" in group
        assert ("site_visit" in required) is service, group
        assert ("samples" in required) is not service, group
    for kind in (k for kinds in wf.mandatory_documents.values() for k in kinds):
        assert kind in wf.documents


def test_under_qd_1048_the_province_recognises_3_stars_not_the_district(
    registry: Registry,
) -> None:
    wf = registry.get("ocop-1048")
    assert wf.state("evaluation_district").recognise_stars == ()
    assert wf.transition("certify", "evaluation_district") is None
    assert wf.state("evaluation_province").recognise_stars == (3, 4)
    assert wf.state("evaluation_district").forward_min_score == 50
    # under QĐ 148 the district recognises 3 stars
    assert registry.get("ocop-148").state("evaluation_district").recognise_stars == (3,)


def test_the_demo_products_use_the_groups_of_the_rules_they_run_under(registry: Registry) -> None:
    groups = registry.get("ocop-1048").groups
    for product in [*demo.NEW, *demo.UPGRADES]:
        assert product.group in groups, product


def test_dossier_show_says_a_period_in_months_runs_through_the_corresponding_day(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    app = ws.app(user="lan", now="2026-03-02T09:00:00+07:00")
    try:
        actor = app.actor()
        row = app.engine.register(
            actor, product="Cà phê bột", producer="HTX Cà phê Ia Le", commune="Ia Le"
        )
        dossier = str(row["id"])
        app.engine.advance(dossier, "accept_idea", actor)
        app.engine.advance(dossier, "approve_plan", actor)  # production: 6 months
    finally:
        app.store.dispose()
    shown = ws.run("dossier", "show", dossier, "--json", user="lan", check=True).json()
    assert shown["deadline"]["last_day"] == "2026-09-02"
    assert shown["deadline_at"].startswith("2026-09-03T00:00:00")
    text = ws.run("dossier", "show", dossier, user="lan", check=True).stdout
    assert "to the end of 2026-09-02" in text
    assert "Bộ luật Dân sự 2015, Điều 147–148" in text
