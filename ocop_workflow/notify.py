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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import sqlalchemy as sa
import structlog

from .config import CHANNELS, NotificationsConfig
from .redact import Redactor, url_secrets
from .store import Store, notification_t

#: How long a claim keeps other workers off a row. Long enough for a batch of sends, short enough
#: that rows claimed by a worker that crashed are retried within minutes. A worker stops starting
#: new sends after half of it (see :func:`deliver_pending`), so it never sends on an expired claim.
LEASE = timedelta(minutes=5)

#: Upper bound of one retry delay: however many attempts are allowed, a message that keeps
#: failing is retried at least a few times a day, so a long outage does not push it out for weeks.
MAX_BACKOFF = timedelta(hours=6)

#: ``last_error`` is one line of at most this many characters: enough for an SMTP reply.
MAX_ERROR_CHARS = 500

_MSGID_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class DeliveryCounts:
    """What one :func:`deliver_pending` call did."""

    sent: int = 0
    failed: int = 0  # attempts that failed and will be retried
    dead: int = 0  # notifications that became dead in this call


class DeliveryError(Exception):
    """A channel failed to deliver one message (the attempt counts; the row is retried or dead)."""


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

    ``tz`` is the ``[engine] timezone``: the ``sent_at`` recipients read (file line, webhook
    body) is shown in it, as every time of interface.md is; the database keeps UTC.

    ``now`` is the injected clock: it decides what is due, the lease, ``sent_at`` and the next
    attempt. Each outcome is written in its own short transaction right after the send, so a crash
    mid-batch re-sends at most the one message in flight. Rows not yet sent when half the lease
    has passed (wall-clock, measured locally) are released for the next run rather than sent on a
    claim another worker may already have taken over.
    """
    env = os.environ if env is None else env
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


def send(row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]) -> None:
    """Deliver one message through ``row["channel"]``; raise :class:`DeliveryError` on failure.

    ``row`` is the notification as it will be once sent: :func:`deliver_pending` passes
    ``attempts`` = this attempt's number and ``sent_at`` = now. A channel no longer listed in
    ``[notifications] channels`` is a failure, so the row ends dead and visible, not dropped.
    """
    channel = row["channel"]
    if channel not in CHANNELS:
        raise DeliveryError(f"unknown channel '{channel}' (known: {', '.join(CHANNELS)})")
    if channel not in config.channels:
        raise DeliveryError(f"channel {channel} is not enabled in [notifications] channels")
    if channel == "file":
        _send_file(row, config)
    elif channel == "email":
        _send_email(row, config, env)
    else:
        _send_webhook(row, config, env)


def message_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of a delivered notification (file channel line, webhook body).

    The ``notifications list`` keys plus ``kind``, ``body`` and ``sent_at`` (interface.md).
    """
    sent_at = row.get("sent_at")
    return {
        "id": row["id"],
        "dossier": row["dossier_id"],
        "channel": row["channel"],
        "recipient": row["recipient"],
        "subject": row["subject"],
        "status": row.get("status", "sent"),
        "attempts": row["attempts"],
        "key": row["key"],
        "kind": row["kind"],
        "body": row["body"],
        "sent_at": sent_at.isoformat() if sent_at is not None else None,
    }


# --- channels ---------------------------------------------------------------------------------


def _send_file(row: Mapping[str, Any], config: NotificationsConfig) -> None:
    """Append one JSON line and fsync: once this returns, the line survives a power cut."""
    if config.file is None:
        raise DeliveryError("the file channel has no [notifications.file] path")
    path = config.file.path
    line = json.dumps(message_document(row), ensure_ascii=False) + "\n"
    data = line.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND and one write per line: concurrent workers never interleave inside a line.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeliveryError(f"cannot append to {path}: {exc.strerror or exc}") from None


