"""Every command says what it does, and asking for help is fast: no database code is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from ocop_workflow.cli import _commands, cli

COMMANDS = sorted(_commands(cli))


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", code] if code else [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


def test_the_command_walk_finds_every_group_and_its_commands() -> None:
    names = {name for name, _ in COMMANDS}
    for expected in (
        "init",
        "workflow validate",
        "dossier register",
        "dossier advance",
        "dossier history",
        "timers list",
        "notifications list",
        "sweep",
        "worker",
        "audit verify",
        "audit export",
    ):
        assert expected in names
    assert any(isinstance(command, click.Group) for _, command in COMMANDS)


def test_the_top_level_command_has_help_text() -> None:
    assert cli.help and cli.help.strip()


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_and_group_has_help_text(name: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"ocop {name} has no help text"
    short = command.get_short_help_str(limit=80)
    assert short.strip(), f"ocop {name} has no one-line summary for its group's listing"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_of_every_command_has_help_text(name: str, command: click.Command) -> None:
    bare = [
        "/".join(param.opts)
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not param.help
    ]
    assert not bare, f"ocop {name}: options without help: {', '.join(bare)}"


def test_ocop_help_exits_0_and_lists_the_groups() -> None:
    done = run_python("", "-m", "ocop_workflow", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ocop")
    for group in ("dossier", "workflow", "audit", "timers", "notifications"):
        assert group in done.stdout
    assert done.stderr == ""


def test_ocop_help_imports_no_database_code() -> None:
    done = run_python("", "-X", "importtime", "-m", "ocop_workflow", "--help")
    assert done.returncode == 0, done.stderr
    imported = {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "ocop_workflow.cli" in imported  # the measurement itself worked
    heavy = sorted(
        m for m in imported if m.split(".")[0] in {"sqlalchemy", "sqlmodel", "alembic", "psycopg"}
    )
    assert not heavy, f"ocop --help imported {heavy[:5]}"


def test_help_of_every_command_imports_no_database_code() -> None:
    """``ocop X --help`` for every X, in one interpreter; then look at what got imported."""
    paths = [name.split() for name, _ in COMMANDS]
    code = f"""
import json, sys
from ocop_workflow.cli import main
failed = []
for path in {paths!r}:
    try:
        main([*path, "--help"])
    except SystemExit as done:
        if done.code not in (0, None):
            failed.append(path)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "transitions", "apscheduler"))
print(json.dumps({{"failed": failed, "heavy": heavy}}), file=sys.stderr)
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["failed"] == []
    assert report["heavy"] == [], report["heavy"][:5]
