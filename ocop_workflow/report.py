"""Progress against the plan: ``[targets.<year>]`` measured on the audit trail.

The audit trail is the programme's event log, so every figure is counted from it: a dossier
registered in the year is a new product, an ``upgrade`` entry is an upgrade, a ``certify`` entry
with its stars is a recognition. What the engine cannot see (training, trade fairs) is not a
metric; a target naming one is refused with the list of known metrics.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from typing import Any

import sqlalchemy as sa

from .config import Config
from .definitions import Registry
from .errors import ConfigError
from .store import Store, audit_t, dossier_t


@dataclass
class YearFacts:
    """What happened to each dossier during one year, read once from the audit trail."""

    registered: set[str] = field(default_factory=set)
    upgraded: set[str] = field(default_factory=set)
    renewed: set[str] = field(default_factory=set)
    certified: dict[str, int] = field(default_factory=dict)  # dossier -> highest stars
    certified_after_upgrade: dict[str, int] = field(default_factory=dict)
    reviewed: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    entries: int = 0

    @property
    def supported(self) -> set[str]:
        return self.registered | self.upgraded | self.renewed


#: The OCOP cycle's stages in order (interface.md): reports list stages this way.
STAGES = ("registration", "business_plan", "production", "evaluation", "promotion", "review")

#: metric name → (Vietnamese label, which dossiers count)
METRICS: dict[str, tuple[str, Callable[[YearFacts], set[str]]]] = {
    "products_supported": (
        "Sản phẩm được hỗ trợ trong chu trình (mới và nâng cấp)",
        lambda f: f.supported,
    ),
    "new_products": ("Sản phẩm mới tham gia chu trình", lambda f: set(f.registered)),
    "new_products_3_stars": (
        "Sản phẩm mới đạt từ 3 sao trở lên",
        lambda f: {d for d, s in f.certified.items() if s >= 3 and d in f.registered},
    ),
    "upgrades": ("Sản phẩm đăng ký nâng hạng", lambda f: set(f.upgraded)),
    "upgrades_to_4_stars": (
        "Sản phẩm nâng cấp lên 4 sao",
        lambda f: {d for d, s in f.certified_after_upgrade.items() if s >= 4},
    ),
    "certified": ("Sản phẩm được công nhận OCOP", lambda f: set(f.certified)),
    "certified_4_stars": (
        "Sản phẩm được công nhận từ 4 sao",
        lambda f: {d for d, s in f.certified.items() if s >= 4},
    ),
    "reviewed": ("Sản phẩm được sơ kết, giám sát", lambda f: set(f.reviewed)),
    "renewals": ("Sản phẩm đánh giá lại", lambda f: set(f.renewed)),
}
#: Targets counted over producers rather than dossiers.
ORGANISATION_METRICS = {"organisations": "Tổ chức kinh tế tham gia chu trình"}


def year_bounds(year: int, tz: tzinfo) -> tuple[datetime, datetime]:
    start = datetime.combine(date(year, 1, 1), time(0), tzinfo=tz)
    end = datetime.combine(date(year + 1, 1, 1), time(0), tzinfo=tz)
    return start, end


def read_year(store: Store, year: int, tz: tzinfo) -> YearFacts:
    start, end = year_bounds(year, tz)
    facts = YearFacts()
    query = (
        sa.select(audit_t.c.dossier_id, audit_t.c.trigger, audit_t.c.data_after)
        .where(audit_t.c.at >= start, audit_t.c.at < end)
        .order_by(audit_t.c.dossier_id, audit_t.c.seq)
    )
    with store.read() as conn:
        for row in conn.execution_options(yield_per=2000).execute(query):
            facts.entries += 1
            dossier, trigger = row.dossier_id, row.trigger
            if trigger == "register":
                facts.registered.add(dossier)
            elif trigger == "upgrade":
                facts.upgraded.add(dossier)
            elif trigger == "renew":
                facts.renewed.add(dossier)
            elif trigger == "certify":
                stars = json.loads(row.data_after)["data"].get("certificate_stars") or 0
                facts.certified[dossier] = max(stars, facts.certified.get(dossier, 0))
                if dossier in facts.upgraded:
                    facts.certified_after_upgrade[dossier] = stars
            elif trigger == "start_review":
                facts.reviewed.add(dossier)
            elif trigger == "expire":
                facts.expired.add(dossier)
            elif trigger == "revoke":
                facts.revoked.add(dossier)
    return facts


def progress(
    store: Store, registry: Registry, config: Config, year: int, now: datetime, tz: tzinfo
) -> dict[str, Any]:
    """The progress report of ``year`` as one document (the table, CSV, XLSX, HTML read it)."""
    targets = config.targets.get(year, {})
    unknown = [k for k in targets if k not in METRICS and k not in ORGANISATION_METRICS]
    if unknown:
        known = ", ".join([*METRICS, *ORGANISATION_METRICS])
        raise ConfigError(
            f"config key 'targets.{year}.{unknown[0]}': unknown metric (known: {known})"
        )
    facts = read_year(store, year, tz)
    dossiers = _dossiers(store, facts.supported)
    communes = sorted({d["commune"] for d in dossiers.values()})
    rows = []
    names = list(targets) or [*METRICS, *ORGANISATION_METRICS]
    for name in names:
        if name in ORGANISATION_METRICS:
            label = ORGANISATION_METRICS[name]
            counted = {d["producer"] for d in dossiers.values()}
            by_commune = {
                c: len({d["producer"] for d in dossiers.values() if d["commune"] == c})
                for c in communes
            }
            by_stage = _organisations_by_stage(dossiers.values())
        else:
            label, select = METRICS[name]
            members = select(facts)
            counted = members
            by_commune = {
                c: sum(1 for d in members if dossiers.get(d, {}).get("commune") == c)
                for c in communes
            }
            by_stage = _count_by_stage(dossiers[d]["stage"] for d in members if d in dossiers)
        target = targets.get(name)
        reached = len(counted)
        rows.append(
            {
                "metric": name,
                "label": label,
                "target": target,
                "reached": reached,
                "left": None if target is None else max(target - reached, 0),
                "done": None if target is None else reached >= target,
                "by_commune": by_commune,
                "by_stage": by_stage,
            }
        )
    by_state: dict[str, int] = defaultdict(int)
    for d in dossiers.values():
        by_state[d["state"]] += 1
    return {
        "year": year,
        "generated_at": now.astimezone(tz).isoformat(),
        "targets": rows,
        "communes": communes,
        "stages": _ordered({*STAGES, *(d["stage"] for d in dossiers.values())}),
        "by_stage": _count_by_stage(d["stage"] for d in dossiers.values()),
        "by_state": dict(by_state),
        "overdue": overdue(store, registry, now, tz),
        "stuck": stuck(store, registry, now, tz),
        "dossiers": len(dossiers),
        "audit_entries": facts.entries,
    }


def _count_by_stage(stages: Iterable[str]) -> dict[str, int]:
    """How many of the counted dossiers are in each stage now, in the cycle's order."""
    counts: dict[str, int] = defaultdict(int)
    for stage in stages:
        counts[stage] += 1
    return {stage: counts[stage] for stage in _ordered(counts)}


