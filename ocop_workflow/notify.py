"""Outbox delivery: file, email (SMTP) and webhook; retries with backoff; dead letters.

Notification rows are written by the transaction that caused them (a timer firing, a transition),
with channel and recipient already decided. This module only delivers them, and the guarantees are:

* **At least once, deduplicated by key.** A row is marked sent only after its channel accepted it,
  so a crash between "sent" and "marked" sends it again on the next run. Every copy carries the
  row's unique idempotency key (email ``Message-ID: <key@domain>``, webhook ``Idempotency-Key``,
  the ``key`` field of the file channel), so the receiver can drop the rare duplicate.
* **Claim with a lease, send outside any transaction.** Rows are claimed in one short write
  transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) by
  setting ``claimed_until``; other workers skip claimed rows until the lease runs out, and a worker
  that dies mid-batch leaves rows that come back by themselves. Network I/O never happens while a
  database lock is held: on SQLite that lock would stall every officer's command for up to the
  SMTP timeout.
* **Never silently dropped.** A failed attempt backs off exponentially with full jitter (so a
  recovering server is not hit by every worker at once); after ``max_attempts`` the row is
  ``dead`` and listed by ``ocop notifications list --status dead``. A row whose channel was removed
  from the config fails the same way, visibly.
* **Secrets stay secret.** Error texts are one line, truncated, and passed through one
  :class:`~ocop_workflow.redact.Redactor` (the SMTP password, the webhook secret and the webhook
  URL's credentials, in any encoding: base64, an AUTH PLAIN blob, percent-encoded, inside a URL)
  before they reach the database or the log.

How a message leaves (the :class:`~ocop_workflow.channels.Channel` interface, its registry, the
file, email and webhook channels) is in :mod:`~ocop_workflow.channels`. Nothing here reads the
environment or the wall clock: ``now`` comes from the caller (the sweep's injected clock) and the
secrets from the config, which read them once when it was loaded.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
import structlog

from .channels import CHANNELS, DeliveryError, message_id_local_part, secret_names, send
from .config import NotificationsConfig
from .redact import Redactor
from .store import Store, notification_t

# Re-exported: delivery's callers and tests name them from here.
__all__ = [
    "LEASE",
    "MAX_BACKOFF",
    "DeliveryCounts",
    "DeliveryError",
    "deliver_pending",
    "message_id_local_part",
    "redactor",
    "retry_delay",
    "send",
]

#: How long a claim keeps other workers off a row. Long enough for a batch of sends, short enough
#: that rows claimed by a worker that crashed are retried within minutes. A worker stops starting
#: new sends after half of it (see :func:`deliver_pending`), so it never sends on an expired claim.
LEASE = timedelta(minutes=5)

#: Upper bound of one retry delay: however many attempts are allowed, a message that keeps
#: failing is retried at least a few times a day, so a long outage does not push it out for weeks.
MAX_BACKOFF = timedelta(hours=6)

#: ``last_error`` is one line of at most this many characters: enough for an SMTP reply.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class DeliveryCounts:
    """What one :func:`deliver_pending` call did."""

    sent: int = 0
    failed: int = 0  # attempts that failed and will be retried
    dead: int = 0  # notifications that became dead in this call


def _log() -> Any:
    # Looked up on each use (not cached at import) so structlog.testing.capture_logs sees it.
    return structlog.get_logger("ocop.notify")


def deliver_pending(
    store: Store,
    config: NotificationsConfig,
    now: datetime,
    *,
    rng: random.Random | None = None,
    limit: int | None = None,
    env: Mapping[str, str] | None = None,
    lease: timedelta = LEASE,
    tz: tzinfo = UTC,
) -> DeliveryCounts:
    """Claim due pending notifications, send each, record the outcome; return the counts.

    ``env`` maps the secret variables the config names (SMTP password, webhook secret) to their
    values; by default the ones :func:`~ocop_workflow.config.load_config` resolved from the
    environment at the edge (``config.secrets``). This function never reads ``os.environ``.

    ``tz`` is the ``[engine] timezone``: the ``sent_at`` recipients read (file line, webhook
    body) is shown in it, as every time of interface.md is; the database keeps UTC.

    ``now`` is the injected clock: it decides what is due, the lease, ``sent_at`` and the next
    attempt. Each outcome is written in its own short transaction right after the send, so a crash
    mid-batch re-sends at most the one message in flight. Rows not yet sent when half the lease
    has passed (wall-clock, measured locally) are released for the next run rather than sent on a
    claim another worker may already have taken over.
    """
    env = config.secrets if env is None else env
    rng = rng or random.Random()
    rows = _claim(store, now, limit or config.batch_size, lease)
    redact = redactor(config, env)
    sent = failed = dead = 0
    budget_end = time.monotonic() + lease.total_seconds() / 2
    done = 0
    try:
        for row in rows:
            if done and time.monotonic() > budget_end:
                break
            attempt = row["attempts"] + 1
            outgoing = {**row, "attempts": attempt, "status": "sent", "sent_at": now.astimezone(tz)}
            try:
                send(outgoing, config, env)
            except Exception as exc:  # any failure is an attempt; one bad row must not block all
                text = str(exc) if isinstance(exc, DeliveryError) else _unexpected(exc)
                error = _one_line(redact(text))  # redact first: truncation may cut a secret
                became_dead = attempt >= config.max_attempts
                next_at = now + retry_delay(attempt, config.backoff_seconds, rng)
                _log().log(
                    logging.ERROR if became_dead else logging.WARNING,
                    "notification.dead" if became_dead else "notification.failed",
                    key=row["key"],
                    channel=row["channel"],
                    attempt=attempt,
                    error=error,
                    next_attempt_at=None if became_dead else next_at.isoformat(),
                )
                # Guarded update: a row another worker already marked is not counted twice.
                if _mark_failed(store, row["id"], attempt, error, became_dead, next_at):
                    if became_dead:
                        dead += 1
                    else:
                        failed += 1
            else:
                if _mark_sent(store, row["id"], attempt, now):
                    sent += 1
                    _log().info(
                        "notification.sent", key=row["key"], channel=row["channel"], attempt=attempt
                    )
            done += 1
    finally:
        if done < len(rows):
            _release(store, [row["id"] for row in rows[done:]])
    return DeliveryCounts(sent=sent, failed=failed, dead=dead)


def retry_delay(attempt: int, backoff_seconds: float, rng: random.Random) -> timedelta:
    """Delay before the attempt after failed attempt number ``attempt`` (1-based): full jitter.

    The ceiling doubles with each attempt (``backoff_seconds * 2**(attempt-1)``, capped at
    :data:`MAX_BACKOFF`); the delay is uniform in ``[0, ceiling]`` so workers that failed together
    do not retry together.
    """
    cap = MAX_BACKOFF.total_seconds()
    ceiling = min(cap, backoff_seconds * 2.0 ** min(max(attempt - 1, 0), 60))
    return timedelta(seconds=rng.uniform(0.0, ceiling))


# --- the outbox rows ----------------------------------------------------------------------------


def _claim(store: Store, now: datetime, limit: int, lease: timedelta) -> list[dict[str, Any]]:
    """Take up to ``limit`` due rows for this worker, in one short transaction."""
    n = notification_t.c
    query = (
        sa.select(notification_t)
        .where(
            n.status == "pending",
            n.next_attempt_at <= now,
            sa.or_(n.claimed_until.is_(None), n.claimed_until <= now),
        )
        .order_by(n.id)
        .limit(limit)
    )
    with store.write() as conn:
        rows = [dict(r) for r in conn.execute(store.claim_query(query)).mappings()]
        if rows:
            conn.execute(
                sa.update(notification_t)
                .where(n.id.in_([r["id"] for r in rows]))
                .values(claimed_until=now + lease)
            )
    return rows


def _mark_sent(store: Store, row_id: int, attempt: int, now: datetime) -> bool:
    n = notification_t.c
    with store.write() as conn:
        result = conn.execute(
            sa.update(notification_t)
            .where(n.id == row_id, n.status == "pending")
            .values(
                status="sent", sent_at=now, attempts=attempt, claimed_until=None, last_error=None
            )
        )
    return result.rowcount == 1


def _mark_failed(
    store: Store, row_id: int, attempt: int, error: str, dead: bool, next_at: datetime
) -> bool:
    n = notification_t.c
    values: dict[str, Any] = {"attempts": attempt, "last_error": error, "claimed_until": None}
    if dead:
        values["status"] = "dead"
    else:
        values["next_attempt_at"] = next_at
    with store.write() as conn:
        result = conn.execute(
            sa.update(notification_t).where(n.id == row_id, n.status == "pending").values(**values)
        )
    return result.rowcount == 1


def _release(store: Store, ids: list[int]) -> None:
    """Give back claimed rows this call did not get to, so the next run need not wait the lease."""
    n = notification_t.c
    with store.write() as conn:
        conn.execute(
            sa.update(notification_t)
            .where(n.id.in_(ids), n.status == "pending")
            .values(claimed_until=None)
        )


# --- error text ---------------------------------------------------------------------------------


def redactor(config: NotificationsConfig, env: Mapping[str, str]) -> Redactor:
    """The redaction every delivery error goes through: every channel's secrets (``env`` maps
    the variables the config names to their values) and the secrets written in the config
    itself (the webhook URL's password and query values)."""
    secrets = [env.get(name) for name in secret_names(config)]
    in_config = [secret for ch in CHANNELS.values() for secret in ch.config_secrets(config)]
    return Redactor([*secrets, *in_config])


def _one_line(text: str) -> str:
    """One line, every control character escaped: the text comes from a remote server."""
    from .inputs import printable

    text = printable(" ".join(text.split())) or "unknown error"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _unexpected(exc: Exception) -> str:
    return f"unexpected {type(exc).__name__}: {exc}"
