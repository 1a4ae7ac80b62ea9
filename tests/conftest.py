"""Shared fixtures: a real SQLite file or a real PostgreSQL schema per test, a config, the CLI.

PostgreSQL tests read ``OCOP_TEST_POSTGRES_URL`` (``.ci/run`` exports it). Without it they are
skipped on a developer machine, but under CI (``CI=true``) a missing URL is an error: a skipped
test proves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
PG_ENV = "OCOP_TEST_POSTGRES_URL"
#: Per test connection: commits do not wait for PostgreSQL's WAL flush. Isolation, locks and
#: constraints are unchanged; only a crash of the PostgreSQL server itself could lose the last
#: commits, which no test does. On this disk a flush costs ~3 ms, and the suite commits a lot.
PG_TEST_OPTIONS = "-csynchronous_commit%3Doff"


#: The free space a tmpfs must have for the suite's scratch folders (a clean clone's venv, the
#: 10,000-row import, the 2,000-timer databases, and pytest keeps the last three runs').
TMPFS_NEEDS = 2 << 30


def _scratch_on_tmpfs() -> None:
    """Put the tests' scratch folders (pytest's ``tmp_path``, and every ``tempfile`` of the
    commands they run) on the machine's tmpfs when it has one and ``TMPDIR`` is not set.

    The SQLite files, documents and outbox files stay real files with real ``fsync`` calls, but
    an ``fsync`` on tmpfs returns at once where the disk takes ~3 ms: the suite then waits on
    the CPU, not the disk. Set before pytest makes its first folder and before xdist starts its
    workers, which inherit the environment."""
    shm = Path("/dev/shm")
    if "TMPDIR" in os.environ or not shm.is_dir() or not os.access(shm, os.W_OK | os.X_OK):
        return
    free = os.statvfs(shm)
    if free.f_bavail * free.f_frsize >= TMPFS_NEEDS:  # not a container's 64 MiB default
        os.environ["TMPDIR"] = str(shm)
        tempfile.tempdir = None


_scratch_on_tmpfs()

USERS_TOML = (
    """
[users.lan]
name = "Nguyễn Thị Lan"
roles = ["commune_officer"]
communes = ["Ia Le"]
email = "lan@example.vn"

[users.tuan]
name = "Phạm Văn Tuấn"
roles = ["commune_officer"]
communes = ["Ia Phang"]
email = "tuan@example.vn"

[users.hung]
name = "Trần Văn Hùng"
roles = ["province_officer"]
communes = ["*"]
email = "hung@example.vn"

[users.minh]
name = "Lê Quang Minh"
roles = ["central_officer"]
communes = ["*"]
email = "minh@example.vn"

[users.htx_iale]
name = "HTX Cà phê Ia Le"
roles = ["producer"]
communes = ["Ia Le"]
organisation = "HTX Cà phê Ia Le"
email = "htx.iale@example.vn"

[users.htx_other]
name = "HTX Hồ tiêu Ia Le"
roles = ["producer"]
communes = ["Ia Le"]
organisation = "HTX Hồ tiêu Ia Le"

[users.council]
name = "Đỗ Thị Mai"
roles = ["council_member"]
communes = ["*"]

[users.dung]
name = "Võ Văn Dũng"
roles = ["district_officer"]
communes = ["Ia Le", "Ia Phang"]
email = "dung@example.vn"

[users.records]
name = "Văn thư lưu trữ tỉnh"
roles = ["records_officer"]
communes = ["*"]

[users.auditor]
name = "Thanh tra tỉnh"
roles = ["auditor"]
communes = ["*"]
"""
    + "".join(
        f"""
[users.{key}]
name = "{name}"
roles = ["{role}"]
communes = ["*"]
"""
        for key, name, role in [
            ("chair", "Chủ tịch Hội đồng tỉnh", "council_chair"),
            *[(f"m{i}", f"Thành viên {i}", "council_member") for i in range(1, 7)],
            ("tw_chair", "Chủ tịch Hội đồng Trung ương", "council_chair"),
            *[(f"tw{i}", f"Thành viên Trung ương {i}", "council_member") for i in range(1, 4)],
            ("h_chair", "Chủ tịch Hội đồng huyện", "council_chair"),
            *[(f"h{i}", f"Thành viên huyện {i}", "council_member") for i in range(1, 4)],
        ]
    )
    + """
[councils.tinh]
title = "Hội đồng đánh giá, phân hạng sản phẩm OCOP tỉnh"
level = "province"
chair = "chair"
members = ["chair", "m1", "m2", "m3", "m4", "m5", "m6"]

