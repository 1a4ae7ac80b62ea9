"""The README is executable: every ```sh block runs verbatim, in order, as a newcomer runs it.

The blocks run with bash in a scratch copy of the repository (its ``.venv`` the test's own venv,
``HOME`` a scratch folder) like one terminal session: the environment and the working directory a
block leaves carry into the next, so an ``export`` that would trap a reader traps the test too.
The venv's ``bin`` is not on PATH until a block activates it, as on a fresh clone.

Conventions (also in COORD.md): ```sh runs; a ```text block right after it is output that must
appear, line by line and in order, in what the block printed (``…`` matches anything within a
line); ```console is shown and never run (``make test`` itself, root-only steps); ```sh postgres
runs only with ``OCOP_TEST_POSTGRES_URL``, with libpq's PGHOST/PGPORT/PGUSER/PGDATABASE naming a
fresh database of the test server. A command meant to fail is written ``… || echo "exit $?"``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PG_ENV, ROOT, postgres_base_url

README = ROOT / "README.md"
#: languages of fenced blocks and whether the test runs them
KNOWN = {
    "sh": True,
    "text": False,
    "console": False,
    "ini": False,
    "toml": False,
    "json": False,
    "sql": False,  # run by the test that owns them (tests/test_roles.py), not here
    "": False,
}
IGNORED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "demo-output",
    "__pycache__",
    ".*_cache",
    "build",
    "dist",
    "*.egg-info",
    "*.db",
    "outbox.jsonl",
    ".hypothesis",
    "bench-output",
)
FENCE = re.compile(r"^```(\S*)[ \t]*(.*?)\s*$")
BASH_NOISE = ("_", "SHLVL", "PWD", "OLDPWD")


@dataclass
class Block:
    lang: str
    info: str
    body: str
    line: int
    output: str | None = None  # the ```text block right after a ```sh block

    @property
    def postgres(self) -> bool:
        return "postgres" in self.info.split()


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each ```text block attached to the ```sh block before it."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    gap_ok = False  # only blank lines since the previous block closed
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            gap_ok = gap_ok and not lines[i].strip()
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        block = Block(match.group(1), match.group(2), "\n".join(body) + "\n", start + 1)
        i += 1
        if block.lang == "text" and gap_ok and found and found[-1].lang == "sh":
            found[-1].output = block.body
        found.append(block)
        gap_ok = True
    return found


def shows(expected: str, output: str) -> str | None:
    """None when each expected line is, in order, a whole line of ``output``; else the miss."""
    got = [line.rstrip() for line in output.splitlines()]
    at = 0
    for want in (line.rstrip() for line in expected.splitlines()):
        if not want.strip():
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("…")))
        while at < len(got) and not pattern.fullmatch(got[at]):
            at += 1
        if at == len(got):
            return want
        at += 1
    return None


def test_the_output_check_catches_a_readme_that_drifts_from_the_program() -> None:
    output = "database sqlite:////h/ocop.db upgraded empty → 0002\nok\n"
    assert shows("database … upgraded empty → …", output) is None
    assert shows("database … upgraded empty → 0001", output) == "database … upgraded empty → 0001"
    assert shows("ok\ndatabase …", output) == "database …"  # order matters


def test_every_fenced_block_of_the_readme_says_whether_it_runs() -> None:
    """A ```bash block would silently be skipped: only the documented languages are allowed."""
    found = blocks(README.read_text(encoding="utf-8"))
    assert [b for b in found if b.lang == "sh"], "the README has no ```sh block"
    unknown = [(b.line, b.lang) for b in found if b.lang not in KNOWN]
    assert not unknown, f"README blocks of unknown language (line, lang): {unknown}"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the repository as cloned, with the test's venv as its ``.venv``."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").exists():
        pytest.skip("the tests do not run in a venv: the README's `source .venv/bin/activate`")
    repo = tmp_path / "ocop_workflow"
    shutil.copytree(ROOT, repo, ignore=IGNORED, symlinks=True)
    own = repo / ".venv"
    own.mkdir()
    for entry in venv.iterdir():  # the real venv's parts, and an install marker that is fresh
        if not entry.name.startswith(".installed"):
            (own / entry.name).symlink_to(entry)
    for marker in (".installed", ".installed-test"):
        (own / marker).touch()
    (tmp_path / "home").mkdir()
    return repo