def _send_email(
    row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
) -> None:
    """One SMTP session per message. 4xx and 5xx replies alike are failed attempts."""
    cfg = config.email
    password = None
    if cfg.username:
        if not cfg.password_env:
            raise DeliveryError("[notifications.email] username is set but password_env is not")
        password = env.get(cfg.password_env)
        if password is None:
            raise DeliveryError(f"SMTP password variable {cfg.password_env} is not set")
        if not password.isascii():
            # smtplib sends AUTH PLAIN/LOGIN credentials as ASCII: say so, not a codec error.
            raise DeliveryError(
                f"SMTP password in {cfg.password_env} has non-ASCII characters, "
                "which Python's smtplib cannot send"
            )
    domain = cfg.sender.rpartition("@")[2] or "localhost"
    try:
        message = EmailMessage()
        message["From"] = cfg.sender
        message["To"] = row["recipient"]
        message["Subject"] = " ".join(str(row["subject"]).split())
        message["Message-ID"] = f"<{message_id_local_part(row['key'])}@{domain}>"
        message["Date"] = format_datetime(row.get("sent_at") or datetime.now(UTC))
        message.set_content(row["body"], charset="utf-8", cte="quoted-printable")
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds) as smtp:
            if cfg.starttls:
                # The default context verifies the server's certificate and name: without it
                # (smtplib's own default) anyone on the path could take the password.
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username and password is not None:
                smtp.login(cfg.username, password)
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        replies = "; ".join(
            f"{code} {_text(msg)} ({rcpt})" for rcpt, (code, msg) in exc.recipients.items()
        )
        raise DeliveryError(f"SMTP recipient refused: {replies}") from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise DeliveryError(f"SMTP {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from None


def message_id_local_part(key: str) -> str:
    """``key`` as a valid, collision-free Message-ID left part: [A-Za-z0-9._-] only.

    Letters, digits and ``-`` are kept; every other character becomes ``_XX`` per UTF-8 byte
    (``_`` itself included, so two keys never map to the same id). A ``.`` is kept only where
    RFC 5322's dot-atom allows it (not first, last or doubled).
    """
    out: list[str] = []
    for i, ch in enumerate(key):
        dot_ok = ch == "." and 0 < i < len(key) - 1 and key[i - 1] != "."
        if ch in _MSGID_SAFE or dot_ok:
            out.append(ch)
        else:
            out.extend(f"_{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out) or "_"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would be replayed as a GET without the body: treat it as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _send_webhook(
    row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
) -> None:
    """POST the JSON document; any 2xx is delivered, anything else (or no answer) a failure."""
    cfg = config.webhook
    if not cfg.url.lower().startswith(("http://", "https://")):
        raise DeliveryError(f"webhook url must be http:// or https://, not '{cfg.url}'")
    body = json.dumps(message_document(row), ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": row["key"]}
    if cfg.secret_env:
        secret = env.get(cfg.secret_env)
        if secret is None:
            # Sending unsigned would make a verifying receiver reject it, or worse, accept it.
            raise DeliveryError(f"webhook secret variable {cfg.secret_env} is not set")
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        headers["X-OCOP-Signature"] = f"sha256={digest}"
    url = cfg.url
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # urllib does not send URL userinfo: move it to a Basic header (and out of the URL).
        credentials = f"{urllib.parse.unquote(parts.username or '')}:"
        credentials += urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=cfg.timeout_seconds) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"webhook {cfg.url} unreachable: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"webhook {cfg.url}: {type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook answered HTTP {status}")


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
    """The redaction every delivery error goes through: the configured secrets (from the
    environment variables the config names) and the webhook URL's password and query values."""
    names = (config.email.password_env, config.webhook.secret_env)
    secrets = [env.get(name) for name in names if name]
    return Redactor([*secrets, *url_secrets(config.webhook.url)])


def _one_line(text: str) -> str:
    """One line, every control character escaped: the text comes from a remote server."""
    from .inputs import printable

    text = printable(" ".join(text.split())) or "unknown error"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _unexpected(exc: Exception) -> str:
    return f"unexpected {type(exc).__name__}: {exc}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
