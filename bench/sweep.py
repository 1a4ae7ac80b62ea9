"""Benchmark of the timer sweep: the due query, firing into the outbox, and an idle sweep.

Usage::

    .venv/bin/python bench/sweep.py [--timers 1000000] [--quick] [--postgres URL]
                                    [--pg-timers N] [--no-postgres] [--rounds 3] [--profile]

What is built: a database brought up by ``ocop_workflow.migrate.upgrade`` (the real schema and
indexes), then bulk-loaded with plain SQL (SQLite: ``executemany`` in transactions of 100,000
rows; PostgreSQL: ``COPY``) with ``--timers`` pending timers, 10 per dossier (1,000,000 timers
on 100,000 dossiers by default) in the working states of workflow ``ocop-1489``, spread over two
communes, ``data = '{}'``. Every timer's ``state``/``entry_seq`` match its dossier's
``state``/``state_entry_seq``, so the sweep fires rather than marks stale. 1 % of the timers are
due at the benchmark's "now" (at most one per dossier, scattered through the table, a mix of
reminders, deadlines and repeating escalations); the rest fall due in the following year.

What is measured, on SQLite (one worker, ``BEGIN IMMEDIATE``):

* ``due_query_ms``: the sweep's own claim query alone (``status = 'pending' AND wake = 1 AND
  due_at <= :now ORDER BY due_at, id LIMIT batch``, built exactly as ``sweep.fire_due`` builds
  it), median of 20 runs, with its ``EXPLAIN QUERY PLAN`` (it must search index
  ``ix_timer_wake``: the dossiers' waking timers, one per dossier — the sweep then reads their
  other due timers).
  Target < 20 ms.
* ``fired_per_s``: ``run_sweep(engine, now, deliver=False)`` firing every due timer into the
  outbox (1-3 file-channel notifications each, with the config's users); timers fired per second
  of wall time, median of ``--rounds`` (3) rounds; between rounds the fired timers are reset to
  pending, the outbox emptied and the WAL checkpointed. Target >= 2,000/s.
* ``empty_sweep_ms``: ``run_sweep`` again right after, when nothing is due; median of 15 runs.
  Target < 5 ms.

On PostgreSQL (a scratch schema in the given database, dropped at the end) the same, plus firing
with 1 worker process and with 4 worker processes (``multiprocessing``, spawn; each builds its
own engine, waits at a barrier, then runs ``run_sweep`` until nothing is due). Between the two
runs the fired timers are reset to pending, the outbox emptied and the table vacuumed. The check
that no timer fired twice: the workers' ``timers_fired`` add up to the number due, every due
timer is ``fired`` and no (timer_id, channel, recipient) has more than one outbox row.

``--quick`` (20,000 timers, SQLite only) is for a smoke test. ``--profile`` re-runs the SQLite
firing under cProfile and prints where the time goes. Figures are printed as they come; the last
line of output is one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
WORKFLOW = "ocop-1489"
#: The benchmark's "now": 08:00 Tuesday 10 March 2026 in Hà Nội.
NOW = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
TIMERS_PER_DOSSIER = 10
DUE_FRACTION = 0.01
CHUNK = 100_000
COMMUNES = ("Ia Le", "Ia Phang")
PRODUCERS = ("HTX Cà phê Ia Le", "HTX Hồ tiêu Ia Le", "Tổ hợp tác Ia Phang")
#: Working states of ocop-1489 with a deadline, reminders and escalations but no automatic
#: trigger (an ``expire`` would need the dossier's audit chain, which is not the sweep's cost).
STATES = (
    "registration",
    "business_plan",
    "production",
    "evaluation_commune",
    "evaluation_province",
    "evaluation_central",
)
KIND_CYCLE = ("reminder", "reminder", "deadline", "escalation")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TIMER_COLS = (
    "id",
    "dossier_id",
    "state",
    "entry_seq",
    "kind",
    "due_at",
    "deadline_at",
    "status",
    "auto_trigger",
    "repeat_working_days",
    "fired_at",
    "late_seconds",
    "created_at",
    "wake",
)
DOSSIER_COLS = (
    "id",
    "product",
    "producer",
    "commune",
    "product_group",
    "workflow",
    "workflow_version",
    "state",
    "stage",
    "state_entered_at",
    "state_entry_seq",
    "deadline_at",
    "deadline_note",
    "version",
    "data",
    "created_at",
    "updated_at",
    "calendar_fingerprint",
)
USERS: dict[str, Any] = {
    "lan": {
        "name": "Nguyễn Thị Lan",
        "roles": ["commune_officer"],
        "communes": ["Ia Le"],
        "email": "lan@example.vn",
    },
    "tuan": {
        "name": "Phạm Văn Tuấn",
        "roles": ["commune_officer"],
        "communes": ["Ia Phang"],
        "email": "tuan@example.vn",
    },
    "hung": {
        "name": "Trần Văn Hùng",
        "roles": ["province_officer"],
        "communes": ["*"],
        "email": "hung@example.vn",
    },
    "minh": {
        "name": "Lê Quang Minh",
        "roles": ["central_officer"],
        "communes": ["*"],
        "email": "minh@example.vn",
    },
    "thu": {
        "name": "Hoàng Thị Thu",
        "roles": ["province_officer"],
        "communes": ["*"],
        "email": "thu@example.vn",
    },
    "htx_iale": {
        "name": "HTX Cà phê Ia Le",
        "roles": ["producer"],
        "communes": ["Ia Le"],
        "organisation": "HTX Cà phê Ia Le",
        "email": "htx.iale@example.vn",
    },
}


def say(text: str) -> None:
    print(text, flush=True)


# --- the engine ---------------------------------------------------------------------------------


def make_engine(url: str, workdir: Path) -> Any:
    """An Engine over ``url`` with a file channel, six users and the clock stopped at NOW."""
    from ocop_workflow.config import parse_config
    from ocop_workflow.definitions import Registry
    from ocop_workflow.engine import Engine
    from ocop_workflow.store import Store

    config = parse_config(
        {
            "database": {"url": url},
            "engine": {"workflows_dir": str(WORKFLOWS), "default_workflow": WORKFLOW},
            "notifications": {
                "channels": ["file"],
                "file": {"path": str(workdir / "outbox.jsonl")},
            },
            "users": USERS,
        },
        workdir / "config.toml",
        env={},
    )
    store = Store(config.database_url)
    engine = Engine(store, Registry(config.workflows_dir), config, clock=lambda: NOW)
    # What a running worker has already done before its sweeps: parse the workflow file, build
    # the holiday calendar, open a pooled connection.
    engine.registry.get(WORKFLOW)
    _ = engine.calendar
    with store.read() as conn:
        conn.execute(sa.text("SELECT 1"))
    return engine


def due_select(limit: int) -> sa.Select[Any]:
    """The claim query exactly as ``sweep.fire_due`` builds it (before ``claim_query``)."""
    from ocop_workflow.store import WAKING, timer_t

    return (
        sa.select(timer_t)
        .where(WAKING, timer_t.c.due_at <= NOW)
        .order_by(timer_t.c.due_at, timer_t.c.id)
        .limit(limit)
    )


# --- the data -----------------------------------------------------------------------------------


class Dataset:
    """Dossier and timer rows (aware datetimes); ``fmt`` turns them into what a loader wants."""

    def __init__(self, n_timers: int, seed: int = 1489) -> None:
        from ocop_workflow.definitions import Registry

        self.wf = Registry(WORKFLOWS).get(WORKFLOW)
        # Planned under the calendar the engine runs (the default one): the sweep must not take
        # the bulk-built dossiers for ones planned under another calendar and re-plan them all.
        from ocop_workflow.calendar import WorkCalendar

        self.fingerprint = WorkCalendar().fingerprint
        self.n_dossiers = max(1, n_timers // TIMERS_PER_DOSSIER)
        self.n_timers = self.n_dossiers * TIMERS_PER_DOSSIER
        self.n_due = min(self.n_dossiers, round(self.n_timers * DUE_FRACTION))
        rng = random.Random(seed)
        self.due_dossiers = set(rng.sample(range(self.n_dossiers), self.n_due))
        self.seed = seed

    def rows(self, fmt: Callable[[datetime], Any]) -> Iterator[tuple[tuple[Any, ...], list[Any]]]:
        """(dossier row, its timer rows), dossier by dossier, timer ids 1..n_timers in order."""
        rng = random.Random(self.seed + 1)
        timer_id = 0
        for i in range(self.n_dossiers):
            state_name = STATES[i % len(STATES)]
            state = self.wf.state(state_name)
            spec = state.deadline
            assert spec is not None
            seq = 1 + i % 7
            entered = NOW - timedelta(days=rng.uniform(1, 60))
            deadline = NOW + timedelta(days=rng.uniform(2, 60))
            due_pos = rng.randrange(TIMERS_PER_DOSSIER) if i in self.due_dossiers else -1
            dossier_id = f"OCOP-2026-{i:06d}"
            timers: list[Any] = []
            dues: list[datetime] = []
            for j in range(TIMERS_PER_DOSSIER):
                timer_id += 1
                kind = KIND_CYCLE[j % len(KIND_CYCLE)]
                if j == due_pos:
                    due = NOW - timedelta(seconds=rng.uniform(0, 7 * 86_400))
                    if kind == "reminder":  # its deadline is still ahead: worth sending
                        deadline_at = NOW + timedelta(days=rng.uniform(1, 5))
                    else:  # the deadline has passed
                        deadline_at = due - timedelta(days=1 if kind == "deadline" else 7)
                        deadline = deadline_at
                else:
                    due = NOW + timedelta(seconds=rng.uniform(60, 365 * 86_400))
                    deadline_at = deadline
                timers.append(
                    (
                        timer_id,
                        dossier_id,
                        state_name,
                        seq,
                        kind,
                        fmt(due),
                        fmt(deadline_at),
                        "pending",
                        None,
                        spec.escalate_every if kind == "escalation" else None,
                        None,
                        None,
                        fmt(entered),
                        None,
                    )
                )
                dues.append(due)
            # the dossier's waking timer: its pending one due first (store.Timer.wake)
            first = dues.index(min(dues))
            timers[first] = (*timers[first][:-1], 1)
            commune = COMMUNES[i % 2]
            producer = PRODUCERS[0 if commune == "Ia Le" and i % 4 == 0 else 1 + i % 2]
            dossier = (
                dossier_id,
                f"Sản phẩm OCOP số {i}",
                producer,
                commune,
                None,
                WORKFLOW,
                self.wf.version,
                state_name,
                state.stage,
                fmt(entered),
                seq,
                fmt(deadline),
                None,
                1,
                "{}",
                fmt(entered),
                fmt(entered),
                self.fingerprint,
            )
            yield dossier, timers


def sqlite_text(value: datetime) -> str:
    """How ``store.UTCDateTime`` stores an instant on SQLite: naive UTC text."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def build_sqlite(path: Path, data: Dataset) -> float:
    """Migrate an empty file, then bulk-load it with plain SQL; returns seconds taken."""
    from ocop_workflow import migrate
    from ocop_workflow.store import Store

    started = time.perf_counter()
    store = Store(f"sqlite:///{path}")
    migrate.upgrade(store)
    store.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading
    # Load without the timer indexes and rebuild them afterwards from their own DDL (sorted
    # builds instead of 1M random B-tree inserts): the schema ends exactly as migrated.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='timer' "
        "AND sql NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    insert_dossier = (
        f"INSERT INTO dossier ({', '.join(DOSSIER_COLS)}) "
        f"VALUES ({', '.join('?' * len(DOSSIER_COLS))})"
    )
    insert_timer = (
        f"INSERT INTO timer ({', '.join(TIMER_COLS)}) VALUES ({', '.join('?' * len(TIMER_COLS))})"
    )
    dossiers: list[tuple[Any, ...]] = []
    timers: list[Any] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(insert_dossier, dossiers)
        conn.executemany(insert_timer, timers)
        conn.execute("COMMIT")
        dossiers.clear()
        timers.clear()

    for dossier, rows in data.rows(sqlite_text):
        dossiers.append(dossier)
        timers.extend(rows)
        if len(timers) >= CHUNK:
            flush()
    if timers:
        flush()
    loaded = time.perf_counter() - started
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    took = time.perf_counter() - started
    say(f"  rows loaded in {loaded:.1f} s, timer indexes rebuilt by {took:.1f} s")
    return took


