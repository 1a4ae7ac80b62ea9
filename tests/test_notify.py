"""Outbox delivery against real parts: an SQLite file, an in-process SMTP server, an HTTP server."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlmodel import SQLModel
from structlog.testing import capture_logs

from ocop_workflow.channels import EmailChannel, FileChannel, WebhookChannel
from ocop_workflow.config import NotificationsConfig
from ocop_workflow.notify import (
    MAX_BACKOFF,
    DeliveryCounts,
    deliver_pending,
    message_id_local_part,
    retry_delay,
)
from ocop_workflow.store import Store, notification_t

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SUBJECT = "Nhắc hạn: Cà phê Ia Le — còn 5 ngày làm việc"
BODY = "Hồ sơ OCOP-2026-0001 (Cà phê Ia Le, HTX Nông nghiệp Ia Le) cần bổ sung trước 09/03/2026."
KEY = "timer:17:reminder:2026-03-09T02:00+00:00"
SENDER = "ocop@iale.gialai.gov.vn"
PASSWORD = "Iale-SMTP-pw-42"  # ASCII: smtplib cannot send others (see the non-ASCII test)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    SQLModel.metadata.create_all(store.engine)
    yield store
    store.dispose()


def add(store: Store, **values: Any) -> int:
    row: dict[str, Any] = {
        "key": KEY,
        "dossier_id": "OCOP-2026-0001",
        "timer_id": 17,
        "kind": "reminder",
        "channel": "file",
        "recipient": "lan@example.vn",
        "subject": SUBJECT,
        "body": BODY,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": T0,
        "created_at": T0 - timedelta(minutes=1),
    }
    row.update(values)
    with store.write() as conn:
        return int(conn.execute(sa.insert(notification_t).values(**row)).inserted_primary_key[0])


def get(store: Store, row_id: int) -> dict[str, Any]:
    with store.read() as conn:
        query = sa.select(notification_t).where(notification_t.c.id == row_id)
        return dict(conn.execute(query).mappings().one())


def deliver_until_settled(store: Store, config: NotificationsConfig, row_id: int) -> list[Any]:
    """Call deliver_pending, each time with `now` moved to the row's next attempt; no sleeping."""
    now, counts = T0, []
    for _ in range(config.max_attempts + 2):
        counts.append(deliver_pending(store, config, now, rng=random.Random(1), env={}))
        row = get(store, row_id)
        if row["status"] != "pending":
            break
        now = max(now, row["next_attempt_at"])
    return counts


# --- real servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpHandler:
    """Answers RCPT and DATA from scripted replies (None = accept), keeps what it accepted."""

    rcpt_replies: list[str | None] = field(default_factory=list)
    data_replies: list[str | None] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.pop(0) if self.rcpt_replies else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.data_replies.pop(0) if self.data_replies else None
        if reply:
            return reply
        self.received.append(envelope.content)
        return "250 Message accepted"


def recording_authenticator(logins: list[tuple[str, str]]) -> Any:
    """Accepts PASSWORD only and records every (login, password) tried."""

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((_text(auth_data.login), _text(auth_data.password)))
        # handled=False: let aiosmtpd answer "535 ... credentials invalid" itself.
        return AuthResult(success=_text(auth_data.password) == PASSWORD, handled=False)

    return authenticator


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpHandler, int, list[tuple[str, str]]]]:
    handler = SmtpHandler()
    logins: list[tuple[str, str]] = []
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=recording_authenticator(logins),
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, port, logins
    finally:
        controller.stop()


