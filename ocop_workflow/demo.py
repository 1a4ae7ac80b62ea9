"""``make demo``: the seed's 2020 district plan (Chư Pưh, Gia Lai) rehearsed end to end.

Kế hoạch 57/KH-UBND (12/5/2020): support 17 products — upgrade 4 products certified 3★ in 2019 to
4★, take 13 new products through the cycle with at least 8 reaching 3★ — with at least 11 producing
organisations, and hold the review in Q4. The rehearsal runs the real engine on a fresh SQLite file
under ``demo-output/``, with the clock stepped through 2020 (the ``OCOP_NOW`` mechanism, in
process): the 2019 products are imported from a spreadsheet, the new ideas registered, officers
advance dossiers, councils score, two dossiers miss their deadlines and are escalated, the daily
sweep delivers reminders to the file outbox, certificates are issued, the province reviews in
December. It ends with the progress report against the plan, ``audit verify``, and where to find
the outbox and the HTML report.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
COMMUNES = [
    "Nhơn Hòa",
    "Ia Hrú",
    "Ia Rong",
    "Ia Dreng",
    "Ia Phang",
    "Ia Le",
    "Ia Blứ",
    "Ia Hla",
    "Chư Don",
]


@dataclass(frozen=True)
class Product:
    product: str
    producer: str
    commune: str
    group: str
    district_score: float | None  # None: never scored in 2020
    province_score: float | None = None  # None: the province confirms the district's score
    story: str = "certify"  # certify | not_certified | rejected | late_idea | late_plan
    upgrade: bool = False
    has_story: bool = True  # product_story document (a 4★ mandatory criterion)

    @property
    def forwarded(self) -> bool:
        """Scored 50 or more by the district and sent on: the plan counts stars recognised by
        the province ("3 sao OCOP cấp tỉnh trở lên"), so every product that passes goes there."""
        return self.district_score is not None and self.story != "not_certified"

    @property
    def province_points(self) -> float | None:
        if not self.forwarded:
            return None
        return self.province_score if self.province_score is not None else self.district_score


NEW = [
    Product("Cà phê bột Ia Le", "HTX Nông nghiệp Ia Le", "Ia Le", "food", 62),
    Product("Hồ tiêu đen Ia Phang", "HTX Hồ tiêu Ia Phang", "Ia Phang", "food", 74, 76),
    Product("Mật ong hoa cà phê", "Tổ hợp tác nuôi ong Ia Hrú", "Ia Hrú", "food", 58),
    Product("Chuối sấy dẻo Ia Rong", "HTX Chuối Ia Rong", "Ia Rong", "food", 55),
    Product("Măng le khô", "Cơ sở Măng khô Ia Dreng", "Ia Dreng", "food", 52, story="late_plan"),
    Product("Gạo Ia Blứ", "HTX Lúa gạo Ia Blứ", "Ia Blứ", "food", 60),
    Product(
        "Rượu cần Ia Hla", "Cơ sở Rượu cần Ia Hla", "Ia Hla", "beverages", 45, story="not_certified"
    ),
    # groups are QĐ 1048's own (the plan ran under it): brocade is "vải và may mặc"
    Product("Thổ cẩm Jrai Chư Don", "Tổ hợp tác dệt thổ cẩm Chư Don", "Chư Don", "textiles", 57),
    Product("Mít sấy Nhơn Hòa", "Công ty TNHH Nông sản Nhơn Hòa", "Nhơn Hòa", "food", 64),
    Product("Bơ sáp Ia Phang", "HTX Hồ tiêu Ia Phang", "Ia Phang", "food", 53),
    Product("Tinh dầu sả Chư Don", "Cơ sở Tinh dầu Chư Don", "Chư Don", "herbal", 61),
    Product(
        "Du lịch cộng đồng làng Plei Ia Hrú",
        "Tổ hợp tác du lịch Ia Hrú",
        "Ia Hrú",
        "rural_tourism",
        None,
        story="late_idea",
    ),
    Product(
        "Bánh tráng Nhơn Hòa",
        "Cơ sở Bánh tráng Nhơn Hòa",
        "Nhơn Hòa",
        "food",
        None,
        story="rejected",
    ),
]
UPGRADES = [
    Product(
        "Cà phê hạt rang Chư Pưh",
        "Công ty CP Cà phê Chư Pưh",
        "Nhơn Hòa",
        "food",
        76,
        78,
        upgrade=True,
    ),
    Product("Hồ tiêu sạch Ia Hrú", "HTX Tiêu sạch Ia Hrú", "Ia Hrú", "food", 73, 72, upgrade=True),
    Product("Mật ong Ia Le", "Tổ hợp tác ong mật Ia Le", "Ia Le", "food", 75, 75, upgrade=True),
    Product(
        "Tiêu sọ Ia Rong",
        "HTX Nông nghiệp Ia Rong",
        "Ia Rong",
        "food",
        72,
        71,
        upgrade=True,
        has_story=False,
    ),
]

PEOPLE = {
    "phong_nn": ("Phòng Nông nghiệp và PTNT huyện Chư Pưh", "district_officer", COMMUNES),
    "so_nn": ("Sở Nông nghiệp và PTNT Gia Lai", "province_officer", ["*"]),
    "luu_tru": ("Văn thư lưu trữ hồ sơ OCOP tỉnh", "records_officer", ["*"]),
    "ct_huyen": ("Chủ tịch Hội đồng OCOP huyện", "council_chair", ["*"]),
    "ct_tinh": ("Chủ tịch Hội đồng OCOP tỉnh", "council_chair", ["*"]),
    **{
        f"tv_huyen_{i}": (f"Thành viên Hội đồng huyện {i}", "council_member", ["*"])
        for i in range(1, 5)
    },
    **{
        f"tv_tinh_{i}": (f"Thành viên Hội đồng tỉnh {i}", "council_member", ["*"])
        for i in range(1, 7)
    },
}
TARGETS = {
    "products_supported": 17,
    "new_products": 13,
    "upgrades_to_4_stars": 4,
    "new_products_3_stars": 8,
    "organisations": 11,
}


def config_text() -> str:
    lines = [
        "# The 2020 rehearsal of Kế hoạch 57/KH-UBND (Chư Pưh). Written by `make demo`.",
        "[database]",
        'url = "sqlite:///ocop-2020.db"',
        "",
        "[engine]",
        'default_workflow = "ocop-1048"',
        "",
        "[clock]",
        "allow_override = true     # a rehearsal: the clock is stepped through 2020",
        "",
        "[notifications]",
        'channels = ["file"]',
        "",
        "[notifications.file]",
        'path = "outbox.jsonl"',
        "",
        "[documents]",
        'dir = "documents"',
        "",
        "[communes]                # the district's communes and town in 2020",
        "names = [" + ", ".join(f'"{c}"' for c in COMMUNES) + "]",
        "",
        "[targets.2020]",
        *[f"{k} = {v}" for k, v in TARGETS.items()],
        "",
    ]
    for key, (name, role, communes) in PEOPLE.items():
        quoted = ", ".join(f'"{c}"' for c in communes)
        lines += [
            f"[users.{key}]",
            f'name = "{name}"',
            f'roles = ["{role}"]',
            f"communes = [{quoted}]",
            f'email = "{key}@chupuh.gialai.gov.vn"',
            "",
        ]
    lines += [
        "[councils.hd_huyen]",
        'title = "Hội đồng đánh giá, phân hạng sản phẩm OCOP huyện Chư Pưh"',
        'level = "district"',
        'chair = "ct_huyen"',
        "members = [" + ", ".join(f'"tv_huyen_{i}"' for i in range(1, 5)) + "]",
        "",
        "[councils.hd_tinh]",
        'title = "Hội đồng đánh giá, phân hạng sản phẩm OCOP tỉnh Gia Lai"',
        'level = "province"',
        'chair = "ct_tinh"',
        "members = [" + ", ".join(f'"tv_tinh_{i}"' for i in range(1, 7)) + "]",
        "",
    ]
    return "\n".join(lines)


class Rehearsal:
    """The engine on a fresh folder, with a clock the story moves forward."""

    def __init__(self, root: Path, out: Callable[[str], None] = print) -> None:
        from .clock import ManualClock
        from .config import load_config
        from .service import Ocop

        self.root = root
        self.say = out
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        (root / "config.toml").write_text(config_text(), encoding="utf-8")
        self.clock = ManualClock(datetime(2020, 5, 12, 8, 0, tzinfo=TZ).astimezone(UTC))
        self.ocop = Ocop(load_config(root / "config.toml", {}), self.clock)
        self.ocop.init_database()
        self.ids: dict[str, str] = {}
        self.swept_until = self.now

    # --- the clock ------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.instant

    @now.setter
    def now(self, instant: datetime) -> None:
        self.clock.instant = instant

    def on(self, day: str, hour: int = 9) -> None:
        """Move to ``day`` (local), running the daily 08:30 sweep of every day in between."""
        target = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=TZ)
        target = target.replace(hour=hour).astimezone(UTC)
        cursor = self.swept_until.astimezone(TZ).date() + timedelta(days=1)
        while True:
            sweep_at = (
                datetime.combine(cursor, datetime.min.time(), tzinfo=TZ)
                .replace(hour=8, minute=30)
                .astimezone(UTC)
            )
            if sweep_at > target:
                break
            self.now = sweep_at
            self.sweep()
            cursor += timedelta(days=1)
        self.now = max(self.now, target)
        self.swept_until = self.now

    def sweep(self) -> None:
        counts = self.ocop.sweep()
        if counts.timers_fired:
            kinds = self._fired_kinds()
            self.say(
                f"{self.stamp()}  sweep        fired {counts.timers_fired} timer(s) "
                f"({kinds}); {counts.notifications_sent} notification(s) to the outbox"
            )

    def _fired_kinds(self) -> str:
        """What this sweep fired: the timers due by now that fired at this very instant."""
        due = self.ocop.timers(None, due=True, include_all=True)
        fired = [t for t in due if t.status == "fired" and t.fired_at == self.now]
        return ", ".join(f"{t.kind} {t.dossier}" for t in fired)

    def stamp(self) -> str:
        return self.now.astimezone(TZ).strftime("%Y-%m-%d")

    # --- actions --------------------------------------------------------------------------

    def user(self, key: str) -> Any:
        return self.ocop.config.users[key]

    def register(self, p: Product) -> str:
        row = self.ocop.register(
            self.user("phong_nn"),
            product=p.product,
            producer=p.producer,
            commune=p.commune,
            group=p.group,
            workflow="ocop-1048",
            data={"producer_email": f"lienhe@{_slug(p.producer)}.vn"},
        )
        self.ids[p.product] = row.id
        self.say(
            f"{self.stamp()}  phong_nn     register     {row.id}  {p.product} "
            f"({p.producer}, {p.commune})"
        )
        return row.id

    def advance(
        self,
        who: str,
        p: Product,
        trigger: str,
        *,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        moved = self.ocop.advance(
            self.user(who), self.ids[p.product], trigger, reason=reason, data=data
        )
        self.say(
            f"{self.stamp()}  {who:<12} {trigger:<12} {moved.id}  {p.product} → "
            f"{moved.to_state}" + (f"  «{reason}»" if reason else "")
        )

    def attach_all(self, p: Product, kinds: list[str]) -> None:
        folder = self.root / "scans" / self.ids[p.product]
        folder.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            path = folder / f"{kind}.pdf"
            path.write_text(f"{p.product} — {kind} (bản scan)\n", encoding="utf-8")
            self.ocop.attach(self.user("phong_nn"), self.ids[p.product], kind, path)
        self.say(
            f"{self.stamp()}  phong_nn     attach       {self.ids[p.product]}  "
            f"{len(kinds)} document(s): {', '.join(kinds)}"
        )

    def council(self, level: str, p: Product, mean: float) -> None:
        chair, members = (
            ("ct_huyen", [f"tv_huyen_{i}" for i in range(1, 5)])
            if level == "district"
            else ("ct_tinh", [f"tv_tinh_{i}" for i in range(1, 7)])
        )
        present = [chair, *members[: len(members) - 1]]  # one member absent: quorum still met
        wf = self.ocop.registry.get("ocop-1048")
        assert wf.scorecard is not None
        spread = [-2.0, 1.0, 1.0, -1.0, 1.0, 0.0][: len(present)]
        spread[-1] -= sum(spread)
        for member, delta in zip(present, spread, strict=True):
            total = mean + delta
            parts = _split(total, wf.scorecard.parts)
            self.ocop.score(self.user(chair), self.ids[p.product], member=member, parts=parts)
        result = self.ocop.close_scoring(self.user(chair), self.ids[p.product])
        res = result.scoring[level]["result"]
        capped = (
            f" (capped from {res['stars_by_points']}★: no product story)" if res["capped"] else ""
        )
        self.say(
            f"{self.stamp()}  {chair:<12} close_scoring {self.ids[p.product]}  {p.product}: "
            f"{len(present)} of {len(members) + 1} present, mean {res['score']:g} → "
            f"{res['stars']}★{capped}"
        )


def _split(total: float, parts: Mapping[str, float]) -> dict[str, float]:
    """Spread a total over the scorecard parts in proportion to their maxima."""
    out = {k: round(total * v / 100, 1) for k, v in parts.items()}
    last = list(parts)[-1]
    out[last] = round(total - sum(v for k, v in out.items() if k != last), 1)
    return out


def _slug(text: str) -> str:
    import unicodedata

    plain = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in plain.lower() if c.isascii() and c.isalnum())[:24]


MANDATORY = [
    "registration_form",
    "business_plan",
    "organisation",
    "business_registration",
    "samples",
]
FOUR_STAR = ["quality_standard", "lab_test", "product_story"]


def run(root: Path, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Rehearse 2020; returns the progress report of the year."""
    r = Rehearsal(root, out)
    out("== Kế hoạch 57/KH-UBND: OCOP 2020, huyện Chư Pưh (rules: QĐ 1048/QĐ-TTg) ==")
    _import_2019(r)
    out("\n-- Q2: product ideas registered (bước 2) --")
    for i, p in enumerate(NEW):
        r.on(f"2020-05-{18 + i:02d}")
        r.register(p)
    out("\n-- June: ideas accepted; one left unanswered, one refused --")
    r.on("2020-06-08")
    for p in NEW:
        if p.story == "rejected":
            r.advance("phong_nn", p, "reject", reason="Sản phẩm chưa có vùng nguyên liệu ổn định")
        elif p.story != "late_idea":
            r.advance("phong_nn", p, "accept_idea")
    out("\n-- Business plans approved (bước 3); one plan waits past its deadline --")
    r.on("2020-06-29")
    for p in NEW:
        if p.story not in ("rejected", "late_idea", "late_plan"):
            r.advance("phong_nn", p, "approve_plan")
    late_idea = next(p for p in NEW if p.story == "late_idea")
    late_plan = next(p for p in NEW if p.story == "late_plan")
    r.on("2020-07-27")
    r.advance("phong_nn", late_idea, "accept_idea")
    r.on("2020-08-10")
    r.advance("phong_nn", late_plan, "approve_plan")
    r.on("2020-09-07")
    r.advance("phong_nn", late_idea, "approve_plan")
    out("\n-- September: dossiers completed and submitted; 2019 products ask to be upgraded --")
    r.on("2020-09-14")
    for p in NEW:
        if p.district_score is not None:
            r.attach_all(p, MANDATORY + (FOUR_STAR if (p.province_points or 0) >= 70 else []))
            r.advance("phong_nn", p, "submit_dossier")
    for p in UPGRADES:
        r.attach_all(p, MANDATORY + [k for k in FOUR_STAR if p.has_story or k != "product_story"])
        r.advance("phong_nn", p, "upgrade")
    out("\n-- October: the district council scores (bước 5) --")
    r.on("2020-10-06")
    for p in [*NEW, *UPGRADES]:
        if p.district_score is not None:
            r.council("district", p, p.district_score)
    r.on("2020-10-09")  # within the 20 working days the district has (from 14 September)
    decision = 0
    for p in [*NEW, *UPGRADES]:
        if p.district_score is None:
            continue
        if p.story == "not_certified":
            r.advance(
                "phong_nn",
                p,
                "not_certified",
                reason="Chưa đạt 50 điểm; cần hoàn thiện bao bì, nhãn mác",
            )
        else:
            r.advance("phong_nn", p, "forward")
    out("\n-- November: the province council scores and recognises --")
    r.on("2020-11-10")
    for p in [*NEW, *UPGRADES]:
        if p.province_points is not None:
            r.council("province", p, p.province_points)
    r.on("2020-11-17")
    for p in [*NEW, *UPGRADES]:
        if p.province_points is not None:
            decision += 1
            r.advance(
                "so_nn",
                p,
                "certify",
                data={
                    "certificate_no": f"OCOP-GL-2020-{decision:03d}",
                    "decision_no": "812/QĐ-UBND",
                },
            )
    out("\n-- December: the Q4 review of certified products --")
    r.on("2020-12-15")
    for p in [*NEW, *UPGRADES]:
        if p.product in r.ids and _state(r, p) == "promotion":
            r.advance("so_nn", p, "start_review")
    # The product capped at 3★ for lack of a story files it and asks again for 4★: its new
    # evaluation's reminders and deadline fall in the coming weeks (the report's calendar).
    r.on("2020-12-21")
    for p in UPGRADES:
        if not p.has_story and _state(r, p) == "review":
            r.attach_all(p, ["product_story"])
            r.advance("phong_nn", p, "upgrade")
    r.on("2020-12-31", hour=17)
    return _finish(r)


