"""Several ``ocop worker`` processes on one PostgreSQL database: every due timer fires exactly once.

2,000 due timer rows (500 overdue registrations: two reminders, the deadline, an escalation each)
are swept by four workers side by side; then again while one worker after another is killed with
SIGKILL and replaced. Nothing may be lost, nothing fired twice, no outbox row written twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Workspace, write_config

pytestmark = pytest.mark.postgres

DOSSIERS = 500
TIMERS_PER_DOSSIER = 4  # reminder 5 and 1 working days before, deadline, escalation
T0 = "2026-03-02T09:00:00+07:00"  # registered on a Monday: due by the end of 23 March
NOW = datetime.fromisoformat("2026-04-14T12:00:00+07:00")  # three weeks after the deadline
NEXT_ESCALATION = datetime.fromisoformat("2026-04-21T08:00:00+07:00")  # 5 working days on
# Small batches keep the workers busy for several seconds, so the kill test kills them mid-work
# (with batches of 100 the 2,000 timers are done before the first kill).
CONFIG = """
[scheduler]
sweep_interval_seconds = 1
batch_size = 1
"""
#: A claim on an outbox row lasts 5 minutes of the claimer's clock (notify.LEASE): what a killed
#: worker had claimed is taken over by a worker whose clock is past that.
RECOVERY_DELAY = timedelta(minutes=10)
MAX_KILLS = 10
#: How long the webhook receiver of the kill test takes to answer each POST.
WEBHOOK_SECONDS = 0.02
#: A guard against a hang, not a speed target: a loaded 2-core CI machine needs its margin.
DEADLINE_SECONDS = 400.0


class Worker:
    def __init__(self, ws: Workspace, now: datetime, index: int) -> None:
        self.log_path = ws.root / f"worker-{index}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ocop_workflow", "worker"],
            env=ws.env(OCOP_NOW=now.isoformat()),
            cwd=ws.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
        return out

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def ws(tmp_path: Path, pg_url: str) -> Iterator[Workspace]:
    write_config(tmp_path, extra=CONFIG)
    workspace = Workspace(tmp_path, pg_url)
    workspace.run("init", check=True)
    yield workspace


@pytest.fixture
def db(pg_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


def register_overdue_dossiers(ws: Workspace) -> None:
    app = ws.app(user="lan", now=T0)
    try:
        engine, lan = app.engine, app.actor()
        for i in range(DOSSIERS):
            engine.register(
                lan, product=f"Sản phẩm số {i}", producer="HTX Cà phê Ia Le", commune="Ia Le"
            )
    finally:
        app.store.dispose()


def scalar(db: sa.Engine, sql: str, **params: Any) -> Any:
    with db.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def settled(db: sa.Engine) -> bool:
    """No due timer left pending and every notification delivered."""
    horizon = NOW + timedelta(days=1)
    due = scalar(
        db, "SELECT count(*) FROM timer WHERE status = 'pending' AND due_at <= :h", h=horizon
    )
    undelivered = scalar(db, "SELECT count(*) FROM notification WHERE status <> 'sent'")
    return due == 0 and undelivered == 0


def stop(workers: list[Worker], started: float) -> None:
    """SIGTERM each (once it is up: see test_worker for a stop during start-up); all exit 0."""
    while not all(w.events("worker.started") for w in workers):
        assert time.monotonic() - started < DEADLINE_SECONDS, "a worker never started"
        time.sleep(0.1)
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    codes = [w.process.wait(timeout=30) for w in workers]
    assert codes == [0] * len(workers), [
        (c, w.log_path.read_text()[-500:]) for c, w in zip(codes, workers, strict=True) if c
    ]


def check_fired_exactly_once(
    ws: Workspace, db: sa.Engine, webhook: list[str] | None = None
) -> Counter[str]:
    """Every timer settled once, one outbox row per (timer, channel, recipient), all delivered.

    ``webhook`` holds the ``Idempotency-Key`` of every POST the receiver got, when the webhook
    channel is on. Returns how many times each key reached a receiver (file line or POST).
    """
    with db.connect() as conn:
        timers = conn.execute(
            sa.text("SELECT id, dossier_id, kind, status, due_at, fired_at FROM timer ORDER BY id")
        ).all()
        rows = conn.execute(
            sa.text(
                "SELECT timer_id, kind, channel, recipient, key, status, dossier_id "
                "FROM notification"
            )
        ).all()
    original = [t for t in timers if t.id <= DOSSIERS * TIMERS_PER_DOSSIER]
    assert len(original) == DOSSIERS * TIMERS_PER_DOSSIER
    assert Counter((t.kind, t.status) for t in original) == Counter(
        {
            ("reminder", "superseded"): 2 * DOSSIERS,  # their deadline passed long ago
            ("deadline", "fired"): DOSSIERS,
            ("escalation", "fired"): DOSSIERS,
        }
    )
    assert all(t.fired_at is not None for t in original)

    # A repeating escalation fired twice would have planned its next repeat twice.
    replanned = [t for t in timers if t.id > DOSSIERS * TIMERS_PER_DOSSIER]
    assert Counter(t.dossier_id for t in replanned) == Counter(
        {t.dossier_id: 1 for t in original}
    ), "exactly one next escalation per dossier"
    assert {(t.kind, t.status) for t in replanned} == {("escalation", "pending")}
    assert {t.due_at.astimezone(UTC) for t in replanned} == {NEXT_ESCALATION.astimezone(UTC)}

    channels = ["file"] if webhook is None else ["file", "webhook"]
    expected: Counter[tuple[int, str, str, str]] = Counter()
    for t in original:
        for channel in channels:
            if t.kind == "deadline":
                expected[t.id, "deadline", channel, "lan"] = 1
            elif t.kind == "escalation":
                expected[t.id, "escalation", channel, "lan"] = 1
                expected[t.id, "escalation", channel, "hung"] = 1
    written = Counter((r.timer_id, r.kind, r.channel, r.recipient) for r in rows)
    assert written == expected
    assert len({r.key for r in rows}) == len(rows) == 3 * DOSSIERS * len(channels)
    assert {r.status for r in rows} == {"sent"}

    lines = (ws.root / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    received = Counter(json.loads(line)["key"] for line in lines)
    assert set(received) == {r.key for r in rows if r.channel == "file"}, "all reached the file"
    if webhook is not None:
        posted = Counter(webhook)
        assert set(posted) == {r.key for r in rows if r.channel == "webhook"}, "all were posted"
        received += posted
    return received


@pytest.mark.slow(15)
def test_four_workers_fire_2000_due_timers_exactly_once(ws: Workspace, db: sa.Engine) -> None:
    register_overdue_dossiers(ws)
    assert scalar(db, "SELECT count(*) FROM timer WHERE due_at <= :now", now=NOW) == 2000

    started = time.monotonic()
    workers = [Worker(ws, NOW, i) for i in range(4)]
    try:
        while not settled(db):
            assert time.monotonic() - started < DEADLINE_SECONDS, "the workers did not finish"
            assert all(w.process.poll() is None for w in workers)
            time.sleep(0.5)
        stop(workers, started)
        failures = [e for w in workers for e in w.events("worker.sweep_failed")]
        assert failures == [], failures
        sweeping = [
            w for w in workers if any(e.get("timers_fired") for e in w.events("sweep.done"))
        ]
        assert sweeping, "some worker fired the timers"
    finally:
        for worker in workers:
            worker.close()

    received = check_fired_exactly_once(ws, db)
    duplicates = {k: n for k, n in received.items() if n > 1}
    assert duplicates == {}, "without crashes each notification is delivered once"


def sent_count(db: sa.Engine) -> int:
    return int(scalar(db, "SELECT count(*) FROM notification WHERE status = 'sent'"))


def wait_quiet(db: sa.Engine, workers: list[Worker], started: float) -> None:
    """Until every due timer has fired and the live workers have delivered all they can."""
    last, quiet_since = -1, time.monotonic()
    while not settled(db):
        assert time.monotonic() - started < DEADLINE_SECONDS, "the workers did not finish"
        assert all(w.process.poll() is None for w in workers)
        due = scalar(
            db,
            "SELECT count(*) FROM timer WHERE status = 'pending' AND due_at <= :n",
            n=NOW + timedelta(days=1),
        )
        now_sent = sent_count(db)
        if due or now_sent != last:
            last, quiet_since = now_sent, time.monotonic()
        elif time.monotonic() - quiet_since > 3.0:
            return  # what is left was claimed by killed workers
        time.sleep(0.3)


@pytest.fixture
def slow_webhook() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP receiver taking WEBHOOK_SECONDS per POST, recording each Idempotency-Key.

    A slow receiver is the ordinary case (a provincial portal behind a VPN) and keeps the workers
    busy delivering for several seconds, so the kills land mid-work on a fast machine too.
    """
    keys: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            keys.append(self.headers["Idempotency-Key"])  # received, even if the sender dies
            time.sleep(WEBHOOK_SECONDS)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ocop", keys
    finally:
        server.shutdown()
        server.server_close()


