"""The government's day-off decisions layered over the ``holidays`` package, and local days.

The "official list" below is what the announcements say (each line cites its text); the layered
calendar must agree with every one of them, day by day.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import Workspace, write_config

from ocop_workflow import calendar_data
from ocop_workflow.calendar import WorkCalendar
from ocop_workflow.calendar_data import DayDecision
from ocop_workflow.errors import ConfigError

# (first day off, last day off, first working day after, the announcement)
OFFICIAL_BREAKS = [
    ("2018-12-29", "2019-01-01", "2019-01-02", "Công văn 6519/VPCP-KGVX: Tết Dương lịch 2019"),
    ("2019-02-02", "2019-02-10", "2019-02-11", "Công văn 6519/VPCP-KGVX: Tết Kỷ Hợi"),
    ("2019-04-27", "2019-05-01", "2019-05-02", "Công văn 6519/VPCP-KGVX: 30/4–1/5/2019"),
    ("2020-01-23", "2020-01-29", "2020-01-30", "Tết Canh Tý: 23/1–29/1/2020"),
    ("2023-01-20", "2023-01-26", "2023-01-27", "Tết Quý Mão: 20/1–26/1/2023"),
    ("2023-04-29", "2023-05-03", "2023-05-04", "30/4–1/5/2023 with substitute days"),
    ("2024-04-27", "2024-05-01", "2024-05-02", "Công văn 2450/VPCP-KGVX: 27/4–1/5/2024"),
    ("2024-08-31", "2024-09-03", "2024-09-04", "Quốc khánh 2024: 31/8–3/9"),
    ("2025-01-25", "2025-02-02", "2025-02-03", "Công văn 8726/VPCP-KGVX: Tết Ất Tỵ"),
    ("2025-04-30", "2025-05-04", "2025-05-05", "Công văn 8726/VPCP-KGVX: 30/4–4/5/2025"),
    ("2026-01-01", "2026-01-04", "2026-01-05", "VPCP 25/12/2025: Tết Dương lịch 2026"),
    ("2026-02-14", "2026-02-22", "2026-02-23", "Thông báo 9441 Bộ Nội vụ: Tết Bính Ngọ"),
    ("2026-08-29", "2026-09-02", "2026-09-03", "Thông báo 9441 Bộ Nội vụ: Quốc khánh 2026"),
    ("2021-02-10", "2021-02-16", "2021-02-17", "Tết Tân Sửu: 10/2–16/2/2021"),
    ("2022-01-29", "2022-02-06", "2022-02-07", "Tết Nhâm Dần: 29/1–6/2/2022"),
    ("2024-02-08", "2024-02-14", "2024-02-15", "Tết Giáp Thìn: 8/2–14/2/2024"),
    ("2025-08-30", "2025-09-02", "2025-09-03", "Quốc khánh 2025: 30/8–2/9"),
]
# Saturdays worked (làm bù) by decision.
OFFICIAL_WORKED = [
    ("2019-01-05", "Công văn 6519/VPCP-KGVX"),
    ("2019-05-04", "Công văn 6519/VPCP-KGVX"),
    ("2024-05-04", "Công văn 2450/VPCP-KGVX"),
    ("2025-04-26", "Công văn 8726/VPCP-KGVX"),
    ("2026-01-10", "Văn bản của Văn phòng Chính phủ ngày 25/12/2025"),
    ("2026-08-22", "Thông báo số 9441 của Bộ Nội vụ"),
]


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar("Asia/Ho_Chi_Minh", "VN")


@pytest.mark.parametrize(("first", "last", "back", "text"), OFFICIAL_BREAKS)
def test_every_announced_break_is_off_and_work_resumes_the_day_after(
    cal: WorkCalendar, first: str, last: str, back: str, text: str
) -> None:
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    while day <= end:
        assert not cal.is_working_day(day), f"{day} should be off ({text})"
        day += timedelta(days=1)
    assert cal.is_working_day(date.fromisoformat(back)), text
    assert cal.is_working_day(date.fromisoformat(first) - timedelta(days=1)), text


@pytest.mark.parametrize(("day", "text"), OFFICIAL_WORKED)
def test_make_up_saturdays_are_worked_with_their_source(
    cal: WorkCalendar, day: str, text: str
) -> None:
    worked = date.fromisoformat(day)
    assert cal.is_working_day(worked)
    _, source = cal.named(worked) or ("", "")
    assert source.startswith(text)


def test_one_working_day_after_new_year_eve_2025_is_monday_5_january_2026(
    cal: WorkCalendar,
) -> None:
    assert cal.add_working_days(date(2025, 12, 31), 1) == date(2026, 1, 5)
    assert cal.why_off(date(2026, 1, 2)).startswith("Nghỉ Tết Dương lịch 2026")


def test_package_entries_no_text_supports_are_ordinary_days(cal: WorkCalendar) -> None:
    # The holidays package has 24/11 ("Ngày Văn hóa Việt Nam") from 2026; no law in force yet.
    assert cal.is_working_day(date(2026, 11, 24))
    assert cal.is_working_day(date(2027, 11, 24))
    days_off, _ = cal.year(2026)
    assert "2026-11-24" not in {d["date"] for d in days_off}


def test_every_shipped_entry_names_its_source_and_the_data_file_says_what_is_unconfirmed() -> None:
    data = calendar_data.load("VN")
    assert data.days and data.periods and data.unconfirmed
    assert all(d.source and d.name for d in data.days.values())
    assert all(u.reason for u in data.unconfirmed)
    text = (Path(calendar_data.__file__).parent / "data" / "vn-days-off.toml").read_text("utf-8")
    assert "Ngày Văn hóa Việt Nam" in text


def test_a_local_day_off_counts_and_is_listed_with_its_source() -> None:
    local = (DayDecision(date(2026, 3, 10), True, "Lễ hội tỉnh", "QĐ 12/QĐ-UBND tỉnh X", True),)
    cal = WorkCalendar("Asia/Ho_Chi_Minh", "VN", local=local)
    assert not cal.is_working_day(date(2026, 3, 10))
    assert cal.add_working_days(date(2026, 3, 9), 1) == date(2026, 3, 11)
    days_off, _ = cal.year(2026)
    expected = {"date": "2026-03-10", "name": "Lễ hội tỉnh", "source": "QĐ 12/QĐ-UBND tỉnh X"}
    assert expected in days_off
    assert cal.fingerprint != WorkCalendar().fingerprint


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"date": "2026-03-10", "status": "off", "name": "X"}, "'source' is required"),
        ({"date": "2026-03-14", "status": "off", "name": "X", "source": "Y"}, "weekend day"),
        ({"date": "2026-03-10", "status": "worked", "name": "X", "source": "Y"}, "Saturday"),
        ({"date": "10/3/2026", "status": "off", "name": "X", "source": "Y"}, "YYYY-MM-DD"),
        ({"date": "2026-03-10", "status": "maybe", "name": "X", "source": "Y"}, "'status'"),
        ({"date": "2026-03-10", "status": "off", "name": "X", "source": "Y", "z": 1}, "unknown"),
        ({"date": "2026-03-10", "status": "off", "name": "X\nY", "source": "Y"}, "one line"),
    ],
)
def test_a_bad_local_day_is_refused_naming_the_key(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        calendar_data.parse_local({"days": [entry]})
    assert "calendar.days[0]" in str(caught.value)


def test_a_local_entry_cannot_undo_a_national_decision() -> None:
    local = calendar_data.parse_local(
        {"days": [{"date": "2026-01-10", "status": "worked", "name": "X", "source": "Y"}]}
    )
    with pytest.raises(ConfigError, match="already decided nationally"):
        WorkCalendar("Asia/Ho_Chi_Minh", "VN", local=local)


def test_cli_calendar_add_answers_the_office_question(tmp_path: Path) -> None:
    write_config(tmp_path)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'none.db'}")
    done = ws.run("calendar", "add", "--from", "2025-12-31", "--working-days", "1", "--json")
    assert done.code == 0, done
    document = done.json()
    assert document["date"] == "2026-01-05"
    assert [d["date"] for d in document["days_off"]] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
    ]
    assert not (tmp_path / "none.db").exists()  # a calendar question never touches the database
    bad = ws.run("calendar", "add", "--from", "31/12/2025", "--working-days", "1")
    assert bad.code == 2 and bad.stderr.startswith("error: --from")


def test_cli_calendar_show_lists_days_off_and_worked_days_with_config_days(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        extra='\n[[calendar.days]]\ndate = 2026-03-10\nstatus = "off"\n'
        'name = "Lễ hội tỉnh"\nsource = "QĐ 12/QĐ-UBND"\n',
    )
    ws = Workspace(tmp_path, "sqlite:///unused.db")
    done = ws.run("calendar", "show", "--year", "2026", "--json")
    assert done.code == 0, done
    document = done.json()
    off = {d["date"]: d for d in document["days_off"]}
    assert off["2026-01-02"]["source"].startswith("Văn bản của Văn phòng Chính phủ")
    assert off["2026-03-10"]["source"] == "QĐ 12/QĐ-UBND"
    assert [d["date"] for d in document["worked_days"]] == ["2026-01-10", "2026-08-22"]
    text = ws.run("calendar", "show", "--year", "2026")
    assert "02/01/2026 Thứ Sáu" in text.stdout


def test_cli_refuses_a_calendar_day_without_source(tmp_path: Path) -> None:
    write_config(
        tmp_path, extra='\n[[calendar.days]]\ndate = 2026-03-10\nstatus = "off"\nname = "X"\n'
    )
    done = Workspace(tmp_path, "sqlite:///unused.db").run("calendar", "show", "--year", "2026")
    assert done.code == 1
    assert done.stderr.strip() == (
        "error: config key 'calendar.days[0]': 'source' is required (a non-empty text)"
    )