def email_config(port: int, **email: Any) -> NotificationsConfig:
    return NotificationsConfig(
        channels=("email",),
        settings={
            "email": EmailChannel(
                host="127.0.0.1", port=port, sender=SENDER, timeout_seconds=5, **email
            )
        },
        max_attempts=3,
        backoff_seconds=1.0,
    )


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A local HTTP server recording each POST; answers the scripted statuses, then 200."""
    received: list[dict[str, Any]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ocop", received, statuses
    finally:
        server.shutdown()
        server.server_close()


# --- file channel -------------------------------------------------------------------------------


def test_file_channel_appends_documented_json_lines_with_vietnamese_intact(store, tmp_path):
    path = tmp_path / "out" / "outbox.jsonl"  # the folder does not exist yet
    config = NotificationsConfig(channels=("file",), settings={"file": FileChannel(path)})
    first = add(store)
    second = add(store, key=KEY + ":2", kind="deadline", subject="Hết hạn: Mắm tôm Ba Làng")

    counts = deliver_pending(store, config, T0, env={})

    assert counts == DeliveryCounts(sent=2)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert "Cà phê" in lines[0]  # ensure_ascii=False: readable in the file itself
    doc = json.loads(lines[0])
    assert set(doc) == {
        "id", "dossier", "channel", "recipient", "subject", "status", "attempts", "key", "kind",
        "body", "sent_at",
    }  # fmt: skip
    assert doc["id"] == first
    assert doc["dossier"] == "OCOP-2026-0001"
    assert (doc["subject"], doc["body"], doc["key"]) == (SUBJECT, BODY, KEY)
    assert (doc["status"], doc["attempts"], doc["kind"]) == ("sent", 1, "reminder")
    assert datetime.fromisoformat(doc["sent_at"]) == T0
    assert json.loads(lines[1])["subject"] == "Hết hạn: Mắm tôm Ba Làng"
    for row_id in (first, second):
        row = get(store, row_id)
        assert (row["status"], row["attempts"], row["sent_at"]) == ("sent", 1, T0)
        assert row["claimed_until"] is None and row["last_error"] is None
    # Nothing left to do: a second run sends nothing and appends nothing.
    assert deliver_pending(store, config, T0 + timedelta(hours=1), env={}) == DeliveryCounts()
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2


# --- email channel ------------------------------------------------------------------------------


def test_email_arrives_through_real_smtp_with_vietnamese_text_and_key_message_id(store, smtp):
    handler, port, _ = smtp
    row_id = add(store, channel="email")

    counts = deliver_pending(store, email_config(port), T0, env={})

    assert counts == DeliveryCounts(sent=1)
    assert len(handler.received) == 1
    message = email.message_from_bytes(handler.received[0], policy=email.policy.default)
    assert message["Subject"] == SUBJECT
    assert message["To"] == "lan@example.vn"
    assert message["From"] == SENDER
    assert message.get_content().strip() == BODY
    # A long Message-ID is folded onto a continuation line; unfolded it is the key's id.
    expected_id = f"<{message_id_local_part(KEY)}@iale.gialai.gov.vn>"
    assert message["Message-ID"].strip() == expected_id
    assert message["Date"]
    assert get(store, row_id)["status"] == "sent"


def test_email_temporary_failure_451_is_retried_and_delivered_on_third_attempt(store, smtp):
    handler, port, _ = smtp
    handler.data_replies = ["451 4.3.0 try again", "451 4.3.0 try again"]
    row_id = add(store, channel="email")

    counts = deliver_until_settled(store, email_config(port), row_id)

    assert counts == [DeliveryCounts(failed=1), DeliveryCounts(failed=1), DeliveryCounts(sent=1)]
    row = get(store, row_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert len(handler.received) == 1


def test_email_permanent_failure_550_ends_dead_after_max_attempts(store, smtp):
    handler, port, _ = smtp
    handler.rcpt_replies = ["550 5.1.1 no such user"] * 5
    row_id = add(store, channel="email", recipient="khongco@example.vn")

    with capture_logs() as logs:
        counts = deliver_until_settled(store, email_config(port), row_id)

    assert counts == [DeliveryCounts(failed=1), DeliveryCounts(failed=1), DeliveryCounts(dead=1)]
    row = get(store, row_id)
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert "550" in row["last_error"] and "no such user" in row["last_error"]
    assert "\n" not in row["last_error"]
    with store.read() as conn:
        dead = conn.execute(
            sa.select(notification_t.c.key).where(notification_t.c.status == "dead")
        ).scalars()
        assert list(dead) == [KEY]
    events = [(e["event"], e["attempt"], e["channel"], e["key"]) for e in logs]
    assert events == [
        ("notification.failed", 1, "email", KEY),
        ("notification.failed", 2, "email", KEY),
        ("notification.dead", 3, "email", KEY),
    ]
    assert all("550" in e["error"] for e in logs)
    # Dead is final: later runs leave it alone.
    later = T0 + timedelta(days=30)
    assert deliver_pending(store, email_config(port), later, env={}) == DeliveryCounts()


def test_email_login_works_and_password_never_appears_in_error_or_logs(store, smtp):
    handler, port, logins = smtp
    password = PASSWORD
    env = {"OCOP_SMTP_PASSWORD": password}
    config = email_config(port, username="ocop", password_env="OCOP_SMTP_PASSWORD")
    # A careless server that echoes the password back in its refusal.
    handler.rcpt_replies = [f"550 5.7.1 refused for ocop/{password}"] * 3
    row_id = add(store, channel="email")

    with capture_logs() as logs:
        now = T0
        for _ in range(3):
            deliver_pending(store, config, now, rng=random.Random(3), env=env)
            now = get(store, row_id)["next_attempt_at"]

    assert logins and logins[0] == ("ocop", password)
    row = get(store, row_id)
    assert row["status"] == "dead"
    assert "550" in row["last_error"] and "***" in row["last_error"]
    assert password not in row["last_error"]
    assert logs and all(password not in repr(entry) for entry in logs)

    # With the refusals gone the same login delivers.
    add(store, channel="email", key="k-ok")
    assert deliver_pending(store, config, now, env=env) == DeliveryCounts(sent=1)


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[SmtpHandler, int, list[tuple[str, str]], Path]]:
    """An SMTP server that accepts mail and logins only after STARTTLS, with a self-signed
    certificate for 127.0.0.1 (returned, for the client to trust or not)."""
    import ssl
    import subprocess

    cert, key = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = SmtpHandler()
    logins: list[tuple[str, str]] = []
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=recording_authenticator(logins),
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield handler, port, logins, cert
    finally:
        controller.stop()


def test_email_starttls_verifies_the_server_then_logs_in_and_delivers(store, tls_smtp, monkeypatch):
    handler, port, logins, cert = tls_smtp
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the office trusts its mail server's CA
    env = {"OCOP_SMTP_PASSWORD": PASSWORD}
    config = email_config(port, starttls=True, username="ocop", password_env="OCOP_SMTP_PASSWORD")
    row_id = add(store, channel="email")

    assert deliver_pending(store, config, T0, env=env) == DeliveryCounts(sent=1)
    assert logins == [("ocop", PASSWORD)]
    message = email.message_from_bytes(handler.received[0], policy=email.policy.default)
    assert message.get_content().strip() == BODY
    assert get(store, row_id)["status"] == "sent"


def test_email_starttls_to_an_untrusted_server_fails_before_the_password_is_sent(
    store, tls_smtp, monkeypatch
):
    handler, port, logins, _ = tls_smtp
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")  # nobody vouches for the server
    env = {"OCOP_SMTP_PASSWORD": PASSWORD}
    config = email_config(port, starttls=True, username="ocop", password_env="OCOP_SMTP_PASSWORD")
    row_id = add(store, channel="email")

    assert deliver_pending(store, config, T0, env=env) == DeliveryCounts(failed=1)
    row = get(store, row_id)
    assert "CERTIFICATE_VERIFY_FAILED" in row["last_error"] or "certificate" in row["last_error"]
    assert logins == [] and handler.received == []


def test_email_without_starttls_is_refused_by_a_server_that_requires_it(store, tls_smtp):
    handler, port, _, _ = tls_smtp
    row_id = add(store, channel="email")
    assert deliver_pending(store, email_config(port), T0, env={}) == DeliveryCounts(failed=1)
    assert "530" in get(store, row_id)["last_error"]
    assert handler.received == []


def test_email_missing_password_variable_is_named_not_guessed(store, smtp):
    _, port, logins = smtp
    config = email_config(port, username="ocop", password_env="OCOP_SMTP_PASSWORD")
    row_id = add(store, channel="email")

    assert deliver_pending(store, config, T0, env={}) == DeliveryCounts(failed=1)

    assert "OCOP_SMTP_PASSWORD" in get(store, row_id)["last_error"]
    assert logins == []


def test_email_wrong_password_is_a_failed_attempt_without_the_password(store, smtp):
    _, port, logins = smtp
    config = email_config(port, username="ocop", password_env="OCOP_SMTP_PASSWORD")
    row_id = add(store, channel="email")

    with capture_logs() as logs:
        counts = deliver_pending(store, config, T0, env={"OCOP_SMTP_PASSWORD": "wrong-pw-7"})

    assert counts == DeliveryCounts(failed=1)
    error = get(store, row_id)["last_error"]
    assert "535" in error and "wrong-pw-7" not in error
    assert logins and set(logins) == {("ocop", "wrong-pw-7")}  # smtplib tries PLAIN, LOGIN
    assert logs and all("wrong-pw-7" not in repr(entry) for entry in logs)


def test_email_non_ascii_password_fails_clearly_without_showing_it(store, smtp):
    _, port, _ = smtp
    config = email_config(port, username="ocop", password_env="OCOP_SMTP_PASSWORD")
    row_id = add(store, channel="email")

    deliver_pending(store, config, T0, env={"OCOP_SMTP_PASSWORD": "mật-khẩu-42"})

    error = get(store, row_id)["last_error"]
    assert "OCOP_SMTP_PASSWORD" in error and "non-ASCII" in error
    assert "mật" not in error


def test_message_id_local_part_is_valid_and_distinct_for_distinct_keys():
    keys = [KEY, "a:b", "a/b", "a_3Ab", "a.b", ".a..b.", "hồ sơ 1"]
    parts = [message_id_local_part(k) for k in keys]
    assert len(set(parts)) == len(keys)
    for part in parts:
        assert set(part) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
        assert not part.startswith(".") and not part.endswith(".") and ".." not in part


# --- webhook channel ----------------------------------------------------------------------------


def test_webhook_posts_signed_json_with_idempotency_key(store, webhook):
    url, received, _ = webhook
    secret = "bí-mật-webhook"
    config = NotificationsConfig(
        channels=("webhook",),
        settings={"webhook": WebhookChannel(url=url, secret_env="OCOP_HOOK_SECRET")},
    )
    row_id = add(store, channel="webhook", recipient="https://tinh.gialai.gov.vn/ocop")

    counts = deliver_pending(store, config, T0, env={"OCOP_HOOK_SECRET": secret})

    assert counts == DeliveryCounts(sent=1)
    [request] = received
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["idempotency-key"] == KEY
    assert headers["content-type"] == "application/json; charset=utf-8"
    expected = hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-ocop-signature"], f"sha256={expected}")
    doc = json.loads(request["body"].decode("utf-8"))
    assert (doc["key"], doc["id"], doc["subject"], doc["body"]) == (KEY, row_id, SUBJECT, BODY)
    assert get(store, row_id)["status"] == "sent"


def test_webhook_answering_500_is_retried_then_sent(store, webhook):
    url, received, statuses = webhook
    statuses.append(500)
    config = NotificationsConfig(
        channels=("webhook",), settings={"webhook": WebhookChannel(url=url)}
    )
    row_id = add(store, channel="webhook")

    counts = deliver_until_settled(store, config, row_id)

    assert counts == [DeliveryCounts(failed=1), DeliveryCounts(sent=1)]
    assert len(received) == 2
    assert all(r["headers"]["Idempotency-Key"] == KEY for r in received)  # same key: dedup works
    assert "x-ocop-signature" not in {k.lower() for k in received[0]["headers"]}
    row = get(store, row_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_webhook_unreachable_is_a_failed_attempt(store):
    config = NotificationsConfig(
        channels=("webhook",),
        settings={
            "webhook": WebhookChannel(url=f"http://127.0.0.1:{free_port()}/ocop", timeout_seconds=2)
        },
    )
    row_id = add(store, channel="webhook")

    assert deliver_pending(store, config, T0, env={}) == DeliveryCounts(failed=1)
    assert "unreachable" in get(store, row_id)["last_error"]


# --- scheduling: backoff, due times, claims -----------------------------------------------------


def test_backoff_grows_exponentially_with_full_jitter_within_bounds():
    rng = random.Random(20260302)
    for attempt in range(1, 7):
        ceiling = 10.0 * 2 ** (attempt - 1)
        delays = [retry_delay(attempt, 10.0, rng).total_seconds() for _ in range(2000)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert min(delays) < 0.05 * ceiling and max(delays) > 0.95 * ceiling  # jittered, full
        assert abs(sum(delays) / len(delays) - ceiling / 2) < 0.05 * ceiling  # mean doubles
    assert retry_delay(40, 10.0, rng) <= MAX_BACKOFF


def test_failed_attempts_are_rescheduled_by_the_seeded_backoff(store, tmp_path):
    # "webhook" is not enabled: every attempt fails without any network, with a clear error.
    config = NotificationsConfig(
        channels=("file",), settings={"file": FileChannel(tmp_path / "o.jsonl")}, max_attempts=6,
        backoff_seconds=10.0,
    )  # fmt: skip
    row_id = add(store, channel="webhook")
    expected = random.Random(5)
    rng = random.Random(5)
    now = T0
    for attempt in range(1, 6):
        assert deliver_pending(store, config, now, rng=rng, env={}) == DeliveryCounts(failed=1)
        row = get(store, row_id)
        assert row["attempts"] == attempt
        assert row["next_attempt_at"] - now == retry_delay(attempt, 10.0, expected)
        assert row["next_attempt_at"] - now <= timedelta(seconds=10 * 2 ** (attempt - 1))
        assert row["last_error"] == "channel webhook is not enabled in [notifications] channels"
        now = row["next_attempt_at"]
    assert deliver_pending(store, config, now, rng=rng, env={}) == DeliveryCounts(dead=1)
    assert get(store, row_id)["status"] == "dead"


def test_row_not_yet_due_is_not_sent(store, tmp_path):
    path = tmp_path / "o.jsonl"
    config = NotificationsConfig(channels=("file",), settings={"file": FileChannel(path)})
    row_id = add(store, next_attempt_at=T0 + timedelta(minutes=10))

    assert deliver_pending(store, config, T0, env={}) == DeliveryCounts()
    assert get(store, row_id)["status"] == "pending" and not path.exists()

    assert deliver_pending(store, config, T0 + timedelta(minutes=10), env={}).sent == 1


def test_row_claimed_by_another_worker_is_not_sent_until_its_lease_runs_out(store, tmp_path):
    path = tmp_path / "o.jsonl"
    config = NotificationsConfig(channels=("file",), settings={"file": FileChannel(path)})
    row_id = add(store, claimed_until=T0 + timedelta(minutes=5))

    assert deliver_pending(store, config, T0, env={}) == DeliveryCounts()
    assert get(store, row_id)["attempts"] == 0 and not path.exists()

    # The other worker died: once its lease has run out the row is delivered here.
    assert deliver_pending(store, config, T0 + timedelta(minutes=5), env={}).sent == 1
    assert get(store, row_id)["status"] == "sent"


def test_limit_and_order_by_id(store, tmp_path):
    path = tmp_path / "o.jsonl"
    config = NotificationsConfig(
        channels=("file",), settings={"file": FileChannel(path)}, batch_size=2
    )
    ids = [add(store, key=f"k{i}") for i in range(5)]

    assert deliver_pending(store, config, T0, env={}).sent == 2
    assert deliver_pending(store, config, T0, env={}, limit=1).sent == 1
    sent = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert sent == ids[:3]


def test_rows_left_when_the_lease_budget_is_spent_are_released_not_held(store, tmp_path):
    path = tmp_path / "o.jsonl"
    config = NotificationsConfig(channels=("file",), settings={"file": FileChannel(path)})
    ids = [add(store, key=f"k{i}") for i in range(3)]

    # A lease far too short for the batch: one message goes out, the rest are given back.
    counts = deliver_pending(store, config, T0, env={}, lease=timedelta(microseconds=1))

    assert counts == DeliveryCounts(sent=1)
    rest = [get(store, i) for i in ids[1:]]
    assert all(r["status"] == "pending" and r["claimed_until"] is None for r in rest)
    assert all(r["attempts"] == 0 for r in rest)
    assert deliver_pending(store, config, T0, env={}).sent == 2


# --- through the ocop command -------------------------------------------------------------------


def test_ocop_sweep_leaves_undeliverable_email_dead_and_listed_while_the_file_copy_arrives(
    tmp_path: Path, smtp: tuple[SmtpHandler, int, list[tuple[str, str]]]
) -> None:
    from conftest import Workspace, write_config

    handler, port, _ = smtp
    handler.rcpt_replies = ["550 5.1.1 mailbox unavailable"] * 100
    write_config(
        tmp_path,
        channels='["file", "email"]',
        extra=f'[notifications.email]\nhost = "127.0.0.1"\nport = {port}\n'
        f'sender = "{SENDER}"\ntimeout_seconds = 5\n',
    )
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    registered = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--json",
        user="lan",
        now="2026-03-02T09:00:00+07:00",
    )
    assert registered.code == 0, str(registered)
    dossier_id = registered.json()["id"]

    # the registration deadline passed unseen; three sweeps an hour apart use the 3 attempts
    sweeps = []
    for hour in ("09", "10", "11"):
        done = ws.run("sweep", "--json", now=f"2026-04-01T{hour}:00:00+07:00")
        assert done.code == 0, str(done)
        sweeps.append(done.json())
    assert sweeps[0]["timers_fired"] >= 1 and sweeps[0]["notifications_failed"] >= 1
    assert sweeps[-1]["notifications_dead"] == sweeps[0]["notifications_failed"]

    listed = ws.run(
        "notifications", "list", "--status", "dead", "--json", now="2026-04-01T12:00:00+07:00"
    )
    assert listed.code == 0, str(listed)
    dead = listed.json()
    assert dead and {n["channel"] for n in dead} == {"email"}
    assert {n["status"] for n in dead} == {"dead"} and {n["attempts"] for n in dead} == {3}
    assert all("550" in n["last_error"] for n in dead)
    assert "lan@example.vn" in {n["recipient"] for n in dead}
    human = ws.run("notifications", "list", "--status", "dead", now="2026-04-01T12:00:00+07:00")
    assert "dead" in human.stdout and "lan@example.vn" in human.stdout

    # the file copy of the same notice arrived, its sent_at in the office's time zone
    lines = [json.loads(x) for x in (tmp_path / "outbox.jsonl").read_text("utf-8").splitlines()]
    mine = [x for x in lines if x["dossier"] == dossier_id]
    assert mine and all(x["sent_at"].endswith("+07:00") for x in mine), mine
    assert datetime.fromisoformat(mine[0]["sent_at"]) == datetime(2026, 4, 1, 2, 0, tzinfo=UTC)


def _registered_dossier(ws: Any) -> str:
    ws.run("init", check=True)
    registered = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--json",
        user="lan",
        now="2026-03-02T09:00:00+07:00",
    )
    assert registered.code == 0, str(registered)
    return str(registered.json()["id"])


def test_the_email_date_header_is_the_sweeps_injected_clock_not_the_wall_clock(
    tmp_path: Path, smtp: tuple[SmtpHandler, int, list[tuple[str, str]]]
) -> None:
    from conftest import Workspace, write_config

    handler, port, _ = smtp
    write_config(
        tmp_path,
        channels='["email"]',
        extra=f'[notifications.email]\nhost = "127.0.0.1"\nport = {port}\n'
        f'sender = "{SENDER}"\ntimeout_seconds = 5\n',
    )
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    _registered_dossier(ws)

    # a rehearsal instant years away from today: only the injected clock can give it
    done = ws.run("sweep", "--json", now="2031-04-01T09:30:00+07:00")

    assert done.code == 0, str(done)
    assert done.json()["notifications_sent"] >= 1
    assert handler.received
    for raw in handler.received:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Date"].datetime == datetime(2031, 4, 1, 2, 30, tzinfo=UTC)
        assert str(message["Date"]).endswith("+0700")  # the office's time zone


def test_the_smtp_password_is_read_when_the_config_is_loaded_not_at_delivery(
    store: Store,
    smtp: tuple[SmtpHandler, int, list[tuple[str, str]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import write_config

    from ocop_workflow.config import load_config

    _, port, logins = smtp
    path = write_config(
        tmp_path,
        channels='["email"]',
        extra=f'[notifications.email]\nhost = "127.0.0.1"\nport = {port}\n'
        f'sender = "{SENDER}"\nusername = "ocop"\npassword_env = "OCOP_SMTP_PASSWORD"\n',
    )
    config = load_config(path, {"OCOP_SMTP_PASSWORD": PASSWORD})
    # the process environment says otherwise: delivery must not look there
    monkeypatch.setenv("OCOP_SMTP_PASSWORD", "not-the-loaded-one")
    add(store, channel="email")

    assert deliver_pending(store, config.notifications, T0) == DeliveryCounts(sent=1)
    assert logins == [("ocop", PASSWORD)]
    assert "not-the-loaded-one" not in repr(config)  # and the loaded one is not in its repr
    assert PASSWORD not in repr(config)


def test_a_new_channel_is_one_registered_class_that_config_sweep_and_delivery_all_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import Workspace, write_config

    from ocop_workflow import channels
    from ocop_workflow.clock import FixedClock
    from ocop_workflow.config import User, load_config
    from ocop_workflow.errors import ConfigError
    from ocop_workflow.service import Ocop

    class Sms:
        """A channel that texts the user's key (a phone book would map it) and needs a token."""

        name = "sms"
        required_keys = ("sender",)

        def __init__(self) -> None:
            self.sent: list[tuple[dict[str, Any], str | None]] = []

        def config_keys(self) -> dict[str, Any]:
            from ocop_workflow.config_checks import text

            return {"sender": text}

        def settings(self, values: Any, resolve: Any) -> str | None:
            return values.get("sender")

        def address(self, user: User) -> str | None:
            return f"sms:{user.key}"

        def secret_names(self, config: NotificationsConfig) -> tuple[str, ...]:
            return ("OCOP_SMS_TOKEN",)

        def config_secrets(self, config: NotificationsConfig) -> list[str]:
            return []

        def send(self, row: Any, config: NotificationsConfig, env: Any) -> None:
            sender = config.settings["sms"]  # its own [notifications.sms] table
            self.sent.append(({**row, "sender": sender}, env.get("OCOP_SMS_TOKEN")))

    sms = Sms()
    # before registration the config refuses the name, listing what is known
    write_config(tmp_path, channels='["file", "sms"]')
    with pytest.raises(
        ConfigError, match="unknown channel 'sms' \\(known: file, email, webhook\\)"
    ):
        load_config(tmp_path / "config.toml", {})
    monkeypatch.setitem(channels.CHANNELS, "sms", sms)
    with pytest.raises(
        ConfigError, match=r"missing required config key 'notifications\.sms\.sender'"
    ):
        load_config(tmp_path / "config.toml", {})  # its table, checked as it says
    write_config(
        tmp_path, channels='["file", "sms"]', extra='[notifications.sms]\nsender = "OCOP Gia Lai"\n'
    )

    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    dossier_id = _registered_dossier(ws)
    config = load_config(ws.config, {"OCOP_DATABASE_URL": ws.url, "OCOP_SMS_TOKEN": "tok-42"})
    counts = Ocop(config, FixedClock(datetime(2026, 4, 1, 2, 0, tzinfo=UTC))).sweep()

    assert counts.notifications_sent >= 2 and counts.notifications_failed == 0
    assert sms.sent, "the registered channel delivered nothing"
    assert {row["dossier_id"] for row, _ in sms.sent} == {dossier_id}
    assert all(row["recipient"].startswith("sms:") for row, _ in sms.sent)  # its address()
    assert "sms:lan" in {row["recipient"] for row, _ in sms.sent}
    assert {row["sender"] for row, _ in sms.sent} == {"OCOP Gia Lai"}
    assert {token for _, token in sms.sent} == {"tok-42"}  # resolved at load, handed to send
    assert {row["sent_at"] for row, _ in sms.sent} == {datetime(2026, 4, 1, 2, 0, tzinfo=UTC)}
    # the file channel beside it is unchanged
    lines = (tmp_path / "outbox.jsonl").read_text("utf-8").splitlines()
    assert {json.loads(x)["dossier"] for x in lines} == {dossier_id}
