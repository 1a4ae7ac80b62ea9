"""``ocop report html``: the year on one self-contained page (no network, inline SVG).

A district head should understand the year at a glance: how far each plan target got, how many
dossiers reached each stage (the funnel), which deadlines fall in the coming weeks, and for each
dossier a timeline — the states it went through, who moved it, the reminders sent, and whether it
left each state on time. The workflow diagram closes the page.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, timedelta, tzinfo
from html import escape
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from .definitions import WorkflowDef
from .report import progress, year_bounds
from .store import PENDING, audit_t, notification_t, timer_t

if TYPE_CHECKING:
    from .service import Ocop as App

STAGE_COLOURS = {
    "registration": "#8ecae6",
    "business_plan": "#219ebc",
    "production": "#ffb703",
    "evaluation": "#fb8500",
    "promotion": "#2a9d8f",
    "review": "#6a4c93",
}
FINAL_COLOUR = "#9e9e9e"
STAGE_LABELS = {
    "registration": "Đăng ký ý tưởng",
    "business_plan": "Phương án SXKD",
    "production": "Triển khai sản xuất",
    "evaluation": "Đánh giá, phân hạng",
    "promotion": "Xúc tiến thương mại",
    "review": "Sơ kết, giám sát",
}

CSS = """
body{font-family:system-ui,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:24px;color:#222}
h1{margin-bottom:0}h2{margin-top:32px;border-bottom:2px solid #eee;padding-bottom:4px}
.muted{color:#666}table{border-collapse:collapse;margin:8px 0}
td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#fafafa}.num{text-align:right}.done{color:#2a9d8f;font-weight:600}
.left{color:#d62828;font-weight:600}.cal td{width:120px;height:64px;border:1px solid #ddd}
.cal .day{font-size:12px;color:#666}.tag{display:inline-block;border-radius:3px;padding:0 4px;
margin:1px;font-size:11px;color:#fff}.deadline{background:#d62828}.reminder{background:#f4a261}
.expiry,.expiry_notice{background:#6a4c93}.escalation{background:#9d0208}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:12px;
height:12px;margin-right:4px;vertical-align:middle}
"""


def render_year(app: App, year: int, *, weeks: int = 4) -> str:
    tz = ZoneInfo(app.config.timezone)
    store = app.checked_store()
    now = app.now()
    report = progress(store, app.registry, app.config, year, now, tz)
    start, end = year_bounds(year, tz)
    entries = _entries(app, start, end)
    notes = _notifications(app, start, end)
    deadlines = _deadlines(app)
    workflows = sorted({e["workflow"] for e in entries.values()}) or [app.config.default_workflow]
    body = [
        f"<h1>Chương trình OCOP năm {year}</h1>",
        f"<p class='muted'>Báo cáo lập lúc {escape(report['generated_at'][:16].replace('T', ' '))}"
        f" — {report['dossiers']} hồ sơ, {report['audit_entries']} bút toán nhật ký.</p>",
        "<h2 id='targets'>Tiến độ so với kế hoạch</h2>",
        _targets(report),
        "<h2 id='funnel'>Phễu theo giai đoạn</h2>",
        _funnel(entries, app),
        f"<h2 id='calendar'>Lịch hạn {weeks} tuần tới</h2>",
        _calendar(app, now, weeks, tz),
        "<h2 id='timelines'>Diễn biến từng hồ sơ</h2>",
        _legend(),
        _timelines(entries, notes, deadlines, start, end, now, tz),
        "<h2 id='diagram'>Sơ đồ quy trình</h2>",
        *[_diagram(app.registry.get(name)) for name in workflows],
    ]
    return (
        "<!DOCTYPE html><html lang='vi'><head><meta charset='utf-8'>"
        f"<title>OCOP {year}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


# --- data -------------------------------------------------------------------------------------


def _entries(app: App, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """Per dossier with activity in the year: its whole history (to draw where it came from)."""
    store = app.store
    with store.read() as conn:
        active = set(
            conn.execute(
                sa.select(audit_t.c.dossier_id).where(audit_t.c.at >= start, audit_t.c.at < end)
            ).scalars()
        )
        out: dict[str, dict[str, Any]] = {}
        query = sa.select(audit_t).order_by(audit_t.c.dossier_id, audit_t.c.seq)
        for row in conn.execute(query):
            if row.dossier_id not in active:
                continue
            item = out.setdefault(row.dossier_id, {"history": []})
            snapshot = json.loads(row.data_after)
            item["product"] = snapshot["product"]
            item["commune"] = snapshot["commune"]
            item["history"].append(
                {
                    "seq": row.seq,
                    "at": row.at,
                    "trigger": row.trigger,
                    "from": row.from_state,
                    "to": row.to_state,
                    "actor": row.actor,
                    "reason": row.reason,
                }
            )
        from .store import dossier_t

        for row in conn.execute(sa.select(dossier_t.c.id, dossier_t.c.workflow)):
            if row.id in out:
                out[row.id]["workflow"] = row.workflow
    return out


def _notifications(app: App, start: datetime, end: datetime) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, Any]] = set()
    with app.store.read() as conn:
        query = sa.select(notification_t).where(
            notification_t.c.created_at >= start, notification_t.c.created_at < end
        )
        for row in conn.execute(query):
            key = (row.dossier_id, row.timer_id)
            if key in seen:  # one marker per firing, whatever the number of recipients
                continue
            seen.add(key)
            out[row.dossier_id].append(
                {
                    "at": row.created_at,
                    "kind": row.kind,
                    "subject": row.subject,
                    "status": row.status,
                }
            )
    return out


def _deadlines(app: App) -> dict[tuple[str, int], datetime]:
    """The deadline each state entry had: (dossier, entry seq) → deadline instant."""
    out: dict[tuple[str, int], datetime] = {}
    with app.store.read() as conn:
        query = sa.select(timer_t.c.dossier_id, timer_t.c.entry_seq, timer_t.c.due_at).where(
            timer_t.c.kind == "deadline"
        )
        for row in conn.execute(query):
            out[(row.dossier_id, row.entry_seq)] = row.due_at
    return out


# --- sections ---------------------------------------------------------------------------------


def _targets(report: Mapping[str, Any]) -> str:
    rows = []
    for r in report["targets"]:
        target = r["target"]
        share = 1.0 if not target else min(r["reached"] / target, 1.0)
        bar = (
            "<svg width='160' height='14' role='img'>"
            "<rect width='160' height='14' fill='#eee'/>"
            f"<rect width='{160 * share:.0f}' height='14' fill='#2a9d8f'/></svg>"
        )
        left = r["left"]
        status = (
            ""
            if target is None
            else "<span class='done'>đạt</span>"
            if left == 0
            else f"<span class='left'>còn {left}</span>"
        )
        rows.append(
            f"<tr><td>{escape(r['label'])}<br><span class='muted'>{escape(r['metric'])}</span></td>"
            f"<td class='num'>{'' if target is None else target}</td>"
            f"<td class='num'>{r['reached']}</td><td>{bar}</td><td>{status}</td></tr>"
        )
    return (
        "<table><tr><th>Chỉ tiêu</th><th>Kế hoạch</th><th>Đạt</th><th></th><th></th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _funnel(entries: Mapping[str, Mapping[str, Any]], app: App) -> str:
    """How many of the year's dossiers reached each stage."""
    reached: dict[str, int] = defaultdict(int)
    stages = list(STAGE_COLOURS)
    for item in entries.values():
        wf = app.registry.get(item["workflow"])
        best = -1
        for entry in item["history"]:
            state = wf.states.get(entry["to"])
            if state is not None and not state.final and state.stage in stages:
                best = max(best, stages.index(state.stage))
        for index in range(best + 1):
            reached[stages[index]] += 1
    top = max(reached.values(), default=1) or 1
    width, bar_h = 560, 30
    parts = [
        f"<svg width='{width + 260}' height='{len(stages) * (bar_h + 8)}' role='img' "
        "aria-label='funnel'>"
    ]
    for i, stage in enumerate(stages):
        count = reached.get(stage, 0)
        w = max(width * count / top, 2)
        x = 220 + (width - w) / 2
        y = i * (bar_h + 8)
        parts.append(
            f"<text x='0' y='{y + 20}' font-size='14'>{escape(STAGE_LABELS[stage])}</text>"
            f"<rect class='funnel-bar' data-stage='{stage}' x='{x:.1f}' y='{y}' width='{w:.1f}' "
            f"height='{bar_h}' fill='{STAGE_COLOURS[stage]}'/>"
            f"<text x='{220 + width / 2}' y='{y + 20}' font-size='14' text-anchor='middle'>"
            f"{count}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _calendar(app: App, now: datetime, weeks: int, tz: tzinfo) -> str:
    today = now.astimezone(tz).date()
    first = today - timedelta(days=today.weekday())
    last = first + timedelta(days=7 * weeks)
    days: dict[date, list[Any]] = defaultdict(list)
    with app.store.read() as conn:
        query = (
            sa.select(timer_t)
            .where(
                PENDING,
                timer_t.c.due_at < datetime.combine(last, datetime.min.time(), tzinfo=tz),
            )
            .order_by(timer_t.c.due_at)
        )
        for row in conn.execute(query):
            day = row.due_at.astimezone(tz).date()
            if day < first:
                day = today  # overdue and not yet swept: show it today
            days[day].append(row)
    head = "".join(f"<th>{d}</th>" for d in ("T2", "T3", "T4", "T5", "T6", "T7", "CN"))
    rows = []
    for week in range(weeks):
        cells = []
        for weekday in range(7):
            day = first + timedelta(days=7 * week + weekday)
            tags = "".join(
                f"<span class='tag {escape(t.kind)}' "
                f"title='{escape(t.dossier_id)} {escape(t.kind)}'>{escape(t.dossier_id)}</span>"
                for t in days.get(day, [])[:6]
            )
            more = len(days.get(day, [])) - 6
            extra = f"<span class='muted'>+{more}</span>" if more > 0 else ""
            mark = " style='background:#fffbe6'" if day == today else ""
            cells.append(
                f"<td{mark}><div class='day'>{day.strftime('%d/%m')}</div>{tags}{extra}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='cal'><tr>{head}</tr>{''.join(rows)}</table>"


def _legend() -> str:
    items = "".join(
        f"<span><i style='background:{c}'></i>{escape(STAGE_LABELS[s])}</span>"
        for s, c in STAGE_COLOURS.items()
    )
    return (
        f"<p class='legend'>{items}<span><i style='background:{FINAL_COLOUR}'></i>Kết thúc</span>"
        "<span>▼ thông báo đã gửi</span><span style='color:#d62828'>▬ quá hạn</span></p>"
    )


def _timelines(
    entries: Mapping[str, Mapping[str, Any]],
    notes: Mapping[str, list[dict[str, Any]]],
    deadlines: Mapping[tuple[str, int], datetime],
    start: datetime,
    end: datetime,
    now: datetime,
    tz: tzinfo,
) -> str:
    width, label_w, row_h = 900, 280, 34
    span = (end - start).total_seconds()

    def x(instant: datetime) -> float:
        seconds = (min(max(instant, start), end) - start).total_seconds()
        return label_w + width * seconds / span

    months = "".join(
        f"<text x='{x(datetime(start.year, m, 1, tzinfo=start.tzinfo)):.0f}' y='12' "
        f"font-size='11' fill='#666'>T{m}</text>"
        for m in range(1, 13)
    )
    rows = [
        f"<svg width='{label_w + width + 10}' height='{len(entries) * row_h + 24}' "
        f"role='img' aria-label='timelines'>{months}"
    ]
    for index, (dossier_id, item) in enumerate(sorted(entries.items())):
        y = 20 + index * row_h
        rows.append(
            f"<g class='timeline' data-dossier='{escape(dossier_id)}'>"
            f"<text x='0' y='{y + 16}' font-size='12'>{escape(dossier_id)} "
            f"{escape(item['product'][:28])}</text>"
        )
        history = item["history"]
        for i, entry in enumerate(history):
            begin = entry["at"]
            finish = history[i + 1]["at"] if i + 1 < len(history) else now
            if finish < start or begin > end:
                continue
            stage = _stage_of(entry["to"])
            colour = STAGE_COLOURS.get(stage, FINAL_COLOUR)
            deadline = deadlines.get((dossier_id, entry["seq"]))
            late = deadline is not None and finish > deadline
            who = f"{entry['trigger']} bởi {entry['actor']} lúc {begin.astimezone(tz):%d/%m/%Y}"
            verdict = " — QUÁ HẠN" if late else (" — đúng hạn" if deadline else "")
            rows.append(
                f"<rect x='{x(begin):.1f}' y='{y + 4}' width='{max(x(finish) - x(begin), 1.5):.1f}'"
                f" height='16' fill='{colour}'"
                + (" stroke='#d62828' stroke-width='2'" if late else "")
                + f"><title>{escape(entry['to'])}: {escape(who)}{verdict}</title></rect>"
            )
        for note in notes.get(dossier_id, []):
            rows.append(
                f"<text x='{x(note['at']):.1f}' y='{y + 31}' font-size='10' fill='#9d0208' "
                f"text-anchor='middle'>▼<title>{escape(note['kind'])}: "
                f"{escape(note['subject'])}</title></text>"
            )
        rows.append("</g>")
    rows.append("</svg>")
    return "".join(rows)


def _stage_of(state: str) -> str:
    for stage in STAGE_COLOURS:
        if state == stage or state.startswith(stage):
            return stage
    return "final"


def _diagram(wf: WorkflowDef) -> str:
    """The workflow's states in stage columns, transitions as arrows (drawn here, no Graphviz)."""
    columns: dict[str, list[str]] = defaultdict(list)
    for state in wf.states.values():
        columns["final" if state.final else state.stage].append(state.name)
    order = [s for s in wf.stages if s in columns] + (["final"] if "final" in columns else [])
    box_w, box_h, gap_x, gap_y = 136, 40, 34, 26
    pos: dict[str, tuple[float, float]] = {}
    for col, stage in enumerate(order):
        for row, name in enumerate(columns[stage]):
            pos[name] = (20 + col * (box_w + gap_x), 30 + row * (box_h + gap_y))
    height = 60 + max(len(v) for v in columns.values()) * (box_h + gap_y)
    width = 40 + len(order) * (box_w + gap_x)
    parts = [
        f"<h3>{escape(wf.name)} — {escape(wf.title)}</h3>",
        f"<svg class='diagram' width='{width}' height='{height}' role='img' "
        f"aria-label='workflow {escape(wf.name)}'>",
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='6' "
        "markerHeight='6' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' "
        "fill='#555'/></marker></defs>",
    ]
    drawn: set[tuple[str, str]] = set()
    for t in wf.transitions:
        if (t.source, t.dest) in drawn or t.trigger == "withdraw":
            continue
        drawn.add((t.source, t.dest))
        (x1, y1), (x2, y2) = pos[t.source], pos[t.dest]
        sx, sy = x1 + box_w / 2, y1 + box_h / 2
        ex, ey = x2 + box_w / 2, y2 + box_h / 2
        ex += -box_w / 2 if ex > sx else (box_w / 2 if ex < sx else 0)
        parts.append(
            f"<line x1='{sx:.0f}' y1='{sy:.0f}' x2='{ex:.0f}' y2='{ey:.0f}' stroke='#999' "
            "marker-end='url(#arrow)'/>"
            f"<text x='{(sx + ex) / 2:.0f}' y='{(sy + ey) / 2 - 3:.0f}' font-size='10' "
            f"fill='#555' text-anchor='middle'>{escape(t.trigger)}</text>"
        )
    for name, (bx, by) in pos.items():
        state = wf.states[name]
        colour = FINAL_COLOUR if state.final else STAGE_COLOURS.get(state.stage, "#ccc")
        parts.append(
            f"<g class='state' data-state='{escape(name)}'><rect x='{bx}' y='{by}' "
            f"width='{box_w}' height='{box_h}' rx='8' fill='{colour}' opacity='0.85'/>"
            f"<text x='{bx + box_w / 2}' y='{by + 16}' font-size='11' text-anchor='middle'>"
            f"{escape(name)}</text><text x='{bx + box_w / 2}' y='{by + 31}' font-size='9' "
            f"text-anchor='middle'>{escape(_short(state.label_vi))}</text></g>"
        )
    parts.append(
        "</svg><p class='muted'>(withdraw — rút hồ sơ — is possible from every "
        "non-final state and is not drawn)</p>"
    )
    return "".join(parts)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
