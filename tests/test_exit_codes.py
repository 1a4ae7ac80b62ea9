"""Every exit code of interface.md, produced through the real ``ocop`` subprocess.

0 done, 1 configuration/environment, 2 usage, 3 not found, 4 refused, 5 conflict, 6 permission,
7 audit. Whatever the failure: no traceback, an ``error:`` line on stderr, with ``--json`` an
error document on stdout, and the database exactly as before.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, Workspace, dump_database, write_config

T0 = "2026-03-02T09:00:00+07:00"
PRODUCT = "Cà phê bột Ia Le"
PRODUCER = "HTX Cà phê Ia Le"
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/ocop"
LOGIN = pwd.getpwuid(os.geteuid()).pw_name


# --- helpers ------------------------------------------------------------------------------------


def ok(ws: Workspace, *args: str, user: str | None = None, now: str | None = T0, **env: str) -> Any:
    result = ws.run(*args, "--json", user=user, now=now, **env)
    assert result.code == 0, str(result)
    assert "Traceback" not in result.stderr
    return result.json()


def fails(
    ws: Workspace,
    exit_code: int,
    code: str | None,
    *args: str,
    user: str | None = None,
    now: str | None = T0,
    unchanged: bool = True,
    **env: str,
) -> Result:
    """Run ``ocop ARGS --json``: exit ``exit_code``, no traceback, the error on stderr, the JSON
    error document (``code``) on stdout, and (``unchanged``) not one row of the database changed."""
    before = dump_database(ws.url) if unchanged else None
    result = ws.run(*args, "--json", user=user, now=now, **env)
    assert result.code == exit_code, str(result)
    assert "Traceback" not in result.stderr, result.stderr
    assert "error" in result.stderr.lower(), result.stderr
    if code is not None:
        document = json.loads(result.stdout)
        assert document["error"]["code"] == code, document
        assert document["error"]["message"]
    if before is not None:
        assert dump_database(ws.url) == before, f"ocop {' '.join(args)} changed the database"
    return result


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def register(ws: Workspace, *extra: str, user: str = "htx_iale", now: str | None = T0) -> str:
    document = ok(
        ws,
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        *extra,
        user=user,
        now=now,
    )
    return str(document["id"])


# --- 0 ------------------------------------------------------------------------------------------


def test_init_again_exits_0_and_changes_nothing(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    document = ok(ws, "init", now=None)
    assert document["revision"] == document["revision_before"]
    assert dump_database(ws.url) == before
    names = [w["name"] for w in ok(ws, "workflow", "list", now=None)]
    assert "ocop-1489" in names


# --- 1: configuration and environment -----------------------------------------------------------


def test_bad_toml_exits_1_naming_the_config_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + "\n[engine\n", encoding="utf-8")
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    result = fails(ws, 1, "config", "dossier", "list", unchanged=False)
    line = one_error_line(result)
    assert "config.toml" in line
    assert "TOML" in line


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[security]\nrequire_os_usr = true\n", "security.require_os_usr"),
        (
            '[users.mai]\nname = "Mai"\nroles = ["council_member"]\nphone = "0901"\n',
            "users.mai.phone",
        ),
        ('[scheduler]\nsweep_interval_seconds = "often"\n', "scheduler.sweep_interval_seconds"),
        ('[users.mai]\nname = "Mai"\n', "users.mai.roles"),
    ],
    ids=["unknown-key", "unknown-user-key", "wrong-type", "missing-key"],
)
def test_config_problem_exits_1_naming_the_key(tmp_path: Path, extra: str, key: str) -> None:
    write_config(tmp_path, extra=extra)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    result = fails(ws, 1, "config", "dossier", "list", unchanged=False)
    assert key in one_error_line(result)


def test_unreachable_database_exits_1(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    result = fails(
        ws,
        1,
        "environment",
        "dossier",
        "advance",
        "OCOP-2026-0001",
        "accept_idea",
        user="lan",
        unchanged=False,
        OCOP_DATABASE_URL=UNREACHABLE,
    )
    line = one_error_line(result)
    assert "unreachable" in line
    assert "127.0.0.1" in line


def test_clock_override_refused_exits_1_when_not_allowed(tmp_path: Path) -> None:
    write_config(tmp_path, allow_override=False)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    result = fails(
        ws,
        1,
        "config",
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        user="htx_iale",
        now=T0,
    )
    line = one_error_line(result)
    assert "OCOP_NOW" in line
    assert "allow_override" in line
    # without the override the same command works: it was the clock that was refused
    dossier_id = register(ws, now=None)
    assert [d["id"] for d in ok(ws, "dossier", "list", now=None)] == [dossier_id]


def test_uninitialised_sqlite_database_exits_1_asking_for_init(tmp_path: Path) -> None:
    write_config(tmp_path)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'never-initialised.db'}")
    for args, user in (
        (("dossier", "list"), None),
        (
            (
                "dossier",
                "register",
                "--product",
                PRODUCT,
                "--producer",
                PRODUCER,
                "--commune",
                "Ia Le",
            ),
            "htx_iale",
        ),
    ):
        result = fails(ws, 1, "environment", *args, user=user, unchanged=False)
        assert "ocop init" in one_error_line(result)
    assert dump_database(ws.url) == {}


def test_uninitialised_postgres_schema_exits_1_asking_for_init(tmp_path: Path, pg_url: str) -> None:
    write_config(tmp_path)
    ws = Workspace(tmp_path, pg_url)
    result = fails(ws, 1, "environment", "dossier", "list", unchanged=False)
    assert "ocop init" in one_error_line(result)
    assert dump_database(ws.url) == {}


# --- 2: usage -----------------------------------------------------------------------------------


def test_malformed_values_exit_2_and_write_nothing(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    d = register(ws)
    cases: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("dossier", "advance", d, "accept_idea", "--bogus"), ("--bogus",)),
        (("dossier", "advance", d, "accept_idea", "--set", "note"), ("note", "KEY=VALUE")),
        (("dossier", "advance", d, "accept_idea", "--set", "colour=red"), ("colour",)),
        (("dossier", "advance", d, "accept_idea", "--set", "stars=abc"), ("stars",)),
        (
            ("dossier", "advance", d, "accept_idea", "--set", "producer_email=not-an-address"),
            ("producer_email",),
        ),
        (
            ("dossier", "advance", d, "accept_idea", "--set", "certified_on=2026-01-01"),
            ("certified_on", "protected"),
        ),
        (
            (
                "dossier",
                "register",
                "--product",
                "X",
                "--producer",
                PRODUCER,
                "--commune",
                "Ia Le",
                "--set",
                "certified_on=2026-01-01",
            ),
            ("certified_on", "protected"),
        ),
        (("dossier", "frobnicate", d), ("frobnicate",)),
    ]
    for args, named in cases:
        result = fails(ws, 2, "usage", *args, user="lan")
        for name in named:
            assert name in result.stderr, (args, result.stderr)
    entries = ok(ws, "dossier", "history", d)
    assert [e["trigger"] for e in entries] == ["register"]


def test_option_parser_errors_are_one_error_line_on_stderr(sqlite_workspace: Workspace) -> None:
    """interface.md: errors are one line ``error: …`` on stderr — the option parser's too."""
    ws = sqlite_workspace
    result = ws.run("dossier", "list", "--bogus")
    assert result.code == 2, str(result)
    assert "Traceback" not in result.stderr
    line = one_error_line(result)
    assert "--bogus" in line


