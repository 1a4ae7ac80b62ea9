"""The trust model made true where it can be: under ``require_os_user`` the config is trusted only
if no other login could have written it, and database credentials in it are not world-readable.

What no program can do — stop a login that holds the database credentials itself — is said in
the README; these tests pin what the CLI does promise.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from conftest import Result, Workspace, write_config

LOGIN = pwd.getpwuid(os.geteuid()).pw_name
SECURITY = f"""
[security]
require_os_user = true

[users.me]
name = "Cán bộ tại máy này"
roles = ["commune_officer"]
communes = ["Ia Le"]
os_user = "{LOGIN}"
"""


def workspace_with(tmp_path: Path, *, mode: int, url: str | None = None) -> Workspace:
    config = write_config(tmp_path, extra=SECURITY)
    if url is not None:
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('url = "sqlite:///unused.db"', f'url = "{url}"'))
    config.chmod(mode)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.extra_env["OCOP_DATABASE_URL"] = ""  # the config's own url is the one under test
    return ws


def error_line(result: Result) -> str:
    assert result.code == 1, str(result)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_require_os_user_refuses_a_config_another_login_could_write(
    tmp_path: Path, mode: int
) -> None:
    ws = workspace_with(tmp_path, mode=mode)
    line = error_line(ws.run("workflow", "list"))
    assert "writable by other logins" in line and "chmod go-w" in line


def test_require_os_user_trusts_a_config_only_its_owner_writes(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, mode=0o644)
    assert ws.run("workflow", "list").code == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")
def test_require_os_user_refuses_a_config_owned_by_another_login(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, mode=0o644)
    os.chown(ws.config, 65534, -1)
    line = error_line(ws.run("workflow", "list"))
    assert "owned by uid 65534" in line


def test_require_os_user_refuses_a_database_password_every_login_can_read(
    tmp_path: Path,
) -> None:
    url = "postgresql+psycopg://ocop:mat-khau-bi-mat@127.0.0.1:5432/ocop"
    ws = workspace_with(tmp_path, mode=0o644, url=url)
    result = ws.run("workflow", "list")
    line = error_line(result)
    assert "readable only by the service account" in line
    assert "mat-khau-bi-mat" not in result.stderr + result.stdout
    ws.config.chmod(0o640)
    assert ws.run("workflow", "list").code == 0


def test_without_require_os_user_a_config_is_read_as_it_is(tmp_path: Path) -> None:
    """The checks belong to the shared-server promise; a single-user install is left alone."""
    config = write_config(tmp_path)
    config.chmod(0o666)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    assert ws.run("workflow", "list").code == 0
