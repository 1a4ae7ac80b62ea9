"""``ocop report html``: the year on one self-contained page (no network, inline SVG).

A district head should understand the year at a glance: how far each plan target got, how many
dossiers reached each stage (the funnel), which deadlines fall in the coming weeks, and for each
dossier a timeline — the states it went through, who moved it, the reminders sent, and whether it
left each state on time. The workflow diagram closes the page.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, timedelta, tzinfo
from html import escape
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from .calendar import WEEKEND_NAMES
from .definitions import WorkflowDef
from .diagram import STAGE_FILL, WITHDRAW_NOTE, edges, inline_svg, wrap
from .render import minute
from .report import progress, year_bounds
from .store import audit_t, notification_t, pending_due, timer_t

if TYPE_CHECKING:
    from .service import Ocop as App

#: the diagram's colours per stage, so a stage looks the same in every chart of the page
STAGE_COLOURS = STAGE_FILL
FINAL_COLOUR = "#9e9e9e"
STAGE_LABELS = {
    "registration": "Đăng ký ý tưởng",
    "business_plan": "Phương án SXKD",
    "production": "Triển khai sản xuất",
    "evaluation": "Đánh giá, phân hạng",
    "promotion": "Xúc tiến thương mại",
    "review": "Sơ kết, giám sát",
}

TIMER_LABELS = {
    "deadline": "hạn xử lý",
    "reminder": "nhắc hạn",
    "escalation": "báo cáo cấp trên (quá hạn)",
    "expiry_notice": "báo trước hết hạn chứng nhận",
    "expiry": "hết hạn chứng nhận",
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
.cal td.weekend{background:#f2f2f2}.cal td.off{background:#fde8e8}.cal td.today{outline:2px solid
#e9c46a}.cal .why{font-size:10px;color:#9d0208;display:block}.scroll{overflow-x:auto;max-width:100%}
.diagram-box svg{max-width:100%;height:auto}.transitions td{font-size:13px}
@media (max-width:700px){body{margin:8px}.cal td{width:auto;min-width:40px;height:48px}
.cal .tag{font-size:9px}.diagram-box svg,svg.diagram{min-width:560px}}
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
        f"<p class='muted'>Báo cáo lập lúc {escape(minute(report['generated_at']))}"
        f" — {report['dossiers']} hồ sơ, {report['audit_entries']} bút toán nhật ký.</p>",
        "<h2 id='targets'>Tiến độ so với kế hoạch</h2>",
        "<div class='scroll'>",
        _targets(report),
        "</div>",
        "<h2 id='funnel'>Phễu theo giai đoạn</h2>",
        _funnel(entries, app, start, end, year),
        f"<h2 id='calendar'>Lịch hạn {weeks} tuần tới</h2>",
        _calendar(app, now, weeks, tz),
        "<h2 id='timelines'>Diễn biến từng hồ sơ</h2>",
        _legend(),
        "<div class='scroll'>",
        _timelines(entries, notes, deadlines, start, end, now, tz, app),
        "</div>",
        "<h2 id='diagram'>Sơ đồ quy trình</h2>",
        *[_diagram(app.registry.get(name)) for name in workflows],
    ]
    return (
        "<!DOCTYPE html><html lang='vi'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
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


def _funnel(
    entries: Mapping[str, Mapping[str, Any]],
    app: App,
    start: datetime,
    end: datetime,
    year: int,
) -> str:
    """How many of the ideas registered this year reached each stage.

    Only dossiers whose first entry is a registration within the year count: products imported
    from an earlier list (first entry ``import``) or registered in an earlier year were never
    this year's ideas, so they are shown apart instead of inflating "registered".
    """
    reached: dict[str, int] = defaultdict(int)
    stages = list(STAGE_COLOURS)
    imported = earlier = 0
    for item in entries.values():
        first = item["history"][0]
        if first["trigger"] == "import":
            imported += 1
            continue
        if not start <= first["at"] < end:
            earlier += 1
            continue
        wf = app.registry.get(item["workflow"])
        best = -1
        for entry in item["history"]:
            state = wf.states.get(entry["to"])
            if state is not None and not state.final and state.stage in stages:
                best = max(best, stages.index(state.stage))
        for index in range(best + 1):
            reached[stages[index]] += 1
    top = max(reached.values(), default=1) or 1
    width, bar_h, label_w = 520, 30, 200
    parts = [
        f"<svg class='funnel' viewBox='0 0 {label_w + width + 10} {len(stages) * (bar_h + 8)}' "
        f"width='{label_w + width + 10}' style='max-width:100%;height:auto' role='img' "
        "aria-label='funnel'>"
    ]
    for i, stage in enumerate(stages):
        count = reached.get(stage, 0)
        w = max(width * count / top, 2)
        x = label_w + (width - w) / 2
        y = i * (bar_h + 8)
        parts.append(
            f"<text x='0' y='{y + 20}' font-size='14'>{escape(STAGE_LABELS[stage])}</text>"
            f"<rect class='funnel-bar' data-stage='{stage}' data-count='{count}' x='{x:.1f}' "
            f"y='{y}' width='{w:.1f}' height='{bar_h}' fill='{STAGE_COLOURS[stage]}'/>"
            f"<text x='{label_w + width / 2}' y='{y + 20}' font-size='14' text-anchor='middle'>"
            f"{count}</text>"
        )
    parts.append("</svg>")
    apart = []
    if imported:
        apart.append(f"{imported} sản phẩm nhập từ danh sách trước (import)")
    if earlier:
        apart.append(f"{earlier} hồ sơ đăng ký từ các năm trước")
    note = (
        f"<p class='muted funnel-note'>Chỉ tính ý tưởng đăng ký trong năm {year}. Không tính: "
        + "; ".join(apart)
        + " — xem diễn biến bên dưới.</p>"
        if apart
        else f"<p class='muted funnel-note'>Ý tưởng đăng ký trong năm {year}.</p>"
    )
    return "".join(parts) + note


def _calendar(app: App, now: datetime, weeks: int, tz: tzinfo) -> str:
    """The coming weeks, Monday first: weekends and days off shaded (named), each pending timer
    on its day; timers overdue and not yet swept show today."""
    cal = app.engine.calendar
    today = now.astimezone(tz).date()
    first = today - timedelta(days=today.weekday())
    last = first + timedelta(days=7 * weeks)
    days: dict[date, list[Any]] = defaultdict(list)
    with app.store.read() as conn:
        query = (
            sa.select(timer_t)
            .where(
                pending_due(datetime.combine(last, datetime.min.time(), tzinfo=tz), inclusive=False)
            )
            .order_by(timer_t.c.due_at)
        )
        for row in conn.execute(query):
            day = row.due_at.astimezone(tz).date()
            if day < today:
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
                f"title='{escape(t.dossier_id)}: {escape(TIMER_LABELS.get(t.kind, t.kind))}'>"
                f"{escape(t.dossier_id)}</span>"
                for t in days.get(day, [])[:6]
            )
            more = len(days.get(day, [])) - 6
            extra = f"<span class='muted'>+{more}</span>" if more > 0 else ""
            classes = []
            why = cal.why_off(day)
            label = ""
            if why is not None:
                classes.append("weekend" if why in WEEKEND_NAMES else "off")
                if why not in WEEKEND_NAMES:
                    label = f"<span class='why'>{escape(why)}</span>"
            if day == today:
                classes.append("today")
            attrs = f" class='{' '.join(classes)}'" if classes else ""
            title = f" title='{escape(why)}'" if why else ""
            cells.append(
                f"<td{attrs}{title} data-day='{day.isoformat()}'><div class='day'>"
                f"{day.strftime('%d/%m')}</div>{label}{tags}{extra}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    legend = (
        "<p class='legend'><span><i style='background:#f2f2f2'></i>cuối tuần</span>"
        "<span><i style='background:#fde8e8'></i>ngày nghỉ lễ, nghỉ bù</span>"
        "<span><i class='tag deadline'></i>hạn</span><span><i class='tag reminder'></i>nhắc"
        "</span><span><i class='tag escalation'></i>báo cáo cấp trên</span>"
        "<span><i class='tag expiry'></i>hết hạn chứng nhận</span></p>"
    )
    return (
        f"<div class='scroll'><table class='cal'><tr>{head}</tr>{''.join(rows)}</table></div>"
        + legend
    )


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
    app: App,
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
            still = i + 1 == len(history)
            tip = _stay_tip(app, item, entry, begin, finish, deadline, still, tz)
            rows.append(
                f"<rect class='stay{' late' if late else ''}' x='{x(begin):.1f}' y='{y + 4}' "
                f"width='{max(x(finish) - x(begin), 1.5):.1f}' height='16' fill='{colour}'"
                + (" stroke='#d62828' stroke-width='2'" if late else "")
                + f"><title>{escape(tip)}</title></rect>"
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


def _stay_tip(
    app: App,
    item: Mapping[str, Any],
    entry: Mapping[str, Any],
    begin: datetime,
    finish: datetime,
    deadline: datetime | None,
    still: bool,
    tz: tzinfo,
) -> str:
    """Which stay a bar is, how it began and whether the stay itself was on time.

    "Ở «Xét duyệt phương án SXKD» (business_plan) 12/05/2020 → 20/06/2020, vào do accept_idea
    bởi lan; hạn 10/06/2020 — ở quá hạn 10 ngày": the lateness is the stay's, not the trigger's.
    """
    try:
        label = app.registry.get(item["workflow"]).states[entry["to"]].label_vi
    except Exception:  # a bar must never break the page: the state id is enough
        label = entry["to"]
    until = "nay" if still else f"{finish.astimezone(tz):%d/%m/%Y}"
    text = (
        f"Ở «{label}» ({entry['to']}) {begin.astimezone(tz):%d/%m/%Y} → {until}, "
        f"vào do {entry['trigger']} bởi {entry['actor']}"
    )
    if deadline is None:
        return text
    text += f"; hạn {deadline.astimezone(tz):%d/%m/%Y}"
    if finish > deadline:
        days = (finish - deadline).days
        late = f"{days} ngày" if days >= 1 else "chưa đến 1 ngày"
        return text + (
            f" — vẫn ở đây, đang quá hạn {late}" if still else f" — rời trạng thái trễ hạn {late}"
        )
    return text + (" — còn trong hạn" if still else " — rời trạng thái đúng hạn")


def _stage_of(state: str) -> str:
    for stage in STAGE_COLOURS:
        if state == stage or state.startswith(stage):
            return stage
    return "final"


def _diagram(wf: WorkflowDef) -> str:
    """The workflow laid out by Graphviz when ``dot`` is installed, else drawn here.

    Either way every state is a box with its Vietnamese name (its id small beneath) inside an
    ``<svg class='diagram'>``, each box a ``<g class='state'>`` titled with the state id. The
    drawing here never puts a label on an arrow (labels overlapped and hid under boxes): arrows
    only, and the transitions listed in a table beneath.
    """
    title = f"<h3>{escape(wf.name)} — {escape(wf.title)}</h3>"
    laid_out = inline_svg(wf)
    if laid_out is not None:
        laid_out = re.sub(
            r"<svg\b[^>]*?\swidth=\"[^\"]*\"\s+height=\"[^\"]*\"",
            "<svg class='diagram' role='img' aria-label='workflow "
            + escape(wf.name)
            + "' style='max-width:100%;height:auto'",
            laid_out,
            count=1,
        )
        return f"{title}<div class='diagram-box scroll'>{laid_out}</div>"
    return (
        title + _drawn_diagram(wf) + _transition_table(wf) + f"<p class='muted'>{WITHDRAW_NOTE}</p>"
    )


def _drawn_diagram(wf: WorkflowDef) -> str:
    """Stage columns of boxes with wrapped Vietnamese names; arrows without labels."""
    columns: dict[str, list[str]] = defaultdict(list)
    for state in wf.states.values():
        columns["final" if state.final else state.stage].append(state.name)
    order = [s for s in wf.stages if s in columns] + (["final"] if "final" in columns else [])
    box_w, box_h, gap_x, gap_y = 150, 58, 46, 22
    pos: dict[str, tuple[float, float]] = {}
    for col, stage in enumerate(order):
        for row, name in enumerate(columns[stage]):
            pos[name] = (10 + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
    height = 20 + max(len(v) for v in columns.values()) * (box_h + gap_y)
    width = 20 + len(order) * (box_w + gap_x)
    parts = [
        f"<div class='scroll'><svg class='diagram' viewBox='0 0 {width} {height}' width='{width}' "
        f"style='max-width:100%;height:auto' role='img' aria-label='workflow {escape(wf.name)}'>",
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='6' "
        "markerHeight='6' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' "
        "fill='#555'/></marker></defs>",
    ]
    for source, dest in edges(wf):
        (x1, y1), (x2, y2) = pos[source], pos[dest]
        sy, ey = y1 + box_h / 2, y2 + box_h / 2
        if x2 > x1:
            sx, ex = x1 + box_w, x2
        elif x2 < x1:
            sx, ex = x1, x2 + box_w
        else:  # same column: from the side, curving out
            sx = ex = x1 + box_w
            parts.append(
                f"<path d='M {sx:.0f} {sy:.0f} C {sx + 30:.0f} {sy:.0f} {ex + 30:.0f} {ey:.0f} "
                f"{ex:.0f} {ey:.0f}' fill='none' stroke='#999' marker-end='url(#arrow)'/>"
            )
            continue
        bend = 0 if x2 > x1 else 18
        parts.append(
            f"<path d='M {sx:.0f} {sy:.0f} C {(sx + ex) / 2:.0f} {sy + bend:.0f} "
            f"{(sx + ex) / 2:.0f} {ey + bend:.0f} {ex:.0f} {ey:.0f}' fill='none' stroke='#999' "
            "marker-end='url(#arrow)'/>"
        )
    for name, (bx, by) in pos.items():
        state = wf.states[name]
        colour = FINAL_COLOUR if state.final else STAGE_COLOURS.get(state.stage, "#ccc")
        lines = wrap(state.label_vi, 24)[:3]
        spans = "".join(
            f"<tspan x='{bx + box_w / 2:.0f}' dy='{0 if i == 0 else 12}'>{escape(line)}</tspan>"
            for i, line in enumerate(lines)
        )
        parts.append(
            f"<g class='node state' id='state-{escape(name)}'><title>{escape(name)}</title>"
            f"<rect x='{bx}' y='{by}' width='{box_w}' height='{box_h}' rx='8' fill='{colour}' "
            f"opacity='0.9'/><text x='{bx + box_w / 2:.0f}' y='{by + 15}' font-size='10.5' "
            f"text-anchor='middle'>{spans}</text><text x='{bx + box_w / 2:.0f}' "
            f"y='{by + box_h - 5}' font-size='8.5' fill='#333' text-anchor='middle'>"
            f"{escape(name)}</text></g>"
        )
    parts.append("</svg></div>")
    return "".join(parts)


def _transition_table(wf: WorkflowDef) -> str:
    rows = "".join(
        f"<tr><td>{escape(' / '.join(triggers))}</td>"
        f"<td>{escape(wf.states[source].label_vi)} <span class='muted'>({escape(source)})</span>"
        f"</td><td>{escape(wf.states[dest].label_vi)} <span class='muted'>({escape(dest)})"
        "</span></td></tr>"
        for (source, dest), triggers in edges(wf).items()
    )
    return (
        "<table class='transitions'><tr><th>Thao tác</th><th>Từ</th><th>Đến</th></tr>"
        + rows
        + "</table>"
    )
