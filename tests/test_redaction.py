"""No secret in any form reaches a stored error, a log line or a command's output.

Real parts: an aiosmtpd server that echoes the client's AUTH line in its refusal (as careless
servers do), an HTTP receiver that echoes the request's credentials in its reason phrase, and
the ``ocop`` CLI (sweep, notifications list) as subprocesses.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from conftest import Workspace, write_config

from ocop_workflow.redact import Redactor, redact_url
from ocop_workflow.store import Store, notification_t

USER = "ocop-iale"
PASSWORD = "Ia-Le/smtp+pw=42"
TOKEN = "tk-9f8e7d6c5b4a"
HOOK_PW = "hook-pw-31"
NOW = "2026-03-02T09:00:00+07:00"
T0 = datetime.fromisoformat("2026-03-02T08:00:00+07:00")


def forms(user: str, secret: str) -> list[str]:
    """Every disguise of ``secret`` a careless peer might send back."""
    b64 = base64.b64encode
    return [
        secret,
        quote(secret, safe=""),
        b64(secret.encode()).decode(),
        b64(f"\0{user}\0{secret}".encode()).decode(),  # AUTH PLAIN
        b64(f"{user}:{secret}".encode()).decode(),  # HTTP Basic
    ]


class EchoingSMTP(SMTP):
    """Refuses every AUTH, quoting what the client sent (the password's last step included)."""

    async def smtp_AUTH(self, arg: str) -> None:
        if arg.upper().startswith("LOGIN"):
            await self.push("334 VXNlcm5hbWU6" if len(arg.split()) == 1 else "334 UGFzc3dvcmQ6")
            line = (await self._reader.readline()).decode().strip()
            await self.push(f"535 5.7.8 Authentication failed: AUTH {arg} / {line}")
            return
        await self.push(f"535 5.7.8 Authentication failed: AUTH {arg}")


class EchoingController(Controller):
    def factory(self) -> SMTP:
        return EchoingSMTP(self.handler, **self.SMTP_kwargs)


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture(params=["PLAIN", "LOGIN"])
def echoing_smtp(request: pytest.FixtureRequest) -> Iterator[int]:
    import socket

    other = "LOGIN" if request.param == "PLAIN" else "PLAIN"
    with socket.socket() as s:  # aiosmtpd's Controller needs a port number up front
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = EchoingController(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        auth_exclude_mechanism=[other],
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def echoing_webhook() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """Answers 401 with a reason phrase quoting the path (token) and the Authorization header."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "auth": self.headers.get("Authorization", "")})
            self.send_response(401, f"refused {self.path} {self.headers.get('Authorization')}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def workspace_with(tmp_path: Path, db_url: str, channels: str, notifications: str) -> Workspace:
    write_config(tmp_path, channels=channels, notifications=notifications)
    ws = Workspace(tmp_path, db_url)
    ws.run("init", check=True)
    store = Store(db_url)  # its column types turn aware times into what the database keeps
    with store.write() as conn:
        conn.execute(
            notification_t.insert(),
            [
                {
                    "key": "k1",
                    "dossier_id": "OCOP-2026-0001",
                    "kind": "reminder",
                    "channel": channels.strip('[]"'),
                    "recipient": "lan@example.vn",
                    "subject": "Nhắc hạn",
                    "body": "Hồ sơ cần bổ sung",
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": T0,
                    "created_at": T0,
                }
            ],
        )
    store.dispose()
    return ws


def assert_nowhere(texts: list[str], secrets: list[str]) -> None:
    """Not in any text, nor in it once percent-decoded (URLs encode a password variously)."""
    from urllib.parse import unquote

    for text in texts:
        for shown in (text, unquote(text)):
            for secret in secrets:
                assert secret not in shown, (secret, text)


def test_an_smtp_server_echoing_the_auth_line_never_gets_the_password_stored_or_logged(
    tmp_path: Path, sqlite_url: str, echoing_smtp: int
) -> None:
    ws = workspace_with(
        tmp_path,
        sqlite_url,
        '["email"]',
        f'[notifications.email]\nhost = "127.0.0.1"\nport = {echoing_smtp}\n'
        f'username = "{USER}"\npassword_env = "OCOP_SMTP_PASSWORD"\ntimeout_seconds = 5\n',
    )
    swept = ws.run("sweep", "--json", now=NOW, OCOP_SMTP_PASSWORD=PASSWORD)
    assert swept.code == 0, swept
    listed = ws.run("notifications", "list", "--json", now=NOW)
    assert listed.code == 0, listed
    rows = listed.json()
    assert rows and "535" in rows[0]["last_error"] and "***" in rows[0]["last_error"], rows
    assert "535" in swept.stderr  # the failure is logged …
    assert_nowhere([swept.stdout, swept.stderr, listed.stdout], forms(USER, PASSWORD))


def test_webhook_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(
    tmp_path: Path, sqlite_url: str, echoing_webhook: tuple[int, list[dict[str, str]]]
) -> None:
    port, received = echoing_webhook
    url = f"http://admin:{HOOK_PW}@127.0.0.1:{port}/hook?token={TOKEN}"
    ws = workspace_with(
        tmp_path, sqlite_url, '["webhook"]', f'[notifications.webhook]\nurl = "{url}"\n'
    )
    swept = ws.run("sweep", "--json", now=NOW)
    assert swept.code == 0, swept
    listed = ws.run("notifications", "list", "--json", now=NOW)
    error = listed.json()[0]["last_error"]
    assert "401" in error and "***" in error, error
    expected = base64.b64encode(f"admin:{HOOK_PW}".encode()).decode()
    assert received[0]["auth"] == f"Basic {expected}"
    assert received[0]["path"] == f"/hook?token={TOKEN}"
    secrets = [*forms("admin", HOOK_PW), TOKEN]
    assert_nowhere([swept.stdout, swept.stderr, listed.stdout], secrets)


def test_an_unreachable_webhook_is_named_without_its_credentials(
    tmp_path: Path, sqlite_url: str
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://admin:{HOOK_PW}@127.0.0.1:{port}/hook?token={TOKEN}"
    ws = workspace_with(
        tmp_path,
        sqlite_url,
        '["webhook"]',
        f'[notifications.webhook]\nurl = "{url}"\ntimeout_seconds = 2\n',
    )
    swept = ws.run("sweep", "--json", now=NOW)
    listed = ws.run("notifications", "list", "--json", now=NOW)
    error = listed.json()[0]["last_error"]
    assert error, listed
    assert_nowhere([swept.stdout, swept.stderr, listed.stdout], [*forms("admin", HOOK_PW), TOKEN])


def test_the_redactor_knows_every_encoding_of_a_secret() -> None:
    redact = Redactor([PASSWORD])
    for form in forms(USER, PASSWORD):
        out = redact(f"535 refused: {form} (try again)")
        assert PASSWORD not in out and form not in out and "***" in out, out
        assert out.startswith("535 refused: ") and out.endswith("(try again)")
    # A blob the server cut short still has the AUTH PLAIN shape.
    blob = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()[:16]
    assert blob not in redact(f"535 {blob}")
    assert redact("550 mailbox unavailable") == "550 mailbox unavailable"


def test_a_url_keeps_its_host_and_path_but_not_its_credentials() -> None:
    assert (
        redact_url(f"https://admin:{HOOK_PW}@hooks.example.vn:8443/ocop?token={TOKEN}&x=1#frag")
        == "https://***@hooks.example.vn:8443/ocop?token=***&x=***#***"
    )
    assert redact_url("http://127.0.0.1:8080/ocop") == "http://127.0.0.1:8080/ocop"
    text = Redactor()(f"webhook http://u:{HOOK_PW}@h/p?t={TOKEN} unreachable")
    assert HOOK_PW not in text and TOKEN not in text and "http://***@h/p?t=***" in text


def test_a_database_password_in_the_url_query_is_never_shown(tmp_path: Path) -> None:
    """libpq also takes ``?password=``; an unreachable database is named without it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://ocop@127.0.0.1:{port}/ocop?password={PASSWORD}&connect_timeout=2"
    write_config(tmp_path)
    ws = Workspace(tmp_path, url)
    result = ws.run("audit", "verify")
    assert result.code == 1 and "unreachable" in result.stderr, result
    assert f"127.0.0.1:{port}" in result.stderr
    assert_nowhere([result.stdout, result.stderr], forms("ocop", PASSWORD))
