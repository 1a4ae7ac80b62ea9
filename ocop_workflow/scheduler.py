"""``ocop worker``: APScheduler as the alarm clock that wakes the sweep — nothing more.

One in-memory interval job calls the sweep every ``sweep_interval_seconds`` (UTC, coalesced, one
instance at a time, no misfire limit, first run at start). There is never one APScheduler job per
dossier or reminder: the timer rows are the truth, and APScheduler's own SQL job store has no
locking, must not be shared by two schedulers and silently drops jobs it cannot unpickle.

On SQLite only one worker may sweep a database: a lease row names the holder and is renewed every
sweep; a second worker is refused with a clear message while the lease is live. On PostgreSQL any
number of workers run side by side (the sweep claims with ``SKIP LOCKED``).

SIGTERM and SIGINT stop the scheduler; the sweep in flight finishes, then the process exits 0
(the signals are waited for with ``sigwait``, never handled in signal context: see ``run_worker``).
"""

from __future__ import annotations

import os
import signal
import socket
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from .clock import ManualClock, SystemClock

if TYPE_CHECKING:
    from .app import App
    from .clock import Clock
    from .lease import Lease
    from .service import Ocop


def run_worker(app: App, *, once: bool = False) -> None:
    """Sweep every ``sweep_interval_seconds`` until SIGTERM/SIGINT (or once, with ``once``).

    The two signals are blocked first, before the SQLite lease is taken, and the main thread
    then waits for one with ``sigwait`` while APScheduler's threads sweep: no Python code runs
    in signal context. A handler runs between any two bytecodes of the main thread — inside the
    import machinery (on Python 3.11 a nested import there failed the outer one with
    ``KeyError: <thread ident>``, CPython gh-91351), or inside ``ThreadPoolExecutor.submit``
    holding the lock that the scheduler's shutdown takes again (the worker then hung on SIGTERM
    until killed). A signal that comes while the worker is still starting waits, pending, and
    stops it as soon as it has started: it exits 0 and releases the lease like one stopped later.
    """
    config = app.config
    live = app.live_clock()
    sweep_clock = ManualClock(live.now())
    ocop = app.ocop.at(sweep_clock)
    ocop.check_database()
    log = _log()
    interval = config.sweep_interval_seconds
    stopping = {signal.SIGTERM, signal.SIGINT}
    previous = None if once else signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    lease = None
    try:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        lease = ocop.worker_lease(holder, timedelta(seconds=max(3 * interval, 60)))
        if lease is not None:
            lease.acquire(live.now())
        worker = _Worker(ocop, sweep_clock, live, lease)
        if once:
            worker.tick()
        else:
            _run_scheduler(worker, interval, stopping, log)
    finally:
        if lease is not None:
            lease.release()
        if previous is not None:
            _forget_pending(stopping - previous)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _forget_pending(signals: set[signal.Signals]) -> None:
    """Consume what is still pending of ``signals`` (one sent again while the worker stopped),
    so that unblocking them does not act on a stop already done."""
    while pending := signals & signal.sigpending():
        signal.sigwait(pending)


class _Worker:
    """One sweep at a time; a failing sweep is logged and the next one tries again.

    Each sweep sets the facade's clock once (``sweep_clock``, from the ``live`` clock), so the
    lease, the sweep and the checkpoint all carry its one instant, as a command's rows do. The
    facade itself is kept from sweep to sweep: its engine remembers when it last found nothing
    to re-plan (``replan.RECHECK_AFTER``), which keeps an idle sweep in milliseconds.
    """

    def __init__(
        self, ocop: Ocop, sweep_clock: ManualClock, live: Clock, lease: Lease | None
    ) -> None:
        self.ocop = ocop
        self.sweep_clock = sweep_clock
        self.live = live
        self.lease = lease

    def tick(self) -> None:
        now = self.sweep_clock.instant = self.live.now()
        try:
            if self.lease is not None:
                self.lease.acquire(now)
            self.ocop.sweep()
            self.ocop.flush_wal()
        except Exception as exc:  # a database hiccup must never kill the worker
            _log().error("worker.sweep_failed", error=_error_text(exc))
        try:
            self.ocop.scheduled_checkpoint()
        except Exception as exc:  # a missing key must not stop the deadlines
            _log().error("worker.checkpoint_failed", error=_error_text(exc))


def _run_scheduler(
    worker: _Worker, interval: float, stopping: set[signal.Signals], log: Any
) -> None:
    """APScheduler's threads sweep while this thread waits for a stop signal; then the sweep
    in flight finishes (``shutdown(wait=True)``) before this returns."""
    from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = BackgroundScheduler(timezone=UTC)

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
    scheduler.start()  # its threads inherit this thread's mask: the signals stay blocked there
    log.info("worker.started", interval_seconds=interval, pid=os.getpid())
    try:
        received = signal.sigwait(stopping)
        log.info("worker.stopping", signal=signal.Signals(received).name)
    finally:
        scheduler.shutdown(wait=True)
    log.info("worker.stopped")


def _error_text(exc: Exception) -> str:
    """An unexpected error as logged: URL credentials and query values masked (redact.py)."""
    from .redact import Redactor

    return Redactor()(f"{type(exc).__name__}: {exc}")


def _log() -> Any:
    import structlog

    return structlog.get_logger("ocop.worker")