# --- 3: not found -------------------------------------------------------------------------------


def test_unknown_names_exit_3(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    d = register(ws)
    cases: list[tuple[tuple[str, ...], str | None, str]] = [
        (("dossier", "advance", "OCOP-1999-0404", "accept_idea"), "lan", "OCOP-1999-0404"),
        (("dossier", "show", "OCOP-1999-0404"), None, "OCOP-1999-0404"),
        (
            (
                "dossier",
                "register",
                "--product",
                PRODUCT,
                "--producer",
                PRODUCER,
                "--commune",
                "Ia Le",
                "--workflow",
                "ocop-2099",
            ),
            "htx_iale",
            "ocop-2099",
        ),
        (("--as", "nobody", "dossier", "advance", d, "accept_idea"), None, "nobody"),
        (("dossier", "advance", d, "accept_idea"), "nobody", "nobody"),
        (("dossier", "advance", d, "approve_idea"), "lan", "approve_idea"),
    ]
    for args, user, named in cases:
        result = fails(ws, 3, "not_found", *args, user=user)
        assert named in one_error_line(result), (args, result.stderr)


def test_reading_commands_refuse_unknown_names_rather_than_answer_nothing(
    sqlite_workspace: Workspace,
) -> None:
    # an empty list for a misspelt name reads as "nothing waiting": it must be an error instead
    ws = sqlite_workspace
    d = register(ws)
    cases: list[tuple[tuple[str, ...], str | None, str]] = [
        (("dossier", "list", "--state", "bussiness_plan"), None, "bussiness_plan"),
        (
            ("dossier", "list", "--state", "evaluation_district", "--workflow", "ocop-1489"),
            None,
            "evaluation_district",
        ),
        (("dossier", "list", "--stage", "evaluating"), None, "evaluating"),
        (("dossier", "list", "--workflow", "ocop-2099"), None, "ocop-2099"),
        (("timers", "list", "--dossier", "OCOP-1999-0404"), None, "OCOP-1999-0404"),
        (("notifications", "list", "--dossier", "OCOP-1999-0404"), None, "OCOP-1999-0404"),
        (("audit", "verify", "--dossier", "OCOP-1999-0404"), None, "OCOP-1999-0404"),
        (("--as", "nobody", "dossier", "list"), None, "nobody"),
    ]
    for args, user, named in cases:
        result = fails(ws, 3, "not_found", *args, user=user)
        assert named in one_error_line(result), (args, result.stderr)
    # the same filters with real names answer normally
    assert [
        r["id"]
        for r in ok(ws, "dossier", "list", "--state", "registration", "--workflow", "ocop-1489")
    ] == [d]
    assert ok(ws, "dossier", "list", "--state", "evaluation_district") == []  # a 148 state
    assert ok(ws, "audit", "verify", "--dossier", d)["ok"] is True
    # a stale OCOP_USER in a cron job's environment does not stop the commands that need no
    # acting user; it is refused where an actor is needed
    assert ok(ws, "audit", "verify", user="nobody")["ok"] is True
    assert set(ok(ws, "sweep", user="nobody")) >= {"timers_fired", "notifications_sent"}
    fails(ws, 3, "not_found", "dossier", "advance", d, "accept_idea", user="nobody")


# --- 4: refused ---------------------------------------------------------------------------------


def test_refused_transition_exits_4_naming_the_state_or_the_guard(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    d = register(ws)
    result = fails(ws, 4, "refused", "dossier", "advance", d, "approve_plan", user="lan")
    assert "registration" in one_error_line(result)
    result = fails(ws, 4, "refused", "dossier", "advance", d, "reject", user="lan")
    assert "reason_given" in one_error_line(result)


# --- 5: conflict --------------------------------------------------------------------------------


def test_stale_expect_version_exits_5_and_writes_nothing(workspace: Workspace) -> None:
    ws = workspace
    d = register(ws)
    ok(ws, "dossier", "advance", d, "accept_idea", "--expect-version", "1", user="lan")
    result = fails(
        ws,
        5,
        "conflict",
        "dossier",
        "advance",
        d,
        "approve_plan",
        "--expect-version",
        "1",
        user="lan",
    )
    line = one_error_line(result)
    assert "version 2" in line
    moved = ok(ws, "dossier", "advance", d, "approve_plan", "--expect-version", "2", user="lan")
    assert moved["to"] == "production"


def test_duplicate_id_on_register_exits_5_and_writes_nothing(workspace: Workspace) -> None:
    ws = workspace
    register(ws, "--id", "IALE-2026-01")
    result = fails(
        ws,
        5,
        "conflict",
        "dossier",
        "register",
        "--product",
        "Khác",
        "--producer",
        "Tổ hợp tác Khác",
        "--commune",
        "Ia Le",
        "--id",
        "IALE-2026-01",
        user="lan",
    )
    assert "IALE-2026-01" in one_error_line(result)
    shown = ok(ws, "dossier", "show", "IALE-2026-01")
    assert shown["product"] == PRODUCT


# --- 6: permission ------------------------------------------------------------------------------


def test_permission_denied_exits_6(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    d = register(ws)
    cases: list[tuple[tuple[str, ...], str | None, str]] = [
        # the role: neither a producer nor a council member accepts an idea
        (("dossier", "advance", d, "accept_idea"), "htx_iale", "commune_officer"),
        (("dossier", "advance", d, "accept_idea"), "council", "commune_officer"),
        # the commune: Tuấn is a commune officer of Ia Phang
        (("dossier", "advance", d, "accept_idea"), "tuan", "Ia Le"),
        (
            (
                "dossier",
                "register",
                "--product",
                "Tiêu",
                "--producer",
                "Tổ hợp tác Tiêu",
                "--commune",
                "Ia Le",
            ),
            "tuan",
            "Ia Le",
        ),
        # the organisation: another producer of the same commune
        (
            ("dossier", "advance", d, "withdraw", "--reason", "Rút"),
            "htx_other",
            "HTX Hồ tiêu Ia Le",
        ),
        (
            (
                "dossier",
                "register",
                "--product",
                PRODUCT,
                "--producer",
                PRODUCER,
                "--commune",
                "Ia Le",
            ),
            "htx_other",
            "HTX Hồ tiêu Ia Le",
        ),
        # a council member registers nothing
        (
            (
                "dossier",
                "register",
                "--product",
                PRODUCT,
                "--producer",
                PRODUCER,
                "--commune",
                "Ia Le",
            ),
            "council",
            "council",
        ),
        # the scheduler's identity cannot be claimed
        (("dossier", "advance", d, "accept_idea"), "system", "system"),
        (
            (
                "--as",
                "system",
                "dossier",
                "register",
                "--product",
                PRODUCT,
                "--producer",
                PRODUCER,
                "--commune",
                "Ia Le",
            ),
            None,
            "system",
        ),
    ]
    for args, user, named in cases:
        result = fails(ws, 6, "permission_denied", *args, user=user)
        assert named in one_error_line(result), (args, user, result.stderr)


# --- 7: audit -----------------------------------------------------------------------------------


def test_audit_verify_exits_7_naming_the_tampered_entry(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    tampered = register(ws)
    ok(ws, "dossier", "advance", tampered, "reject", "--reason", "Chưa đủ điều kiện", user="lan")
    intact = register(ws, "--id", "IALE-INTACT")
    assert ok(ws, "audit", "verify")["ok"] is True

    path = ws.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        # append-only: the database itself refuses the edit while its trigger is there
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("UPDATE audit_entry SET reason = 'Đã đủ điều kiện' WHERE seq = 2")
        conn.execute("DROP TRIGGER audit_entry_no_update")
        changed = conn.execute(
            "UPDATE audit_entry SET reason = 'Đã đủ điều kiện' WHERE dossier_id = ? AND seq = 2",
            (tampered,),
        ).rowcount
        assert changed == 1
    conn.close()

    result = ws.run("audit", "verify", "--json")
    assert result.code == 7, str(result)
    assert "Traceback" not in result.stderr
    report = result.json()
    assert report["ok"] is False
    assert report["dossiers_checked"] == 2
    assert [(p["dossier"], p["seq"]) for p in report["problems"]] == [(tampered, 2)]
    line = one_error_line(result)
    assert tampered in line and "2" in line

    human = ws.run("audit", "verify")
    assert human.code == 7, str(human)
    assert tampered in human.stdout
    assert "entry 2" in human.stdout

    # the untouched chain still verifies on its own
    alone = ok(ws, "audit", "verify", "--dossier", intact)
    assert alone["ok"] is True
    result = ws.run("audit", "verify", "--dossier", tampered, "--json")
    assert result.code == 7, str(result)


# --- who acts: require_os_user ------------------------------------------------------------------

OS_USERS = f"""
[security]
require_os_user = true

[users.me]
name = "Cán bộ tại máy này"
roles = ["commune_officer"]
communes = ["Ia Le"]
os_user = "{LOGIN}"

[users.other]
name = "Cán bộ khác"
roles = ["commune_officer"]
communes = ["Ia Le"]
os_user = "someone-else-{LOGIN}"
"""


def test_require_os_user_acts_only_as_the_login_of_the_effective_uid(tmp_path: Path) -> None:
    write_config(tmp_path, extra=OS_USERS)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    other_login = f"someone-else-{LOGIN}"
    registering = (
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
    )

    # asking to act as anyone else is refused, however it is asked
    for user, extra_args in (("lan", ()), ("other", ()), (None, ("--as", "other"))):
        result = fails(ws, 6, "permission_denied", *extra_args, *registering, user=user)
        assert LOGIN in one_error_line(result)
    # $USER and $LOGNAME are not who the process is
    fails(
        ws,
        6,
        "permission_denied",
        *registering,
        user="other",
        USER=other_login,
        LOGNAME=other_login,
    )

    mine = ok(ws, *registering, "--id", "MINE-1", user="me")
    assert mine["id"] == "MINE-1"
    spoofed = ok(ws, *registering, "--id", "MINE-2", USER=other_login, LOGNAME=other_login)
    assert spoofed["id"] == "MINE-2"
    actors = [ok(ws, "dossier", "history", d)[0]["actor"] for d in ("MINE-1", "MINE-2")]
    assert actors == ["me", "me"]


def test_require_os_user_refuses_a_login_with_no_user(tmp_path: Path) -> None:
    extra = OS_USERS.replace(f'os_user = "{LOGIN}"', 'os_user = "nobody-logs-in-as-this"')
    write_config(tmp_path, extra=extra)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    result = fails(
        ws,
        6,
        "permission_denied",
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        user="lan",
        USER="lan",
    )
    assert LOGIN in one_error_line(result)


def test_require_os_user_ignores_the_shared_default_user_and_lets_the_login_act(
    tmp_path: Path,
) -> None:
    # the shipped config names a default_user; on a shared server that must not lock out
    # every officer whose login is not that user
    write_config(tmp_path, extra=OS_USERS + '\n[cli]\ndefault_user = "other"\n')
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    registered = ok(
        ws,
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        "--id",
        "MINE-3",
    )
    assert registered["id"] == "MINE-3"
    assert ok(ws, "dossier", "history", "MINE-3")[0]["actor"] == "me"
    # naming the default user explicitly is still refused
    fails(
        ws,
        6,
        "permission_denied",
        "dossier",
        "register",
        "--product",
        PRODUCT,
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        user="other",
    )
