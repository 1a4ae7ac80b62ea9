"""Notification texts, in Vietnamese, for the people who must act on a dossier.

Each message names the product, the producer, the commune, the state (its Vietnamese label), the
deadline in local time and what to do next, so that a recipient can act without opening the
system. Kinds: reminder, deadline, escalation, expiry_notice, expiry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from .definitions import StateDef, WorkflowDef

_SUBJECTS = {
    "reminder": "[OCOP] Nhắc hạn: {product} — {state}, hạn {deadline}",
    "deadline": "[OCOP] Đến hạn: {product} — {state} chưa hoàn thành",
    "escalation": "[OCOP] Báo cáo cấp trên: {product} quá hạn — {state}",
    "expiry_notice": "[OCOP] Giấy chứng nhận OCOP sắp hết hiệu lực: {product} ({deadline})",
    "expiry": "[OCOP] Giấy chứng nhận OCOP đã hết hiệu lực: {product}",
}

_LEADS = {
    "reminder": "Hồ sơ sau sắp đến hạn xử lý.",
    "deadline": "Hồ sơ sau đã đến hạn mà chưa được xử lý.",
    "escalation": "Hồ sơ sau đã quá hạn và được báo cáo lên cấp trên.",
    "expiry_notice": (
        "Giấy chứng nhận sản phẩm OCOP sau sẽ hết hiệu lực. Đề nghị chủ thể nộp hồ sơ đánh giá "
        "lại trước ngày hết hạn."
    ),
    "expiry": "Giấy chứng nhận sản phẩm OCOP sau đã hết hiệu lực vì chưa được đánh giá lại.",
}

KINDS = tuple(_SUBJECTS)
#: About a certificate rather than an office deadline: they cite the certificate's validity and
#: always reach its producer, whatever state the dossier is in.
CERTIFICATE_KINDS = frozenset({"expiry_notice", "expiry"})


def local_deadline(deadline_at: datetime | None, tz: tzinfo) -> str:
    """A deadline as an officer reads it: "hết ngày 20/03/2026" when it falls at midnight."""
    if deadline_at is None:
        return "—"
    local = deadline_at.astimezone(tz)
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return "hết ngày " + (local - timedelta(days=1)).strftime("%d/%m/%Y")
    return local.strftime("%H:%M %d/%m/%Y")


def compose(
    kind: str,
    *,
    workflow: WorkflowDef,
    state: StateDef,
    dossier: Mapping[str, Any],
    deadline_at: datetime | None,
    now: datetime,
    tz: tzinfo,
) -> tuple[str, str]:
    """(subject, body) of one notification."""
    deadline = local_deadline(deadline_at, tz)
    fill = {"product": dossier["product"], "state": state.label_vi, "deadline": deadline}
    subject = _SUBJECTS[kind].format(**fill)
    todo = [
        f"  - {t.label_vi or t.trigger} (ocop dossier advance {dossier['id']} {t.trigger}; "
        f"{', '.join(t.roles)})"
        for t in workflow.transitions_from(state.name)
        if t.remind
    ]
    lines = [
        _LEADS[kind],
        "",
        f"Mã hồ sơ: {dossier['id']}",
        f"Sản phẩm: {dossier['product']}",
        f"Chủ thể: {dossier['producer']}",
        f"Xã: {dossier['commune']}",
        f"Bước hiện tại: {state.label_vi} ({state.name})",
        f"Hạn: {deadline}",
    ]
    basis = _basis(state, kind)
    if basis:
        lines.append(f"Căn cứ: {basis}")
    if deadline_at is not None and deadline_at < now:
        late_days = (now - deadline_at).days
        lines.append(f"Đã quá hạn: {late_days} ngày")
    if todo:
        lines += ["", "Việc cần làm:", *todo]
    lines += ["", "— Hệ thống OCOP (thư tự động, vui lòng không trả lời)"]
    return subject, "\n".join(lines) + "\n"


def _basis(state: StateDef, kind: str) -> str | None:
    """The legal basis of the deadline this message is about.

    A state re-evaluating a certified product has its own office deadline and also watches the
    certificate; an expiry notice must cite the certificate's validity, not the office target.
    """
    about_certificate = kind in CERTIFICATE_KINDS
    for spec in (state.deadline, *state.watches):
        if spec is not None and spec.certificate == about_certificate:
            return spec.basis
    return None