# --- measuring ------------------------------------------------------------------------------------


class Captured:
    """The SQL and parameters the driver last received (to EXPLAIN exactly that)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statement = ""
        self.parameters: Any = None
        sa.event.listen(engine, "before_cursor_execute", self._hook)
        self.engine = engine

    def _hook(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statement, self.parameters = statement, parameters

    def remove(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._hook)


def time_due_query(engine: Any, runs: int = 20) -> dict[str, Any]:
    """The claim query alone, as the sweep issues it (FOR UPDATE SKIP LOCKED on PostgreSQL)."""
    store = engine.store
    query = store.claim_query(due_select(engine.config.sweep_batch_size))
    times = []
    captured = Captured(store.engine)
    try:
        for _ in range(runs):
            with store._connect(write=False) as conn:
                tx = conn.begin()
                t0 = time.perf_counter()
                rows = conn.execute(query).all()
                times.append((time.perf_counter() - t0) * 1000)
                tx.rollback()
    finally:
        captured.remove()
    statement, parameters = captured.statement, captured.parameters
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.is_sqlite:
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = "\n".join(f"{r[0]}|{r[1]}|{r[3]}" for r in cur.fetchall())
        else:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(r[0] for r in cur.fetchall())
            raw.rollback()
        cur.close()
    finally:
        raw.close()
    return {
        "ms": statistics.median(times),
        "first_ms": times[0],
        "rows": len(rows),
        "sql": " ".join(statement.split()),
        "plan": plan,
    }


def time_empty_sweep(engine: Any, runs: int = 15) -> tuple[float, list[float]]:
    from ocop_workflow.sweep import run_sweep

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        counts = run_sweep(engine, NOW, deliver=False)
        times.append((time.perf_counter() - t0) * 1000)
        assert counts.timers_fired == 0, counts
    return statistics.median(times), times


def outbox_check(engine: Any, n_due: int) -> dict[str, Any]:
    """Fired timers, outbox rows per timer, and any (timer, channel, recipient) sent twice."""
    from ocop_workflow.store import notification_t, timer_t

    n = notification_t.c
    with engine.store.read() as conn:
        fired = conn.execute(
            sa.select(sa.func.count()).where(timer_t.c.status == "fired")
        ).scalar_one()
        other = conn.execute(
            sa.select(timer_t.c.status, sa.func.count())
            .where(timer_t.c.status.not_in(["pending", "fired"]))
            .group_by(timer_t.c.status)
        ).all()
        per_timer = (
            sa.select(n.timer_id, sa.func.count().label("c")).group_by(n.timer_id).subquery()
        )
        lo, hi, timers_with_rows, total = conn.execute(
            sa.select(
                sa.func.min(per_timer.c.c),
                sa.func.max(per_timer.c.c),
                sa.func.count(),
                sa.func.sum(per_timer.c.c),
            )
        ).one()
        dupes = conn.execute(
            sa.select(sa.func.count()).select_from(
                sa.select(n.timer_id)
                .group_by(n.timer_id, n.channel, n.recipient)
                .having(sa.func.count() > 1)
                .subquery()
            )
        ).scalar_one()
    ok = fired == n_due and timers_with_rows == n_due and dupes == 0 and not other
    return {
        "timers_fired_in_db": fired,
        "other_statuses": {s: c for s, c in other},
        "outbox_rows": int(total or 0),
        "outbox_rows_per_timer": [lo, hi],
        "duplicate_timer_recipient": dupes,
        "ok": ok,
    }


def reset_fired(engine: Any, max_timer_id: int) -> None:
    """Undo a sweep: fired timers pending again, the outbox and re-planned escalations gone."""
    from ocop_workflow.store import notification_t, timer_t

    with engine.store.write() as conn:
        conn.execute(sa.delete(notification_t))
        conn.execute(sa.delete(timer_t).where(timer_t.c.id > max_timer_id))
        conn.execute(
            timer_t.update()
            .where(timer_t.c.status != "pending")
            .values(status="pending", fired_at=None, late_seconds=None)
        )


def sqlite_checkpoint(engine: Any) -> None:
    """Fold the WAL back into the file so that every round starts from the same state."""
    raw = engine.store.engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def profile_fire(engine: Any) -> str:
    from ocop_workflow.sweep import run_sweep

    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    counts = run_sweep(engine, NOW, deliver=False)
    profiler.disable()
    took = time.perf_counter() - t0
    out = io.StringIO()
    out.write(f"profiled run: {counts.timers_fired} fired in {took:.2f} s (with cProfile)\n")
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


# --- SQLite -----------------------------------------------------------------------------------


def bench_sqlite(n_timers: int, workdir: Path, profile: bool, rounds: int) -> dict[str, Any]:
    from ocop_workflow.sweep import run_sweep

    data = Dataset(n_timers)
    path = workdir / "sweep.db"
    say(
        f"SQLite: building {data.n_timers:,} pending timers on {data.n_dossiers:,} dossiers, "
        f"{data.n_due:,} due at {NOW.isoformat()} ({path})"
    )
    build_s = build_sqlite(path, data)
    size_mb = path.stat().st_size / 1e6
    say(f"  built in {build_s:.1f} s ({size_mb:.0f} MB)")
    engine = make_engine(f"sqlite:///{path}", workdir)

    q = time_due_query(engine)
    say(
        f"  due query: {q['ms']:.2f} ms median of 20 (first {q['first_ms']:.2f} ms), "
        f"{q['rows']} rows"
    )
    say(f"  SQL: {q['sql']}")
    say("  EXPLAIN QUERY PLAN:\n    " + q["plan"].replace("\n", "\n    "))
    uses_index = "ix_timer_wake" in q["plan"]

    rates: list[float] = []
    checks_ok = True
    for round_no in range(rounds):
        if round_no:
            reset_fired(engine, data.n_timers)
            sqlite_checkpoint(engine)
        t0 = time.perf_counter()
        counts = run_sweep(engine, NOW, deliver=False)
        fire_s = time.perf_counter() - t0
        rates.append(counts.timers_fired / fire_s)
        say(
            f"  fire, round {round_no + 1}/{rounds}: {counts.timers_fired:,} fired "
            f"({counts.timers_stale} stale, {counts.timers_superseded} superseded, "
            f"{counts.notifications_written:,} outbox rows) in {fire_s:.2f} s "
            f"= {rates[-1]:,.0f} timers/s"
        )
        check = outbox_check(engine, data.n_due)
        checks_ok = checks_ok and check["ok"]
        say(f"  check: {check}")
    fired_per_s = statistics.median(rates)
    say(f"  fired per second: median {fired_per_s:,.0f} of {[round(r) for r in rates]}")

    empty_ms, empty_all = time_empty_sweep(engine)
    say(
        f"  empty sweep: {empty_ms:.2f} ms median of {len(empty_all)} "
        f"(min {min(empty_all):.2f}, max {max(empty_all):.2f})"
    )

    result: dict[str, Any] = {
        "timers": data.n_timers,
        "dossiers": data.n_dossiers,
        "due": data.n_due,
        "build_s": round(build_s, 1),
        "db_mb": round(size_mb),
        "due_query_ms": round(q["ms"], 3),
        "due_query_first_ms": round(q["first_ms"], 3),
        "query_plan": q["plan"],
        "query_uses_ix_timer_wake": uses_index,
        "fired": counts.timers_fired,
        "fired_per_s": round(fired_per_s),
        "fired_per_s_rounds": [round(r) for r in rates],
        "notifications_written": counts.notifications_written,
        "outbox_check_ok": checks_ok,
        "empty_sweep_ms": round(empty_ms, 3),
    }
    if profile:
        reset_fired(engine, data.n_timers)
        sqlite_checkpoint(engine)
        say(profile_fire(engine))
    engine.store.dispose()
    return result


# --- PostgreSQL --------------------------------------------------------------------------------


def pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def build_pg(url: str, data: Dataset) -> float:
    """Migrate the scratch schema, COPY the rows in, VACUUM ANALYZE; returns seconds taken."""
    from ocop_workflow import migrate
    from ocop_workflow.store import Store

    started = time.perf_counter()
    store = Store(url)
    migrate.upgrade(store)
    raw = store.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        with pg.cursor() as cur:
            with cur.copy(f"COPY dossier ({', '.join(DOSSIER_COLS)}) FROM STDIN") as dcopy:
                for dossier, _ in data.rows(lambda d: d):
                    dcopy.write_row(dossier)
            with cur.copy(f"COPY timer ({', '.join(TIMER_COLS)}) FROM STDIN") as tcopy:
                for _, rows in data.rows(lambda d: d):
                    for row in rows:
                        tcopy.write_row(row)
            cur.execute("SELECT setval(pg_get_serial_sequence('timer', 'id'), max(id)) FROM timer")
        pg.commit()
        loaded = time.perf_counter() - started
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        pg.autocommit = False
    finally:
        raw.close()
    store.dispose()
    took = time.perf_counter() - started
    say(f"  rows copied in {loaded:.1f} s, VACUUM ANALYZE done by {took:.1f} s")
    return took


def pg_vacuum(engine: Any) -> None:
    raw = engine.store.engine.raw_connection()
    try:
        pg = raw.driver_connection
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute("VACUUM ANALYZE timer")
            cur.execute("VACUUM ANALYZE notification")
        pg.autocommit = False
    finally:
        raw.close()


def _worker(url: str, workdir: str, barrier: Any, results: Any) -> None:
    """One sweeping process: set up, wait for the others, sweep until nothing is due."""
    from ocop_workflow import log
    from ocop_workflow.sweep import run_sweep

    log.configure("WARNING")
    engine = make_engine(url, Path(workdir))
    barrier.wait()
    t0 = time.monotonic()
    counts = run_sweep(engine, NOW, deliver=False)
    t1 = time.monotonic()
    engine.store.dispose()
    results.put((os.getpid(), counts.document(), t0, t1))


def pg_fire(url: str, workdir: Path, workers: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, str(workdir), barrier, results))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"worker {p.pid} exited with {p.exitcode}")
    start = min(g[2] for g in got)
    end = max(g[3] for g in got)
    fired = sum(g[1]["timers_fired"] for g in got)
    return {
        "workers": workers,
        "fired": fired,
        "per_worker": [g[1]["timers_fired"] for g in got],
        "deferred": sum(g[1]["timers_deferred"] for g in got),
        "stale": sum(g[1]["timers_stale"] for g in got),
        "superseded": sum(g[1]["timers_superseded"] for g in got),
        "notifications_written": sum(g[1]["notifications_written"] for g in got),
        "wall_s": end - start,
        "per_s": fired / (end - start),
    }


def bench_pg(base: str, n_timers: int, workdir: Path) -> dict[str, Any]:
    data = Dataset(n_timers)
    schema = f"bench_sweep_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = pg_schema_url(base, schema)
    say(
        f"PostgreSQL: schema {schema}: {data.n_timers:,} pending timers on "
        f"{data.n_dossiers:,} dossiers, {data.n_due:,} due"
    )
    try:
        build_s = build_pg(url, data)
        say(f"  built in {build_s:.1f} s")
        engine = make_engine(url, workdir)
        q = time_due_query(engine)
        say(
            f"  due query (FOR UPDATE SKIP LOCKED, rolled back): {q['ms']:.2f} ms median of 20 "
            f"(first {q['first_ms']:.2f} ms), {q['rows']} rows"
        )
        say("  EXPLAIN (ANALYZE, BUFFERS):\n    " + q["plan"].replace("\n", "\n    "))

        runs: dict[int, dict[str, Any]] = {}
        checks: dict[int, dict[str, Any]] = {}
        for workers in (1, 4):
            if workers != 1:
                reset_fired(engine, data.n_timers)
                pg_vacuum(engine)
            run = pg_fire(url, workdir, workers)
            runs[workers] = run
            check = outbox_check(engine, data.n_due)
            checks[workers] = check
            twice = run["fired"] != data.n_due
            say(
                f"  fire, {workers} worker(s): {run['fired']:,} fired "
                f"(per worker {run['per_worker']}, {run['deferred']} deferred) in "
                f"{run['wall_s']:.2f} s = {run['per_s']:,.0f} timers/s; "
                f"fired twice: {'YES' if twice else 'no'}; check: {check}"
            )
        empty_ms, empty_all = time_empty_sweep(engine)
        say(
            f"  empty sweep: {empty_ms:.2f} ms median of {len(empty_all)} "
            f"(min {min(empty_all):.2f}, max {max(empty_all):.2f})"
        )
        engine.store.dispose()
        no_double = all(runs[w]["fired"] == data.n_due and checks[w]["ok"] for w in runs)
        return {
            "pg_timers": data.n_timers,
            "pg_dossiers": data.n_dossiers,
            "pg_due": data.n_due,
            "pg_build_s": round(build_s, 1),
            "pg_due_query_ms": round(q["ms"], 3),
            "pg_due_query_first_ms": round(q["first_ms"], 3),
            "pg_query_plan": q["plan"],
            "pg_fired_per_s_1_worker": round(runs[1]["per_s"]),
            "pg_fired_per_s_4_workers": round(runs[4]["per_s"]),
            "pg_fired_per_worker_4": runs[4]["per_worker"],
            "pg_deferred_4_workers": runs[4]["deferred"],
            "pg_no_timer_fired_twice": no_double,
            "pg_empty_sweep_ms": round(empty_ms, 3),
        }
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        say(f"  dropped schema {schema}")


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=1_000_000, help="pending timers (SQLite)")
    parser.add_argument("--quick", action="store_true", help="20,000 timers, SQLite only")
    parser.add_argument("--postgres", default=DEFAULT_PG, help=f"base URL (default {DEFAULT_PG})")
    parser.add_argument("--pg-timers", type=int, default=None, help="timers on PostgreSQL")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--profile", action="store_true", help="cProfile the SQLite firing")
    parser.add_argument("--rounds", type=int, default=3, help="SQLite firing rounds (median)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite work folder")
    args = parser.parse_args(argv)

    from ocop_workflow import log

    log.configure("WARNING")
    n_timers = 20_000 if args.quick else args.timers
    workdir = Path(tempfile.mkdtemp(prefix="ocop-bench-sweep-"))
    result: dict[str, Any] = {
        "bench": "sweep",
        "now": NOW.isoformat(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }
    started = time.perf_counter()
    try:
        result.update(bench_sqlite(n_timers, workdir, args.profile, args.rounds))
        if not (args.quick or args.no_postgres):
            try:
                result.update(bench_pg(args.postgres, args.pg_timers or n_timers, workdir))
            except sa.exc.OperationalError as exc:
                say(f"PostgreSQL unavailable: {str(exc).splitlines()[0]}")
                result["pg_error"] = str(exc).splitlines()[0]
    finally:
        if args.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["targets_met"] = {
        "due_query_ms<20": result["due_query_ms"] < 20 and result["query_uses_ix_timer_wake"],
        "fired_per_s>=2000": result["fired_per_s"] >= 2000,
        "empty_sweep_ms<5": result["empty_sweep_ms"] < 5,
    }
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
