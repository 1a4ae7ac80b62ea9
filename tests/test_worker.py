"""``ocop worker`` as a real process: it sweeps on its own, stops cleanly on a signal, holds the
SQLite database alone, and survives a database that fails for a while."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Workspace, write_config

INTERVAL = 1.0
SCHEDULER = f"""
[scheduler]
sweep_interval_seconds = {INTERVAL}
"""
T0 = "2026-03-02T09:00:00+07:00"  # a Monday; registration is due by the end of 23 March
LATER = "2026-04-14T12:00:00+07:00"  # deadline and first escalation of T0's dossiers are due
#: Start-up of a Python process on a busy CI machine can take a few seconds.
PATIENCE = 180.0  # a hang guard, not a speed target: a loaded 2-core CI machine needs margin


class Worker:
    """One ``ocop worker`` process, its stderr (structlog JSON lines) kept in a file."""

    def __init__(self, ws: Workspace, now: str, name: str = "worker") -> None:
        self.log_path = ws.root / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ocop_workflow", "worker"],
            env=ws.env(OCOP_NOW=now),
            cwd=ws.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "(text)", "line": line})
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    def wait_started(self) -> None:
        wait_for(
            lambda: bool(self.logged("worker.started")) or self.process.poll() is not None,
            "the worker to start",
            self,
        )
        assert self.process.poll() is None, self.output()

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``signum``; (exit code, seconds it took to exit)."""
        start = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=PATIENCE)
        return code, time.monotonic() - start

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """Start workers; whatever a test leaves running is killed at the end."""
    started: list[Worker] = []

    def start(ws: Workspace, now: str = LATER, name: str = "worker") -> Worker:
        worker = Worker(ws, now, name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def wait_for(
    condition: Callable[[], bool],
    what: str,
    worker: Worker | None = None,
    timeout: float = PATIENCE,
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    detail = worker.output() if worker is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{detail}")


def register(ws: Workspace, now: str, product: str) -> str:
    app = ws.app(user="lan", now=now)
    try:
        row = app.engine.register(
            app.actor(), product=product, producer="HTX Cà phê Ia Le", commune="Ia Le"
        )
    finally:
        app.store.dispose()
    return str(row["id"])


def outbox(ws: Workspace) -> list[dict[str, Any]]:
    path = ws.root / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def overdue_messages(dossier_id: str) -> set[tuple[str, str, str]]:
    """What a registration three weeks past its deadline sends: the deadline, one escalation."""
    return {
        (dossier_id, "deadline", "lan"),
        (dossier_id, "escalation", "lan"),
        (dossier_id, "escalation", "hung"),
    }


def sent(ws: Workspace) -> list[tuple[str, str, str]]:
    return [(x["dossier"], x["kind"], x["recipient"]) for x in outbox(ws)]


@pytest.fixture
def worker_workspace(sqlite_workspace: Workspace) -> Workspace:
    write_config(sqlite_workspace.root, extra=SCHEDULER)
    return sqlite_workspace


@pytest.fixture
def pg_worker_workspace(tmp_path: Path, pg_url: str) -> Workspace:
    write_config(tmp_path, extra=SCHEDULER)
    ws = Workspace(tmp_path, pg_url)
    ws.run("init", check=True)
    return ws


# --- sweeping and stopping ----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_sends_due_notifications_and_exits_0_on_a_signal_within_one_sweep(
    worker_workspace: Workspace, workers: Callable[..., Worker], signum: int
) -> None:
    ws = worker_workspace
    dossier_id = register(ws, T0, "Cà phê bột Ia Le")
    worker = workers(ws)
    worker.wait_started()
    wait_for(lambda: len(outbox(ws)) >= 3, "the overdue notifications", worker)
    time.sleep(2 * INTERVAL)  # a few more sweeps: nothing is sent twice
    assert sorted(sent(ws)) == sorted(overdue_messages(dossier_id))
    assert worker.process.poll() is None, "the worker keeps running between sweeps"

    code, took = worker.stop(signum)
    assert code == 0, worker.output()
    assert took < INTERVAL + 5, f"took {took:.1f}s to stop"
    assert worker.logged("worker.stopping")[0]["signal"] == signal.Signals(signum).name
    assert worker.logged("worker.stopped"), worker.output()
    assert "Traceback" not in worker.output()
    assert not worker.logged("worker.sweep_failed")


def test_worker_sweeps_again_and_again_picking_up_new_due_timers(
    worker_workspace: Workspace, workers: Callable[..., Worker]
) -> None:
    ws = worker_workspace
    worker = workers(ws)
    worker.wait_started()
    first = register(ws, T0, "Cà phê bột Ia Le")
    wait_for(lambda: len(outbox(ws)) >= 3, "the first dossier's notifications", worker)
    second = register(ws, T0, "Mật ong Ia Le")
    wait_for(lambda: len(outbox(ws)) >= 6, "the second dossier's notifications", worker)
    assert sorted(sent(ws)) == sorted(overdue_messages(first) | overdue_messages(second))
    code, _ = worker.stop()
    assert code == 0, worker.output()


# --- one worker per SQLite database -------------------------------------------------------------


def test_a_second_worker_on_the_same_sqlite_database_is_refused_until_the_first_stops(
    worker_workspace: Workspace, workers: Callable[..., Worker]
) -> None:
    ws = worker_workspace
    first = workers(ws, name="first")
    first.wait_started()

    refused = ws.run("worker", now=LATER)
    assert refused.code == 1, str(refused)
    assert "another worker" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.count("error: ") == 1
    assert first.process.poll() is None, "the first worker is not disturbed"

    code, _ = first.stop()
    assert code == 0, first.output()

    # The lease went with the first worker: a new one starts and keeps running.
    third = workers(ws, name="third")
    third.wait_started()
    dossier_id = register(ws, T0, "Cà phê bột Ia Le")
    wait_for(lambda: len(outbox(ws)) >= 3, "the notifications", third)
    assert sorted(sent(ws)) == sorted(overdue_messages(dossier_id))
    code, _ = third.stop()
    assert code == 0, third.output()


def test_a_worker_stopped_while_starting_exits_0_and_leaves_the_sqlite_database_free(
    worker_workspace: Workspace, workers: Callable[..., Worker]
) -> None:
    """SIGTERM the moment the worker has taken the SQLite lease (as a service manager may, right
    after a start): it must still exit 0 and give the lease back, or the next worker is refused
    for the lease's lifetime (a minute)."""
    ws = worker_workspace
    database = ws.url.removeprefix("sqlite:///")

    def lease_taken() -> bool:
        try:
            with sqlite3.connect(database, timeout=5) as conn:
                return bool(conn.execute("SELECT count(*) FROM lease").fetchone()[0])
        except sqlite3.OperationalError:
            return False

    for _ in range(3):  # the moment is short: try it a few times
        worker = workers(ws)
        end = time.monotonic() + PATIENCE
        while not lease_taken():
            assert time.monotonic() < end and worker.process.poll() is None, worker.output()
        code, _ = worker.stop()
        assert code == 0, f"exit {code}\n{worker.output()}"
        assert not lease_taken(), "the lease of a stopped worker is released"
    again = ws.run("worker", "--once", now=LATER)
    assert again.code == 0, str(again)


# --- a failing database -------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_database_error_is_logged_and_the_worker_carries_on(
    pg_worker_workspace: Workspace, workers: Callable[..., Worker], pg_url: str
) -> None:
    ws = pg_worker_workspace
    first = register(ws, T0, "Cà phê bột Ia Le")
    worker = workers(ws)
    worker.wait_started()
    wait_for(lambda: len(outbox(ws)) >= 3, "the first notifications", worker)

    admin = sa.create_engine(pg_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text("ALTER TABLE timer RENAME TO timer_x"))
        try:
            wait_for(
                lambda: len(worker.logged("worker.sweep_failed")) >= 2,
                "two failed sweeps to be logged",
                worker,
            )
            assert worker.process.poll() is None, worker.output()
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text("ALTER TABLE timer_x RENAME TO timer"))
    finally:
        admin.dispose()

    failure = worker.logged("worker.sweep_failed")[0]
    assert "timer" in failure["error"], failure
    assert failure["level"] == "error"

    # The next sweeps work again: a dossier registered now gets its notifications.
    second = register(ws, T0, "Mật ong Ia Le")
    wait_for(lambda: len(outbox(ws)) >= 6, "notifications after the database recovered", worker)
    assert sorted(sent(ws)) == sorted(overdue_messages(first) | overdue_messages(second))
    assert worker.process.poll() is None
    code, _ = worker.stop()
    assert code == 0, worker.output()


