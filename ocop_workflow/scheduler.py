"""``ocop worker``: APScheduler as the alarm clock that wakes the sweep — nothing more.

One in-memory interval job calls the sweep every ``sweep_interval_seconds`` (UTC, coalesced, one
instance at a time, no misfire limit, first run at start). There is never one APScheduler job per
dossier or reminder: the timer rows are the truth, and APScheduler's own SQL job store has no
locking, must not be shared by two schedulers and silently drops jobs it cannot unpickle.

On SQLite only one worker may sweep a database: a lease row names the holder and is renewed every
sweep; a second worker is refused with a clear message while the lease is live. On PostgreSQL any
number of workers run side by side (the sweep claims with ``SKIP LOCKED``).

SIGTERM and SIGINT stop the scheduler; the sweep in flight finishes, then the process exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .clock import SystemClock
from .errors import EnvironmentProblem
from .store import Store, insert_ignore, lease_t

if TYPE_CHECKING:
    from .app import App
    from .clock import Clock
    from .engine import Engine

LEASE_NAME = "sqlite-worker"


def live_clock(app: App) -> Clock:
    """Real time, or — in a rehearsal with OCOP_NOW — that instant moving on at real speed."""
    from .clock import clock_from_env

    return clock_from_env(app.config, app.env, moving=True)


class Lease:
    """The SQLite worker lease: one holder, renewed each sweep, expiring if the holder dies."""

    def __init__(self, store: Store, holder: str, ttl: timedelta) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl

    def acquire(self, now: datetime) -> None:
        with self.store.write() as conn:
            insert_ignore(
                conn,
                lease_t,
                {"name": LEASE_NAME, "holder": self.holder, "expires_at": now + self.ttl},
                ["name"],
            )
            taken = conn.execute(
                lease_t.update()
                .where(
                    lease_t.c.name == LEASE_NAME,
                    sa.or_(lease_t.c.holder == self.holder, lease_t.c.expires_at <= now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl)
            ).rowcount
            if not taken:
                row = conn.execute(sa.select(lease_t).where(lease_t.c.name == LEASE_NAME)).one()
                raise EnvironmentProblem(
                    f"another worker ({row.holder}) is sweeping this SQLite database until "
                    f"{row.expires_at.isoformat()}: on SQLite only one worker may run "
                    "(use PostgreSQL for several)"
                )

    def release(self) -> None:
        with self.store.write() as conn:
            conn.execute(
                lease_t.delete().where(
                    lease_t.c.name == LEASE_NAME, lease_t.c.holder == self.holder
                )
            )


def run_worker(app: App, *, once: bool = False) -> None:
    """Sweep every ``sweep_interval_seconds`` until SIGTERM/SIGINT (or once, with ``once``).

    The signal handlers are installed first, before the SQLite lease is taken: a worker stopped
    while it is still starting exits 0 and releases the lease like one stopped later.
    """
    config = app.config
    ocop = app.ocop.at(live_clock(app))
    clock = ocop.clock.now
    engine = ocop.engine
    log = _log()
    interval = config.sweep_interval_seconds
    stop = _Stop(log)
    if not once:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    lease = None
    if engine.store.is_sqlite:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        lease = Lease(engine.store, holder, timedelta(seconds=max(3 * interval, 60)))
        lease.acquire(clock())
    worker = _Worker(engine, clock, lease, stop)
    try:
        if once:
            worker.tick()
            return
        if not stop.requested.is_set():
            _run_scheduler(worker, interval, stop, log)
    finally:
        if lease is not None:
            lease.release()


class _Stop:
    """The SIGTERM/SIGINT handler: remember the request, stop the scheduler if it runs.

    The handler imports nothing and builds no logger: it may run between any two bytecodes of
    the main thread, including inside the import machinery while the worker is still importing
    APScheduler. On Python 3.11 an import made there re-enters ``importlib``'s module lock
    bookkeeping and the *outer* import fails with ``KeyError: <main thread ident>``
    (CPython gh-91351) — the worker then exited 1 with "unexpected KeyError: 1396…" instead of
    stopping cleanly. Everything the handler needs is therefore imported and bound here, before
    the handler is installed.
    """

    def __init__(self, log: Any) -> None:
        from apscheduler.schedulers import SchedulerNotRunningError

        self.log = log.bind() if hasattr(log, "bind") else log
        self.not_running = SchedulerNotRunningError
        self.requested = threading.Event()
        self.scheduler: Any = None
        self.names = {int(s): s.name for s in (signal.SIGTERM, signal.SIGINT)}

    def __call__(self, signum: int, _frame: Any) -> None:
        self.log.info("worker.stopping", signal=self.names.get(signum, str(signum)))
        self.requested.set()
        self.shutdown()

    def shutdown(self) -> None:
        if self.scheduler is not None:
            # Not started yet: the first job sees the request and stops it.
            with contextlib.suppress(self.not_running):
                self.scheduler.shutdown(wait=False)


class _Worker:
    """One sweep at a time; a failing sweep is logged and the next one tries again."""

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime], lease: Lease | None, stop: _Stop
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.lease = lease
        self.stop = stop
        self.busy = threading.Lock()

    def tick(self) -> None:
        from .sweep import run_sweep

        if self.stop.requested.is_set():  # a signal came while the scheduler was starting
            self.stop.shutdown()
            return
        with self.busy:
            now = self.clock()
            try:
                if self.lease is not None:
                    self.lease.acquire(now)
                run_sweep(self.engine, now)
                self.engine.store.checkpoint()
            except Exception as exc:  # a database hiccup must never kill the worker
                _log().error("worker.sweep_failed", error=_error_text(exc))
            try:
                from .checkpoint import write_scheduled

                write_scheduled(self.engine.store, self.engine.config.audit, now)
            except Exception as exc:  # a missing key must not stop the deadlines
                _log().error("worker.checkpoint_failed", error=_error_text(exc))


def _run_scheduler(worker: _Worker, interval: float, stop: _Stop, log: Any) -> None:
    from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = BlockingScheduler(timezone=UTC)

    def on_error(event: JobExecutionEvent) -> None:
        log.error("worker.job_error", job=event.job_id, error=repr(event.exception))

    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    scheduler.add_job(
        worker.tick,
        IntervalTrigger(seconds=interval, timezone=UTC),
        id="sweep",
        name="ocop sweep",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        next_run_time=SystemClock().now(),  # APScheduler's alarm runs on real time
    )
    stop.scheduler = scheduler
    log.info("worker.started", interval_seconds=interval, pid=os.getpid())
    scheduler.start()
    with worker.busy:  # the sweep in flight, if any, finishes before we return
        pass
    log.info("worker.stopped")


def _error_text(exc: Exception) -> str:
    """An unexpected error as logged: URL credentials and query values masked (redact.py)."""
    from .redact import Redactor

    return Redactor()(f"{type(exc).__name__}: {exc}")


def _log() -> Any:
    import structlog

    return structlog.get_logger("ocop.worker")