[councils.trung_uong]
title = "Hội đồng Trung ương"
level = "central"
chair = "tw_chair"
members = ["tw_chair", "tw1", "tw2", "tw3"]

[councils.huyen]
title = "Hội đồng cấp huyện"
level = "district"
chair = "h_chair"
members = ["h_chair", "h1", "h2", "h3"]
"""
)

#: The mandatory documents of a non-tourism dossier (ocop-1489 [documents.mandatory] default).
MANDATORY_DOCUMENTS = (
    "registration_form",
    "business_plan",
    "organisation",
    "business_registration",
    "samples",
)


def attach_mandatory(
    ws: Workspace, dossier_id: str, user: str = "htx_iale", now: str | None = None
) -> None:
    """Attach one small file per mandatory document kind (so submit_dossier may pass)."""
    for kind in MANDATORY_DOCUMENTS:
        path = ws.root / f"{dossier_id}-{kind}.pdf"
        path.write_text(f"{dossier_id} {kind} — hồ sơ", encoding="utf-8")
        ws.run("dossier", "attach", dossier_id, kind, str(path), user=user, now=now, check=True)


def council_scores(
    ws: Workspace,
    dossier_id: str,
    scores: dict[str, tuple[float, float, float]],
    chair: str = "chair",
    close: bool = True,
    now: str | None = None,
) -> Result:
    """Each member's score entered by the chair, then (optionally) the chair closes the round."""
    for member, (a, b, c) in scores.items():
        ws.run(
            "score",
            dossier_id,
            "--member",
            member,
            "--a",
            str(a),
            "--b",
            str(b),
            "--c",
            str(c),
            user=chair,
            now=now,
            check=True,
        )
    if close:
        return ws.run("score", dossier_id, "--close", "--json", user=chair, now=now)
    return Result(0, "", "")