def _import_2019(r: Rehearsal) -> None:

    sheet = r.root / "san-pham-ocop-2019.csv"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "id",
                "product",
                "producer",
                "commune",
                "group",
                "workflow",
                "state",
                "state_entered_at",
                "certified_on",
                "valid_until",
                "stars",
                "certificate_stars",
                "certificate_no",
                "decision_no",
            ]
        )
        for n, p in enumerate(UPGRADES, start=1):
            writer.writerow(
                [
                    f"OCOP-2019-{n:04d}",
                    p.product,
                    p.producer,
                    p.commune,
                    p.group,
                    "ocop-1048",
                    "promotion",
                    "2019-11-20",
                    "2019-11-20",
                    "2022-11-19",
                    3,
                    3,
                    f"OCOP-CP-2019-{n:03d}",
                    "2210/QĐ-UBND",
                ]
            )
    report = r.ocop.import_file(r.user("luu_tru"), sheet)
    for n, p in enumerate(UPGRADES, start=1):
        r.ids[p.product] = f"OCOP-2019-{n:04d}"
    r.say(
        f"{r.stamp()}  luu_tru      import       {sheet.name}: {report.imported} products "
        "certified 3★ in 2019 (state promotion, certificate kept)"
    )


def _state(r: Rehearsal, p: Product) -> str:
    return r.ocop.dossier(None, r.ids[p.product]).state


