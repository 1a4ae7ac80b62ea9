"""A person's terminal shows results: no log lines unless asked, times to the second, whole
explanations of a deadline."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

from conftest import Workspace

from ocop_workflow.calendar import WEEKEND_NAMES
from ocop_workflow.render import days_off_text

REGISTER = (
    "dossier",
    "register",
    "--product",
    "Cà phê bột",
    "--producer",
    "HTX Cà phê Ia Le",
    "--commune",
    "Ia Le",
    "--group",
    "food",
)
BEFORE_TET = "2026-02-10T09:00:00.123456+07:00"


def on_a_terminal(ws: Workspace, *args: str, **env: str) -> tuple[int, str, str]:
    """Run ``ocop ARGS`` with stderr on a pseudo-terminal (as a person's shell has it)."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ocop_workflow", *args],
            stdout=subprocess.PIPE,
            stderr=follower,
            env=ws.env(**env),
            cwd=ws.root,
            timeout=120,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return done.returncode, done.stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_a_terminal_shows_the_result_and_no_log_lines(sqlite_workspace: Workspace) -> None:
    code, out, err = on_a_terminal(sqlite_workspace, *REGISTER, OCOP_USER="htx_iale")
    assert code == 0
    assert out.startswith("registered OCOP-")
    assert "dossier.registered" not in err and err.strip() == ""


def test_verbose_or_a_log_level_shows_the_log_on_a_terminal_to_the_second(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    code, _, err = on_a_terminal(ws, "--verbose", *REGISTER, OCOP_USER="htx_iale")
    assert code == 0 and "dossier.registered" in err
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", err), err
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", err), err  # no fraction of a second
    with ws.config.open("a", encoding="utf-8") as config:
        config.write('\n[log]\nlevel = "info"\n')
    code, _, err = on_a_terminal(ws, *REGISTER, OCOP_USER="htx_iale")
    assert code == 0 and "dossier.registered" in err


def test_a_pipe_still_gets_every_event_as_a_json_line(sqlite_workspace: Workspace) -> None:
    done = sqlite_workspace.run(*REGISTER, user="htx_iale", check=True)
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["event"] for e in events] == ["dossier.registered"]


def test_an_unknown_log_level_is_a_configuration_error(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    with ws.config.open("a", encoding="utf-8") as config:
        config.write('\n[log]\nlevel = "loud"\n')
    done = ws.run("dossier", "list")
    assert done.code == 1 and "log.level" in done.stderr


def test_dossier_show_gives_times_to_the_second_and_names_every_day_off_skipped(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    ws.run(*REGISTER, "--id", "T-1", user="htx_iale", now=BEFORE_TET, check=True)
    shown = ws.run("dossier", "show", "T-1", now=BEFORE_TET, check=True).stdout
    since = next(line for line in shown.splitlines() if line.strip().startswith("since"))
    assert since.split()[-1] == "2026-02-10T09:00:00+07:00"
    off = ws.run("dossier", "show", "T-1", "--json", now=BEFORE_TET).json()["deadline"]["days_off"]
    named = [(day, why) for day, why in off if why not in WEEKEND_NAMES]
    assert named, off  # Tết falls in the period
    line = next(line.strip() for line in shown.splitlines() if "days off" in line)
    weekends = len(off) - len(named)
    assert line.startswith(f"skipping {len(off)} days off: {weekends} weekend days; ")
    for _, why in named:  # each name, whole or as its part before the shared "Tết Nguyên Đán"
        assert why in line or why.removesuffix(" Tết Nguyên Đán") in line, why
    # every named day is in the text: as itself, or inside a range "first to last"
    ranges = re.findall(r"(\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)", line)
    for day, _ in named:
        assert day in line or any(a <= day <= b for a, b in ranges), day


def test_days_off_run_together_under_one_name_and_weekends_are_counted() -> None:
    off = [
        ("2026-04-25", "Thứ Bảy"),
        ("2026-04-26", "Chủ nhật"),
        ("2026-04-27", "Nghỉ bù Giỗ Tổ Hùng Vương"),
        ("2026-04-30", "Ngày Chiến thắng"),
        ("2026-05-01", "Ngày Quốc tế Lao động"),
        ("2026-08-31", "Nghỉ hoán đổi (làm bù Thứ Bảy 2026-08-22)"),
        ("2026-09-01", "Quốc khánh"),
        ("2026-09-02", "Quốc khánh"),
    ]
    assert days_off_text(off, WEEKEND_NAMES) == (
        "skipping 8 days off: 2 weekend days; Nghỉ bù Giỗ Tổ Hùng Vương 2026-04-27; "
        "Ngày Chiến thắng 2026-04-30; Ngày Quốc tế Lao động 2026-05-01; "
        "Nghỉ hoán đổi (làm bù Thứ Bảy 2026-08-22) 2026-08-31; "
        "Quốc khánh 2026-09-01 to 2026-09-02 (2 days)"
    )
    assert days_off_text([("2026-01-01", "Tết Dương lịch")], WEEKEND_NAMES) == (
        "skipping 1 day off: Tết Dương lịch 2026-01-01"
    )


def test_a_run_of_days_off_sharing_the_end_of_their_names_is_one_group_naming_each_day() -> None:
    tet = [
        ("2026-02-14", "Thứ Bảy"),
        ("2026-02-15", "Chủ nhật"),
        ("2026-02-16", "Giao thừa Tết Nguyên Đán"),
        ("2026-02-17", "Tết Nguyên Đán"),
        ("2026-02-18", "Mùng hai Tết Nguyên Đán"),
        ("2026-02-19", "Mùng ba Tết Nguyên Đán"),
    ]
    assert days_off_text(tet, WEEKEND_NAMES) == (
        "skipping 6 days off: 2 weekend days; Tết Nguyên Đán 2026-02-16 to 2026-02-19 "
        "(4 days: Giao thừa, Tết Nguyên Đán, Mùng hai, Mùng ba)"
    )
    hung_kings = [("2026-04-26", "Giỗ Tổ Hùng Vương"), ("2026-04-27", "Nghỉ bù Giỗ Tổ Hùng Vương")]
    assert days_off_text(hung_kings, WEEKEND_NAMES) == (
        "skipping 2 days off: Giỗ Tổ Hùng Vương 2026-04-26 to 2026-04-27 "
        "(2 days: Giỗ Tổ Hùng Vương, Nghỉ bù)"
    )


def test_register_and_advance_print_the_deadline_as_the_tables_do(
    sqlite_workspace: Workspace,
) -> None:
    """A person reads "deadline 2026-03-16 17:00" (local date and minute, as `dossier list`
    prints it), not the JSON's ISO text with seconds and offset."""
    ws = sqlite_workspace
    now = "2026-03-02T09:00:00+07:00"
    made = ws.run(*REGISTER, user="htx_iale", now=now)
    assert made.code == 0, made
    dossier_id = made.stdout.split()[1].rstrip(":")
    shown = ws.run("dossier", "show", dossier_id, "--json", now=now).json()
    local = shown["deadline_at"][:16].replace("T", " ")
    assert made.stdout.rstrip().endswith(f", deadline {local}"), made
    moved = ws.run("dossier", "advance", dossier_id, "accept_idea", user="lan", now=now)
    assert moved.code == 0, moved
    assert re.search(r", deadline \d{4}-\d\d-\d\d \d\d:\d\d$", moved.stdout.rstrip()), moved