def _database_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process ``pid`` holds (its database connections)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.postgres
def test_a_worker_whose_database_connections_are_cut_reconnects(
    pg_worker_workspace: Workspace, workers: Callable[..., Worker], pg_url: str
) -> None:
    """The server ends the worker's sessions (a restart, a fail-over): the next sweeps reconnect."""
    ws = pg_worker_workspace
    first = register(ws, T0, "Cà phê bột Ia Le")
    worker = workers(ws)
    worker.wait_started()
    wait_for(lambda: len(outbox(ws)) >= 3, "the first notifications", worker)

    ports = _database_ports(worker.process.pid)
    assert ports, "the worker keeps a pooled connection"
    admin = sa.create_engine(pg_url)
    try:
        with admin.begin() as conn:
            ended = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE client_port = ANY(:ports) AND pid <> pg_backend_pid()"
                ),
                {"ports": sorted(ports)},
            ).scalar_one()
    finally:
        admin.dispose()
    assert ended >= 1

    second = register(ws, T0, "Mật ong Ia Le")
    wait_for(lambda: len(outbox(ws)) >= 6, "notifications after the reconnection", worker)
    assert sorted(sent(ws)) == sorted(overdue_messages(first) | overdue_messages(second))
    assert worker.process.poll() is None
    code, _ = worker.stop()
    assert code == 0, worker.output()