@pytest.fixture
def postgres_env() -> Iterator[dict[str, str]]:
    """libpq's variables naming a fresh database name on the test server (dropped afterwards)."""
    base = postgres_base_url()
    if not base:
        yield {}
        return
    import sqlalchemy as sa

    url = sa.engine.make_url(base)
    name = f"readme_{uuid.uuid4().hex[:12]}"
    env = {
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": name,
    }
    try:
        yield env
    finally:
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_env(repo: Path, postgres: dict[str, str]) -> dict[str, str]:
    venv_bin = str(Path(sys.prefix) / "bin")
    path = [
        p
        for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if p and os.path.realpath(p) != os.path.realpath(venv_bin)
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OCOP_", "PG", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(PATH=os.pathsep.join(path), HOME=str(repo.parent / "home"), **postgres)
    return env


@pytest.mark.slow(55)
def test_every_shell_block_of_the_readme_runs_as_written(
    scratch: Path, postgres_env: dict[str, str]
) -> None:
    env = start_env(scratch, postgres_env)
    cwd = scratch
    state = scratch.parent / "state"
    state.mkdir()
    ran = 0
    for block in blocks(README.read_text(encoding="utf-8")):
        if block.lang != "sh" or (block.postgres and not postgres_env):
            continue
        script = (
            "set -eo pipefail\n" + block.body + f'\nenv -0 > "{state}/env"; pwd > "{state}/pwd"\n'
        )
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            timeout=900,
        )
        where = f"README.md line {block.line}:\n{block.body}\n--- printed (exit {done.returncode}):"
        assert done.returncode == 0, f"{where}\n{done.stdout}"
        if block.output is not None:
            missing = shows(block.output, done.stdout)
            assert missing is None, f"{where}\n{done.stdout}\n--- not shown: {missing!r}"
        pairs = (
            item.split("=", 1)
            for item in (state / "env").read_text(encoding="utf-8").split("\0")
            if "=" in item
        )
        env = {k: v for k, v in pairs if k not in BASH_NOISE}
        cwd = Path((state / "pwd").read_text(encoding="utf-8").strip())
        ran += 1
    assert ran >= 5
    if os.environ.get(PG_ENV):
        assert any(b.postgres for b in blocks(README.read_text(encoding="utf-8")))


def test_every_command_and_option_is_shown_in_the_readme() -> None:
    """The manual does not drift from ``ocop … --help``: each command appears as typed
    (``ocop [--as U] GROUP CMD``), and each of its options on such a line (``--json``, common to
    every command, and an option whose short form the example uses are documented once)."""
    import click

    from ocop_workflow.cli import _commands, cli

    lines = README.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    globals_ = r"(?:\s+(?:--as\s+\S+|--config\s+\S+|-v|--verbose))*"
    missing = []
    for path, command in _commands(cli):
        if isinstance(command, click.Group):
            continue
        typed = re.compile(rf"\bocop{globals_}\s+{re.escape(path)}(?![\w-])")
        shown = [line for line in lines if typed.search(line)]
        if not shown:
            missing.append(f"ocop {path}")
            continue
        for param in command.params:
            if not isinstance(param, click.Option) or "--json" in param.opts:
                continue
            forms = [re.escape(o) + r"(?![\w-])" for o in (*param.opts, *param.secondary_opts)]
            if not any(re.search(f, line) for f in forms for line in shown):
                missing.append(f"ocop {path} {param.opts[-1]}")
    assert not missing, missing