def work_in_hand(db: sa.Engine) -> bool:
    """A due timer not fired yet, or a notification no worker has claimed yet."""
    due = scalar(
        db,
        "SELECT count(*) FROM timer WHERE status = 'pending' AND due_at <= :h",
        h=NOW + timedelta(days=1),
    )
    unclaimed = scalar(
        db, "SELECT count(*) FROM notification WHERE status = 'pending' AND claimed_until IS NULL"
    )
    return bool(due or unclaimed)


@pytest.mark.slow(40)
def test_workers_killed_with_sigkill_every_2_seconds_lose_and_duplicate_nothing(
    tmp_path: Path, pg_url: str, db: sa.Engine, slow_webhook: tuple[str, list[str]]
) -> None:
    url, posted = slow_webhook
    write_config(
        tmp_path,
        channels='["file", "webhook"]',
        notifications="batch_size = 20",
        extra=f'{CONFIG}\n[notifications.webhook]\nurl = "{url}"\n',
    )
    ws = Workspace(tmp_path, pg_url)
    ws.run("init", check=True)
    register_overdue_dossiers(ws)
    assert scalar(db, "SELECT count(*) FROM timer WHERE due_at <= :now", now=NOW) == 2000

    started = time.monotonic()
    workers = [Worker(ws, NOW, i) for i in range(4)]
    live = list(workers)
    kills = kills_mid_work = 0
    try:
        while not any(w.events("worker.started") for w in live):
            assert time.monotonic() - started < DEADLINE_SECONDS
            time.sleep(0.1)
        # Every 2 seconds, while work is left, the oldest worker is killed and a new one started.
        next_kill = time.monotonic() + 2.0
        while work_in_hand(db) and kills < MAX_KILLS:
            assert time.monotonic() - started < DEADLINE_SECONDS, f"{kills} kills"
            if time.monotonic() >= next_kill:
                victim = live.pop(0)
                kills_mid_work += work_in_hand(db)
                victim.process.send_signal(signal.SIGKILL)
                assert victim.process.wait(timeout=10) == -signal.SIGKILL
                kills += 1
                fresh = Worker(ws, NOW, 4 + kills)
                workers.append(fresh)
                live.append(fresh)
                next_kill = time.monotonic() + 2.0
            time.sleep(0.1)
        wait_quiet(db, live, started)
        stop(live, started)

        recovered = not settled(db)
        if recovered:
            # Rows claimed by a killed worker come back when its claim lapses (5 minutes):
            # a worker started ten minutes later on the rehearsal clock delivers them.
            later = Worker(ws, NOW + RECOVERY_DELAY, 99)
            workers.append(later)
            while not settled(db):
                assert time.monotonic() - started < DEADLINE_SECONDS, "nothing took over"
                assert later.process.poll() is None
                time.sleep(0.3)
            stop([later], started)
    finally:
        for worker in workers:
            worker.close()
    assert kills_mid_work >= 3, f"only {kills_mid_work} of {kills} kills landed while work was left"

    received = check_fired_exactly_once(ws, db, webhook=posted)
    # Delivery is at-least-once: a worker killed between handing a message over and marking its
    # row sent leaves the row to be sent again — with the same key, so the receiver drops it.
    # Only such a crash may cause a duplicate: at most one per kill.
    duplicates = sum(n - 1 for n in received.values())
    print(
        f"{kills} kills ({kills_mid_work} mid-work), {duplicates} duplicates, "
        f"recovery worker: {recovered}"
    )
    assert duplicates <= kills, (duplicates, kills)