def signal_bits(status: Path) -> dict[str, set[int]]:
    """The signals a thread blocks (``SigBlk``) and the process catches with a handler
    (``SigCgt``), from a Linux /proc status file."""
    bits = {}
    for line in status.read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("SigBlk", "SigCgt"):
            mask = int(value.strip(), 16)
            bits[name] = {n for n in range(1, 65) if mask >> (n - 1) & 1}
    return bits


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_a_running_worker_runs_no_python_in_signal_context_and_stops_amid_hand_overs(
    sqlite_workspace: Workspace, workers: Callable[..., Worker]
) -> None:
    """A handler runs between any two bytecodes of the main thread. The worker's used to stop
    the scheduler from there: arriving inside ``ThreadPoolExecutor.submit`` (APScheduler hands
    over a sweep), it took that call's lock again and the worker hung on SIGTERM until killed
    (seen in CI: a test stuck for three minutes); arriving inside an import, an earlier version
    failed it (``KeyError: <thread ident>``, CPython gh-91351). Now no handler is set for
    SIGTERM, every thread but the main one blocks SIGTERM and SIGINT, and the main thread takes
    them with ``sigwait`` (which unblocks them only while it waits). The stop itself comes while
    a sweep is handed over every 10 ms, and the worker exits 0 at once."""
    write_config(sqlite_workspace.root, extra="[scheduler]\nsweep_interval_seconds = 0.01\n")
    worker = workers(sqlite_workspace)
    worker.wait_started()
    pid = worker.process.pid
    stopping = {int(signal.SIGTERM), int(signal.SIGINT)}
    assert int(signal.SIGTERM) not in signal_bits(Path(f"/proc/{pid}/status"))["SigCgt"]
    others = [t for t in Path(f"/proc/{pid}/task").iterdir() if t.name != str(pid)]
    assert others, "APScheduler's threads"
    for thread in others:
        assert stopping <= signal_bits(thread / "status")["SigBlk"], thread.name
    code, took = worker.stop()
    assert code == 0, worker.output()
    assert took < 20, took  # a hang guard; it takes a sweep's time