def _organisations_by_stage(dossiers: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Each organisation once, at the furthest stage any of its dossiers has reached."""
    furthest: dict[str, str] = {}
    for d in dossiers:
        known = furthest.get(d["producer"])
        if known is None or _rank(d["stage"]) > _rank(known):
            furthest[d["producer"]] = d["stage"]
    return _count_by_stage(furthest.values())


def _rank(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def _ordered(stages: Iterable[str]) -> list[str]:
    return sorted(stages, key=lambda s: (_rank(s), s))


def _dossiers(store: Store, ids: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    wanted = sorted(ids)
    with store.read() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for row in conn.execute(sa.select(dossier_t).where(dossier_t.c.id.in_(chunk))):
                out[row.id] = dict(row._mapping)
    return out


def _brief(row: Any, label: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "product": row.product,
        "commune": row.commune,
        "state": row.state,
        "state_label": label,
    }


def overdue(store: Store, registry: Registry, now: datetime, tz: tzinfo) -> list[dict[str, Any]]:
    """Dossiers past their deadline, most late first, with how late (days)."""
    query = (
        sa.select(dossier_t).where(dossier_t.c.deadline_at <= now).order_by(dossier_t.c.deadline_at)
    )
    out = []
    with store.read() as conn:
        for row in conn.execute(query):
            state = registry.state_of(row.workflow, row.state)
            if state is None or state.final:
                continue
            out.append(
                {
                    **_brief(row, state.label_vi),
                    "deadline_at": row.deadline_at.astimezone(tz).isoformat(),
                    "days_late": round((now - row.deadline_at).total_seconds() / 86400, 1),
                }
            )
    return out


def stuck(
    store: Store, registry: Registry, now: datetime, tz: tzinfo, limit: int = 10
) -> list[dict[str, Any]]:
    """The dossiers still being worked on that have been longest in their current state.

    Certified products (promotion, review) wait by design and are left out.
    """
    query = (
        sa.select(dossier_t)
        .where(dossier_t.c.stage.notin_(("promotion", "review")))
        .order_by(dossier_t.c.state_entered_at)
    )
    out: list[dict[str, Any]] = []
    with store.read() as conn:
        for row in conn.execution_options(yield_per=500).execute(query):
            state = registry.state_of(row.workflow, row.state)
            if state is None or state.final:
                continue
            out.append(
                {
                    **_brief(row, state.label_vi),
                    "since": row.state_entered_at.astimezone(tz).isoformat(),
                    "days": round((now - row.state_entered_at).total_seconds() / 86400, 1),
                }
            )
            if len(out) == limit:
                break
    return out


def write_xlsx(report: Mapping[str, Any], path: Any) -> None:
    """One workbook: targets (with a column per commune), stages, overdue, stuck."""
    from openpyxl import Workbook

    from .exports import xlsx_row

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"Tiến độ {report['year']}"
    communes = report["communes"]
    stage_names = report["stages"]
    sheet.append(
        xlsx_row(
            sheet, ["Chỉ tiêu", "Nội dung", "Kế hoạch", "Đạt", "Còn lại", *communes, *stage_names]
        )
    )
    for row in report["targets"]:
        sheet.append(
            xlsx_row(
                sheet,
                [
                    row["metric"],
                    row["label"],
                    row["target"],
                    row["reached"],
                    row["left"],
                    *[row["by_commune"].get(c, 0) for c in communes],
                    *[row["by_stage"].get(st, 0) for st in stage_names],
                ],
            )
        )
    stages = book.create_sheet("Giai đoạn")
    stages.append(xlsx_row(stages, ["Giai đoạn", "Số hồ sơ"]))
    for stage, count in report["by_stage"].items():
        stages.append(xlsx_row(stages, [stage, count]))
    late = book.create_sheet("Quá hạn")
    late.append(xlsx_row(late, ["Mã hồ sơ", "Sản phẩm", "Xã", "Bước", "Hạn", "Số ngày quá hạn"]))
    for row in report["overdue"]:
        late.append(
            xlsx_row(
                late,
                [
                    row["id"],
                    row["product"],
                    row["commune"],
                    row["state_label"],
                    row["deadline_at"],
                    row["days_late"],
                ],
            )
        )
    slow = book.create_sheet("Tồn đọng lâu nhất")
    slow.append(xlsx_row(slow, ["Mã hồ sơ", "Sản phẩm", "Xã", "Bước", "Từ", "Số ngày"]))
    for row in report["stuck"]:
        slow.append(
            xlsx_row(
                slow,
                [
                    row["id"],
                    row["product"],
                    row["commune"],
                    row["state_label"],
                    row["since"],
                    row["days"],
                ],
            )
        )
    book.save(path)


def target_rows_for_csv(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    communes = report["communes"]
    return [
        {
            "metric": r["metric"],
            "label": r["label"],
            "target": r["target"],
            "reached": r["reached"],
            "left": r["left"],
            **{f"commune:{c}": r["by_commune"].get(c, 0) for c in communes},
            **{f"stage:{st}": r["by_stage"].get(st, 0) for st in report["stages"]},
        }
        for r in report["targets"]
    ]
