"""The HTML report reads cleanly: a funnel of the year's own ideas, a calendar that shades the
days nobody works, a diagram with Vietnamese names and no label on an arrow when drawn without
Graphviz — checked in the page, and rendered by Chromium at phone width."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Workspace
from test_reports import chromium, headless, parse

from ocop_workflow.definitions import Registry
from ocop_workflow.diagram import edges

NOW = "2026-08-25T10:00:00+07:00"


def register(ws: Workspace, product: str, when: str) -> None:
    ws.run(
        "dossier",
        "register",
        "--product",
        product,
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--group",
        "food",
        user="htx_iale",
        now=when,
        check=True,
    )


def page(ws: Workspace, tmp_path: Path, **env: str) -> str:
    out = tmp_path / "bao-cao.html"
    ws.run(
        "report",
        "html",
        "--year",
        "2026",
        "-o",
        str(out),
        "--weeks",
        "2",
        now=NOW,
        check=True,
        **env,
    )
    return out.read_text(encoding="utf-8")


def test_the_funnel_counts_only_the_years_registered_ideas_and_shows_imports_apart(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    register(ws, "Cà phê bột", "2026-03-02T09:00:00+07:00")
    register(ws, "Cà phê hạt", "2026-03-03T09:00:00+07:00")
    sheet = tmp_path / "san-pham-2019.csv"
    sheet.write_text(
        "product,producer,commune,group,state,state_entered_at\n"
        "Tiêu sọ,HTX Tiêu Ia Le,Ia Le,food,promotion,2019-11-20T09:00+07:00\n",
        encoding="utf-8",
    )
    ws.run("import", str(sheet), user="records", now="2026-03-04T09:00:00+07:00", check=True)
    dom = parse(page(ws, tmp_path))
    (funnel,) = dom.find("svg", aria_label="funnel")
    counts = {b.attrs["data-stage"]: int(b.attrs["data-count"]) for b in funnel.find("rect")}
    assert counts["registration"] == 2 and counts["promotion"] == 0
    (note,) = dom.find("p", cls="funnel-note")
    assert "1 sản phẩm nhập từ danh sách trước" in note.all_text()


def test_the_calendar_shades_weekends_and_names_the_days_off(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    dom = parse(page(sqlite_workspace, tmp_path))
    (calendar,) = dom.find("table", cls="cal")
    cells = {c.attrs["data-day"]: c for c in calendar.find("td")}
    assert sorted(cells)[0] == "2026-08-24" and len(cells) == 14
    assert "weekend" in cells["2026-08-29"].classes()
    national_day = cells["2026-09-02"]
    assert "off" in national_day.classes(), national_day.attrs
    assert national_day.find("span", cls="why")[0].all_text().strip()  # named, not only shaded
    assert not {"off", "weekend"} & set(cells["2026-08-26"].classes())
    assert "today" in cells["2026-08-25"].classes()


def test_without_graphviz_the_diagram_has_vietnamese_names_no_arrow_labels_and_a_table(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    register(ws, "Cà phê bột", "2026-08-03T09:00:00+07:00")
    no_dot = tmp_path / "bin"
    no_dot.mkdir()
    html = page(ws, tmp_path, PATH=str(no_dot))
    dom = parse(html)
    (diagram,) = dom.find("svg", cls="diagram")
    wf = Registry().get("ocop-1489")
    boxes = diagram.find("g", cls="state")
    assert sorted(g.find("title")[0].all_text() for g in boxes) == sorted(wf.states)
    box_text = {id(t) for g in boxes for t in g.find("text")}
    assert all(id(t) in box_text for t in diagram.find("text")), "a label outside the boxes"
    assert "Đăng ký ý tưởng sản phẩm" in diagram.all_text().replace("\n", " ")
    (table,) = dom.find("table", cls="transitions")
    assert len(table.find("tr")) - 1 == len(edges(wf))

    binary = chromium()
    (tmp_path / "bao-cao.html").write_text(html, encoding="utf-8")
    shot = tmp_path / "phone.png"
    taken = headless(
        binary,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=390,2400",
        (tmp_path / "bao-cao.html").as_uri(),
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert os.path.getsize(shot) > 0