def _finish(r: Rehearsal) -> dict[str, Any]:
    from .cli import print_progress
    from .html_report import render_year

    report = r.ocop.progress(None, 2020).to_json()
    r.say("\n" + print_progress(report))
    checked = r.ocop.audit_verify(None)
    r.say(
        f"\naudit verify: {'ok' if checked.ok else 'FAILED'} — {checked.dossiers_checked} "
        f"dossiers, {checked.entries_checked} entries"
    )
    html = r.root / "report-2020.html"
    html.write_text(render_year(r.ocop, 2020), encoding="utf-8")
    from .channels import file_settings

    outbox = file_settings(r.ocop.config.notifications)
    lines = (
        outbox.path.read_text(encoding="utf-8").count("\n")
        if outbox and outbox.path.exists()
        else 0
    )
    r.say(f"outbox:      {outbox.path if outbox else '-'} ({lines} notifications)")
    r.say(f"html report: {html}")
    for line in next_steps(r.root):
        r.say(line)
    if not checked.ok:
        raise SystemExit(7)
    report["audit_ok"] = checked.ok
    return report


def _shown(path: Path) -> str:
    """``path`` as a newcomer types it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def next_steps(root: Path) -> list[str]:
    """What to type next, runnable as printed: ``ocop`` is on PATH only in an activated venv."""
    lines = []
    ocop = Path(sys.prefix) / "bin" / "ocop"
    on_path = shutil.which("ocop")
    if ocop.exists() and (on_path is None or Path(on_path).resolve() != ocop.resolve()):
        activate = Path(sys.prefix) / "bin" / "activate"
        lines.append(f"next:        source {_shown(activate)}     # puts `ocop` on PATH")
    lines.append(
        f"try:         OCOP_CONFIG={_shown(root / 'config.toml')} "
        "OCOP_NOW=2020-12-31T17:00+07:00 ocop dossier list"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocop_workflow.demo", description=__doc__)
    parser.add_argument("--dir", default="demo-output", help="where to rehearse (wiped first)")
    args = parser.parse_args(argv)
    from . import log

    log.configure("WARNING")
    run(Path(args.dir).resolve())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
