"""``ocop report progress`` and ``ocop report html`` on a small year built through the CLI.

The year (2026, rules 1489, ``OCOP_NOW`` stepping the clock): three product ideas registered — one
by the producer, walked through documents, commune pre-assessment and the province council to a
3-star certificate; one left unanswered in registration long past its deadline; one accepted in
Ia Phang and still within its business-plan deadline. The plan asks for 3 new products, 2 of them
at 3 stars or more, and 2 producing organisations. Every figure below is what was done, counted
by hand.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import WORKFLOWS, Workspace, attach_mandatory, council_scores
from conftest import write_config as base_config

YEAR_TARGETS = """
[targets.2026]
new_products = 3
new_products_3_stars = 2
organisations = 2
"""

T_REGISTER = "2026-03-02T09:00:00+07:00"
T_REGISTER_2 = "2026-03-02T10:00:00+07:00"
T_IDEA = "2026-03-05T10:00:00+07:00"
T_PLAN = "2026-03-10T14:30:00+07:00"
T_PREPARE = "2026-05-25T09:00:00+07:00"
T_SUBMIT = "2026-06-01T08:15:00+07:00"
T_FORWARD = "2026-06-05T16:00:00+07:00"
T_REGISTER_3 = "2026-06-15T09:00:00+07:00"
T_IDEA_3 = "2026-06-16T09:00:00+07:00"
T_SCORE = "2026-06-22T09:00:00+07:00"
T_CERTIFY = "2026-07-01T09:00:00+07:00"
T_REPORT = "2026-07-01T10:00:00+07:00"

#: 6 of the 7 province members (the chair among them), totals 58-62, mean 60 → 3 stars.
THREE_STAR_COUNCIL = {
    "chair": (24.0, 15.0, 21.0),
    "m1": (24.0, 15.0, 19.0),
    "m2": (24.0, 15.0, 23.0),
    "m3": (24.0, 15.0, 20.0),
    "m4": (24.0, 15.0, 22.0),
    "m5": (24.0, 15.0, 21.0),
}

STAGES = ["registration", "business_plan", "production", "evaluation", "promotion", "review"]


@dataclass
class Year:
    ws: Workspace
    certified: str  # walked to a 3-star certificate (Ia Le)
    overdue: str  # left in registration since 2 March (Ia Le)
    planning: str  # in business_plan since 16 June, within its deadline (Ia Phang)


def ok(ws: Workspace, *args: str, user: str | None = None, now: str = T_REPORT) -> Any:
    result = ws.run(*args, "--json", user=user, now=now)
    assert result.code == 0, str(result)
    assert "Traceback" not in result.stderr
    return result.json()


def build_year(root: Path, url: str) -> Year:
    root.mkdir(parents=True, exist_ok=True)
    base_config(root, extra=YEAR_TARGETS)
    ws = Workspace(root, url)
    ws.run("init", check=True)

    def register(user: str, now: str, product: str, producer: str, commune: str) -> str:
        return str(
            ok(
                ws,
                "dossier",
                "register",
                "--product",
                product,
                "--producer",
                producer,
                "--commune",
                commune,
                "--group",
                "food",
                "--set",
                "producer_email=lienhe@example.vn",
                user=user,
                now=now,
            )["id"]
        )

    certified = register("htx_iale", T_REGISTER, "Cà phê bột Ia Le", "HTX Cà phê Ia Le", "Ia Le")
    overdue = register("lan", T_REGISTER_2, "Hồ tiêu đen Ia Le", "HTX Hồ tiêu Ia Le", "Ia Le")
    ok(ws, "dossier", "advance", certified, "accept_idea", user="lan", now=T_IDEA)
    ok(ws, "dossier", "advance", certified, "approve_plan", user="lan", now=T_PLAN)
    attach_mandatory(ws, certified, now=T_PREPARE)
    ok(ws, "dossier", "advance", certified, "submit_dossier", user="htx_iale", now=T_SUBMIT)
    ok(ws, "dossier", "advance", certified, "forward", user="lan", now=T_FORWARD)
    planning = register(
        "tuan", T_REGISTER_3, "Cà phê hạt rang Ia Phang", "HTX Cà phê Ia Le", "Ia Phang"
    )
    ok(ws, "dossier", "advance", planning, "accept_idea", user="tuan", now=T_IDEA_3)
    closed = council_scores(ws, certified, THREE_STAR_COUNCIL, now=T_SCORE)
    assert closed.code == 0, str(closed)
    assert closed.json()["stars"] == 3
    ok(
        ws,
        "dossier",
        "advance",
        certified,
        "certify",
        "--set",
        "certificate_no=OCOP-GL-2026-001",
        "--set",
        "decision_no=812/QĐ-UBND",
        user="hung",
        now=T_CERTIFY,
    )
    return Year(ws, certified, overdue, planning)


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Year:
    """The year, built once for the module on a SQLite file."""
    root = tmp_path_factory.mktemp("year")
    return build_year(root, f"sqlite:///{root / 'ocop.db'}")


# --- progress -----------------------------------------------------------------------------------


def test_progress_counts_each_target_by_commune_and_stage_with_overdue_and_stuck_dossiers(
    year: Year,
) -> None:
    report = ok(year.ws, "report", "progress", "--year", "2026")
    assert report["year"] == 2026
    assert report["communes"] == ["Ia Le", "Ia Phang"]
    targets = {t["metric"]: t for t in report["targets"]}
    assert list(targets) == ["new_products", "new_products_3_stars", "organisations"]

    def figures(metric: str) -> tuple[Any, ...]:
        t = targets[metric]
        return t["target"], t["reached"], t["left"], t["done"], t["by_commune"]

    # three ideas registered: two in Ia Le, one in Ia Phang
    assert figures("new_products") == (3, 3, 0, True, {"Ia Le": 2, "Ia Phang": 1})
    # one certified (3 stars) of the two planned
    assert figures("new_products_3_stars") == (2, 1, 1, False, {"Ia Le": 1, "Ia Phang": 0})
    # two producers: HTX Cà phê Ia Le (in both communes) and HTX Hồ tiêu Ia Le
    assert figures("organisations") == (2, 2, 0, True, {"Ia Le": 2, "Ia Phang": 1})
    assert targets["new_products"]["label"] == "Sản phẩm mới tham gia chu trình"

    assert report["by_stage"] == {"promotion": 1, "registration": 1, "business_plan": 1}
    assert list(report["by_stage"]) == ["registration", "business_plan", "promotion"]
    # each target by the stage its counted dossiers are in now; an organisation counts once,
    # at its furthest dossier (the coffee cooperative: one certified, one still planning)
    assert targets["new_products"]["by_stage"] == report["by_stage"]
    assert targets["new_products_3_stars"]["by_stage"] == {"promotion": 1}
    assert targets["organisations"]["by_stage"] == {"registration": 1, "promotion": 1}
    human = year.ws.run("report", "progress", "--year", "2026", now=T_REPORT)
    assert human.code == 0, str(human)
    by_stage_table = human.stdout.split("by stage")[1].split("overdue")[0]
    assert "new_products_3_stars" in by_stage_table and "all dossiers" in by_stage_table
    assert report["dossiers"] == 3

    # registered Monday 2 March: 15 working days end on Monday 23 March, overdue from 00:00 on
    # 24 March; on 1 July at 10:00 that is 99 days and 10 hours late
    assert [o["id"] for o in report["overdue"]] == [year.overdue]
    late = report["overdue"][0]
    assert late["deadline_at"] == "2026-03-24T00:00:00+07:00"
    assert late["days_late"] == pytest.approx(99.4, abs=0.05)
    assert (late["state"], late["state_label"]) == ("registration", "Đăng ký ý tưởng sản phẩm")
    assert late["product"] == "Hồ tiêu đen Ia Le"

    # longest in their state first; the certified dossier (promotion) is not stuck
    stuck = report["stuck"]
    assert [s["id"] for s in stuck] == [year.overdue, year.planning]
    assert stuck[0]["days"] == pytest.approx(121.0, abs=0.05)  # 2 March 10:00 → 1 July 10:00
    assert stuck[1]["days"] == pytest.approx(15.0417, abs=0.05)  # 16 June 09:00 → 1 July 10:00
    assert stuck[0]["days"] > stuck[1]["days"]


def test_progress_csv_and_xlsx_files_carry_the_vietnamese_labels(
    year: Year, tmp_path: Path
) -> None:
    ws = year.ws
    out_csv, out_xlsx = tmp_path / "tien-do-2026.csv", tmp_path / "tien-do-2026.xlsx"
    for fmt, out in (("csv", out_csv), ("xlsx", out_xlsx)):
        done = ws.run(
            "report", "progress", "--year", "2026", "--format", fmt, "-o", str(out), now=T_REPORT
        )
        assert done.code == 0, str(done)
        assert out.is_file() and out.stat().st_size > 0

    raw = out_csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = {r["metric"]: r for r in csv.DictReader(raw.decode("utf-8-sig").splitlines())}
    assert rows["new_products"]["label"] == "Sản phẩm mới tham gia chu trình"
    assert rows["new_products_3_stars"]["label"] == "Sản phẩm mới đạt từ 3 sao trở lên"
    assert rows["organisations"]["label"] == "Tổ chức kinh tế tham gia chu trình"
    assert (rows["new_products_3_stars"]["reached"], rows["new_products_3_stars"]["left"]) == (
        "1",
        "1",
    )
    assert rows["new_products"]["commune:Ia Phang"] == "1"
    assert rows["organisations"]["stage:promotion"] == "1"
    assert rows["organisations"]["stage:registration"] == "1"

    from openpyxl import load_workbook

    book = load_workbook(out_xlsx, read_only=True)
    try:
        assert book.sheetnames == ["Tiến độ 2026", "Giai đoạn", "Quá hạn", "Tồn đọng lâu nhất"]
        targets = [list(r) for r in book["Tiến độ 2026"].iter_rows(values_only=True)]
        assert targets[0] == [
            "Chỉ tiêu",
            "Nội dung",
            "Kế hoạch",
            "Đạt",
            "Còn lại",
            "Ia Le",
            "Ia Phang",
            "registration",
            "business_plan",
            "production",
            "evaluation",
            "promotion",
            "review",
        ]
        assert [
            "new_products_3_stars",
            "Sản phẩm mới đạt từ 3 sao trở lên",
            2,
            1,
            1,
            1,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
        ] in targets
        late = [list(r) for r in book["Quá hạn"].iter_rows(values_only=True)]
        assert late[0][-1] == "Số ngày quá hạn"
        assert [r[0] for r in late[1:]] == [year.overdue]
        assert late[1][1:4] == ["Hồ tiêu đen Ia Le", "Ia Le", "Đăng ký ý tưởng sản phẩm"]
        stuck = [list(r) for r in book["Tồn đọng lâu nhất"].iter_rows(values_only=True)]
        assert [r[0] for r in stuck[1:]] == [year.overdue, year.planning]
    finally:
        book.close()


def test_an_unknown_metric_in_targets_is_a_configuration_error_naming_it(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    base_config(ws.root, extra="[targets.2026]\nnew_products = 3\ntraining_courses = 5\n")
    result = ws.run("report", "progress", "--year", "2026", now=T_REPORT)
    assert result.code == 1, str(result)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "training_courses" in result.stderr
    assert result.stdout == ""


# --- the HTML page ------------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node]
    text: str = ""

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, tag: str, *, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if n.tag == tag
            and (cls is None or cls in n.classes())
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class TreeBuilder(HTMLParser):
    """Just enough of a DOM to look at what Chromium rendered."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, [])
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, [])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(Node("#text", {}, [], data))


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install Debian's chromium: the HTML test may not be skipped")
        pytest.skip("chromium is not installed (Debian package `chromium`)")
    return found


def headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


def test_html_report_is_one_self_contained_page_that_chromium_renders(
    year: Year, tmp_path: Path
) -> None:
    ws = year.ws
    # the office's daily sweep: the overdue dossier's deadline notice goes out (a ▼ mark)
    swept = ws.run("sweep", "--json", now=T_REPORT)
    assert swept.code == 0 and swept.json()["timers_fired"] >= 1, str(swept)
    page = tmp_path / "bao-cao-2026.html"
    done = ws.run("report", "html", "--year", "2026", "-o", str(page), "--weeks", "5", now=T_REPORT)
    assert done.code == 0, str(done)
    html = page.read_text(encoding="utf-8")

    # self-contained: nothing fetched from the network, the charts are inline SVG
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I), "network link"
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", html, re.I), "network url() in CSS"
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", html, re.I)
    assert "<svg" in html

    binary = chromium()
    rendered = headless(binary, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = parse(rendered.stdout)

    # the funnel: one bar per stage; registration 3, business plan 2, then only the certified one
    funnels = dom.find("svg", aria_label="funnel")
    assert len(funnels) == 1
    bars = funnels[0].find("rect")
    staged = [b for b in bars if "data-stage" in b.attrs]
    assert [b.attrs["data-stage"] for b in staged] == STAGES
    texts = [t.all_text() for t in funnels[0].find("text")]
    counts = [int(t) for t in texts if t.isdigit()]
    assert counts == [3, 2, 1, 1, 1, 0], texts
    widths = [float(b.attrs["width"]) for b in staged]
    assert widths[0] > widths[1] > widths[2] == widths[3] == widths[4] > widths[5]

    # the timelines: one per dossier of the year
    timelines = dom.find("g", cls="timeline")
    assert sorted(t.attrs["data-dossier"] for t in timelines) == sorted(
        [year.certified, year.overdue, year.planning]
    )
    certified = next(t for t in timelines if t.attrs["data-dossier"] == year.certified)
    assert "Cà phê bột Ia Le" in certified.all_text()
    assert len(certified.find("rect")) >= 6  # registration … promotion, one bar per state entry

    # who moved it, and whether each state was left on time: the overdue registration is marked
    titles = {t.attrs["data-dossier"]: [n.all_text() for n in t.find("title")] for t in timelines}
    # the tooltip says which stay was late: the registration, still going on past its deadline
    assert any("(registration)" in x and "đang quá hạn" in x for x in titles[year.overdue]), titles[
        year.overdue
    ]
    assert any(
        r.attrs.get("stroke") == "#d62828"
        for r in next(t for t in timelines if t.attrs["data-dossier"] == year.overdue).find("rect")
    )
    assert any(
        "(business_plan) 05/03/2026 →" in x
        and "vào do accept_idea bởi lan" in x
        and "rời trạng thái đúng hạn" in x
        for x in titles[year.certified]
    ), titles[year.certified]
    assert not any("quá hạn" in x or "trễ hạn" in x for x in titles[year.certified])
    assert any(x.startswith("deadline: [OCOP]") for x in titles[year.overdue])  # the ▼ sent

    # the deadline calendar: --weeks 5 from the week of 1 July; the planning dossier's plan is
    # due by the end of Tuesday 14 July (20 working days from 16 June), reminded 5 working days
    # before, on 8 July, when the overdue dossier's next weekly escalation falls too
    (calendar,) = dom.find("table", cls="cal")
    weeks = calendar.find("tr")[1:]
    assert len(weeks) == 5
    assert weeks[0].find("div", cls="day")[0].all_text() == "29/06"
    cells = {c.find("div", cls="day")[0].all_text(): c for w in weeks for c in w.find("td")}
    tags = {
        day: sorted(t.attrs["title"] for t in cell.find("span", cls="tag"))
        for day, cell in cells.items()
    }
    assert tags["08/07"] == sorted(
        [f"{year.planning}: nhắc hạn", f"{year.overdue}: báo cáo cấp trên (quá hạn)"]
    )
    assert tags["15/07"] == [f"{year.planning}: hạn xử lý"]
    assert tags["21/07"] == [f"{year.planning}: báo cáo cấp trên (quá hạn)"]
    # weekends shaded, working days not
    assert "weekend" in cells["04/07"].classes() and "weekend" in cells["05/07"].classes()
    assert "weekend" not in cells["06/07"].classes() and "off" not in cells["06/07"].classes()

    # the diagram of ocop-1489: one box per state
    diagrams = dom.find("svg", cls="diagram")
    assert len(diagrams) == 1
    with (WORKFLOWS / "ocop-1489.toml").open("rb") as handle:
        states = set(tomllib.load(handle)["states"])
    drawn = [g.find("title")[0].all_text() for g in diagrams[0].find("g", cls="state")]
    assert sorted(drawn) == sorted(states)
    assert "Đăng ký ý tưởng sản" in diagrams[0].all_text()  # Vietnamese names, not ids only

    text = dom.all_text()
    for phrase in (
        "Chương trình OCOP năm 2026",
        "Phễu theo giai đoạn",
        "Diễn biến từng hồ sơ",
        "Sơ đồ quy trình",
        "Sản phẩm mới đạt từ 3 sao trở lên",
        "Hồ tiêu đen Ia Le",
        "Đăng ký ý tưởng",
        "Xúc tiến thương mại",
    ):
        assert phrase in text, phrase

    shot = tmp_path / "bao-cao-2026.png"
    taken = headless(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1300,2600",
        page.as_uri(),
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000, f"screenshot only {shot.stat().st_size} bytes"