def postgres_base_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url and os.environ.get("CI") == "true":
        raise RuntimeError(f"CI must export {PG_ENV}: PostgreSQL tests may not be skipped")
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` first, longest first (``slow(SECONDS)``: about how long one
    takes on a quiet machine), the rest in their order. With ``-n auto --dist load`` the long
    ones (the README run, the killed workers, ``make demo`` from a clone) are spread over the
    workers from the start, instead of one of them landing last and running alone while the
    other workers have nothing left to do."""

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        if marker is None:
            return 0.0
        return float(marker.args[0]) if marker.args else 1.0

    items.sort(key=seconds, reverse=True)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test, dropped afterwards."""
    with pg_schema() as url:
        yield url


@contextmanager
def pg_schema() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema, dropped when the block ends (the test is
    skipped without one): ``pg_url``, or more than one for a test."""
    base = postgres_base_url()
    if not base:
        pytest.skip(f"{PG_ENV} not set")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}%20{PG_TEST_OPTIONS}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ocop.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both databases: the same test runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ocop.db'}"
    return str(request.getfixturevalue("pg_url"))


@dataclass
class Workspace:
    """A folder with a config.toml, the shipped workflows, and a database at ``url``."""

    root: Path
    url: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
        env.update({"OCOP_CONFIG": str(self.config), "OCOP_DATABASE_URL": self.url})
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def run(
        self,
        *args: str,
        user: str | None = None,
        now: str | None = None,
        check: bool = False,
        process: bool | None = None,
        **env: str,
    ) -> Result:
        """Run ``ocop ARGS``: in this process by default, as a real subprocess with ``process``.

        In-process runs call the same entry point (``ocop_workflow.cli.main``: exit codes, error
        lines, stdout/stderr apart) against the same real database, with the environment, the
        working folder and the standard streams swapped for the call. They cost milliseconds
        instead of a Python start-up, so behaviour is tested in-process and a smaller set of
        tests keeps real processes for what needs one (start-up, signals, kill -9).
        ``OCOP_TEST_SUBPROCESS=1`` runs every call as a subprocess.
        """
        overrides = dict(env)
        if user is not None:
            overrides["OCOP_USER"] = user
        if now is not None:
            overrides["OCOP_NOW"] = now
        result = run_ocop(list(args), self.env(**overrides), self.root, process=process)
        if check and result.code != 0:
            raise AssertionError(f"ocop {' '.join(args)} failed: {result}")
        return result

    def app(self, *, user: str | None = None, now: str | None = None) -> Any:
        """The in-process library view of the same workspace."""
        from ocop_workflow.app import App

        env = self.env()
        if now is not None:
            env["OCOP_NOW"] = now
        return App(self.config, user, env=env)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def run_ocop(
    args: list[str], env: dict[str, str], cwd: Path, *, process: bool | None = None
) -> Result:
    """``ocop ARGS`` with exactly ``env`` in ``cwd``: in this process unless ``process`` (or
    ``OCOP_TEST_SUBPROCESS=1``) asks for a real subprocess."""
    if process is None:
        process = bool(os.environ.get("OCOP_TEST_SUBPROCESS"))
    if not process:
        return run_in_process(args, env, cwd)
    done = subprocess.run(
        [sys.executable, "-m", "ocop_workflow", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_in_process(args: list[str], env: dict[str, str], cwd: Path) -> Result:
    """``ocop ARGS`` through ``cli.main`` in this process, as if it were a fresh one.

    ``os.environ`` becomes exactly ``env`` and the working folder ``cwd`` for the call (both
    restored afterwards); stdin is empty; stdout and stderr are captured apart.
    """
    from click.testing import CliRunner

    from ocop_workflow.cli import main

    wanted: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    wanted.update(env)
    runner = CliRunner()
    previous = Path.cwd()
    code: int
    with runner.isolation(input="", env=wanted) as (out, err, _mixed):
        os.chdir(cwd)
        try:
            main(args)
            code = 0
        except SystemExit as done:
            if done.code is None:
                code = 0
            elif isinstance(done.code, int):
                code = done.code
            else:
                sys.stderr.write(f"{done.code}\n")
                code = 1
        except BaseException:  # OCOP_DEBUG re-raises: a traceback on stderr, exit 1
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.chdir(previous)
        stdout = out.getvalue().decode("utf-8")
        stderr = err.getvalue().decode("utf-8", errors="backslashreplace")
    return Result(code, stdout, stderr)


def write_config(
    root: Path,
    *,
    extra: str = "",
    allow_override: bool = True,
    channels: str = '["file"]',
    notifications: str = "",
) -> Path:
    """A config for tests; ``notifications`` adds keys to the ``[notifications]`` table."""
    config = root / "config.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///unused.db"

[engine]
workflows_dir = "{WORKFLOWS}"
default_workflow = "ocop-1489"

[clock]
allow_override = {"true" if allow_override else "false"}

[notifications]
channels = {channels}
max_attempts = 3
backoff_seconds = 1
{notifications}
[notifications.file]
path = "outbox.jsonl"
{extra}
{USERS_TOML}
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Workspace:
    """An initialised workspace on each database (SQLite file and PostgreSQL)."""
    write_config(tmp_path)
    ws = Workspace(tmp_path, db_url)
    ws.run("init", check=True)
    return ws


@pytest.fixture
def sqlite_workspace(tmp_path: Path, sqlite_url: str) -> Workspace:
    """An initialised workspace on a SQLite file only (for tests about SQLite itself)."""
    write_config(tmp_path)
    ws = Workspace(tmp_path, sqlite_url)
    ws.run("init", check=True)
    return ws


def dump_database(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "the database is exactly as before" assertions."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names())
            out = {}
            for name in names:
                rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
                out[name] = sorted(tuple(str(v) for v in row) for row in rows)
            return out
    finally:
        engine.dispose()


@dataclass
class Server:
    """One real ``ocop serve`` process (``serving``): its URL and the line it announced."""

    url: str
    line: str
    process: subprocess.Popen[str]

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed if it does not stop within a minute)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("ocop serve did not stop on SIGTERM") from None


@contextmanager
def serving(ws: Workspace, *args: str, **env: str) -> Iterator[Server]:
    """``ocop serve --port 0 ARGS`` on ``ws`` (environment ``env`` added) until the block ends.

    The server binds and listens before it announces ``serving on http://HOST:PORT`` on
    stderr, so a request sent as soon as this yields is queued, not refused.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "ocop_workflow", "serve", "--port", "0", *args],
        env=ws.env(**env),
        cwd=ws.root,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    server = None
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("serving on http://"), line
        server = Server(line.split()[2], line, process)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def import_before_council(api: Any, dossier_id: str = "OCOP-T-1") -> str:
    """A dossier of HTX Cà phê Ia Le put before the province council by a records import
    through the API (``api.post(path, user, **kw)``); its id."""
    sheet = (
        "id,product,producer,commune,group,workflow,state\n"
        f"{dossier_id},Cà phê,HTX Cà phê Ia Le,Ia Le,,ocop-1489,evaluation_province\n"
    )
    imported = api.post(
        "/api/v1/imports", "records", files={"file": ("ho-so.csv", sheet.encode(), "text/csv")}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"] == 1
    return dossier_id
