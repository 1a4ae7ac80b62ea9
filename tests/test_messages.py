"""The Vietnamese notification texts: what a recipient reads must be right without the system."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import WORKFLOWS

from ocop_workflow import messages
from ocop_workflow.definitions import Registry

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DOSSIER = {
    "id": "IALE-0007",
    "product": "Mật ong rừng Ia Le",
    "producer": "HTX Ia Le",
    "commune": "Ia Le",
}


def body(workflow: str, state: str, kind: str, deadline: datetime | None = None) -> str:
    wf = Registry(WORKFLOWS).get(workflow)
    _, text = messages.compose(
        kind,
        workflow=wf,
        state=wf.state(state),
        dossier=DOSSIER,
        deadline_at=deadline,
        now=NOW,
        tz=TZ,
    )
    return text


def todo(text: str) -> str:
    return text.split("Việc cần làm:")[1] if "Việc cần làm:" in text else ""


@pytest.mark.parametrize("workflow", ["ocop-1489", "ocop-148", "ocop-1048"])
def test_certificate_notices_never_list_system_or_sanction_triggers_as_work_to_do(
    workflow: str,
) -> None:
    text = body(workflow, "promotion", "expiry_notice", datetime(2026, 4, 1, tzinfo=UTC))
    work = todo(text)
    assert f"advance {DOSSIER['id']} renew;" in work  # the producer asks for re-evaluation
    for not_a_task in ("expire", "revoke", "withdraw", "upgrade"):
        assert f"advance {DOSSIER['id']} {not_a_task};" not in work, (not_a_task, work)


def test_expiry_notice_during_re_evaluation_cites_the_certificate_not_the_office_deadline() -> None:
    wf = Registry(WORKFLOWS).get("ocop-1489")
    state = wf.state("evaluation_province")
    assert state.deadline is not None and state.watches
    notice = body("ocop-1489", "evaluation_province", "expiry_notice", NOW)
    reminder = body("ocop-1489", "evaluation_province", "reminder", NOW)
    assert f"Căn cứ: {state.watches[0].basis}" in notice
    assert state.deadline.basis not in notice
    assert f"Căn cứ: {state.deadline.basis}" in reminder


def test_a_late_deadline_notice_says_how_many_days_late_and_the_local_last_day() -> None:
    # midnight local time on 27/02 closes the working day of 26/02
    deadline = datetime(2026, 2, 26, 17, 0, tzinfo=UTC)
    text = body("ocop-1489", "business_plan", "deadline", deadline)
    assert "Hạn: hết ngày 26/02/2026" in text
    assert "Đã quá hạn: 3 ngày" in text
    assert "Mật ong rừng Ia Le" in text and "Xã: Ia Le" in text
