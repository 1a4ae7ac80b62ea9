"""How a notification leaves: the :class:`Channel` interface, its registry, the three channels.

A channel is what the outbox writer (the sweep's fan-out per channel), config checking, delivery
and redaction need to know about one way of reaching people: its name, the address a user's copy
goes to, the secret variables it needs, the keys of its ``[notifications.<name>]`` table, and
``send``. They all read the registry :data:`CHANNELS`, so adding a channel is one class plus
:func:`register`: config checking accepts and checks its table with nothing else edited. The
outbox machinery (claim, retry, dead letters) is :mod:`~ocop_workflow.notify`'s.

Nothing here reads the environment or the wall clock: a row arrives with ``sent_at`` set to the
caller's now and the secrets resolved at the edge (:func:`resolve_secrets`, called by
:func:`~ocop_workflow.config.load_config`). The module imports only the standard library at load
time (config checking uses the registry; ``ocop workflow list`` must not pay for SMTP or HTTP).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .redact import url_secrets

if TYPE_CHECKING:
    from .config import NotificationsConfig, User

_MSGID_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


class DeliveryError(Exception):
    """A channel failed to deliver one message (the attempt counts; the row is retried or dead)."""


def send(row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]) -> None:
    """Deliver one message through ``row["channel"]``; raise :class:`DeliveryError` on failure.

    ``row`` is the notification as it will be once sent: :func:`.notify.deliver_pending` passes
    ``attempts`` = this attempt's number and ``sent_at`` = now (the caller's clock: the e-mail's
    ``Date`` header and the documents' ``sent_at`` are that instant). ``env`` holds the secret
    variables by name. A channel no longer listed in ``[notifications] channels`` is a failure,
    so the row ends dead and visible, not dropped.
    """
    name = row["channel"]
    channel = CHANNELS.get(name)
    if channel is None:
        raise DeliveryError(f"unknown channel '{name}' (known: {', '.join(CHANNELS)})")
    if name not in config.channels:
        raise DeliveryError(f"channel {name} is not enabled in [notifications] channels")
    channel.send(row, config, env)


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

#: A config value check (config_checks.py): the key's full name and its value in, the
#: value out, or ConfigError naming the key.
Check = Callable[[str, Any], Any]


class Channel(Protocol):
    """One way a notification reaches people: what config checking, the outbox writer, delivery
    and redaction need to know about it, and nothing else (its settings are what its
    ``[notifications.<name>]`` table became, ``NotificationsConfig.settings[name]``)."""

    #: The name in ``[notifications] channels`` and in each outbox row's ``channel`` column.
    name: str
    #: Keys its table must give when the channel is enabled in ``[notifications] channels``.
    required_keys: tuple[str, ...]

    def config_keys(self) -> Mapping[str, Check]:
        """The keys of its ``[notifications.<name>]`` table, each with its check; any other key
        is refused (exit 1) naming these."""
        ...

    def settings(self, values: Mapping[str, Any], resolve: Callable[[str], Path]) -> Any:
        """Its settings from the checked table (``resolve``: a path relative to the config file's
        folder). Called whether or not the channel is enabled."""
        ...

    def address(self, user: User) -> str | None:
        """Where this channel sends ``user``'s copy (the row's recipient); None: nowhere."""
        ...

    def secret_names(self, config: NotificationsConfig) -> tuple[str, ...]:
        """The environment variables holding this channel's secrets. They are read once, at
        the edge (config loading), and redacted from every delivery error."""
        ...

    def config_secrets(self, config: NotificationsConfig) -> list[str]:
        """Secrets written in the config itself (a URL's password): redacted too."""
        ...

    def send(
        self, row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
    ) -> None:
        """Deliver ``row`` (``sent_at`` set to now); raise :class:`DeliveryError` on failure.
        ``env`` maps :meth:`secret_names` to their values (a name may be missing)."""
        ...


#: The channels by name, in the order they are listed to users ("known: file, email, webhook").
CHANNELS: dict[str, Channel] = {}


def register(channel: Channel) -> Channel:
    """Make ``channel`` known to config checking, the outbox writer, delivery and redaction."""
    if channel.name in CHANNELS:
        raise ValueError(f"notification channel '{channel.name}' is registered twice")
    CHANNELS[channel.name] = channel
    return channel


def channel(name: str) -> Channel:
    """The registered channel ``name`` (KeyError if unknown: config checking refused it)."""
    return CHANNELS[name]


def secret_names(config: NotificationsConfig) -> list[str]:
    """Every channel's secret variables (enabled or not: a secret is never shown either way)."""
    return [name for ch in CHANNELS.values() for name in ch.secret_names(config)]


def resolve_secrets(config: NotificationsConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The secret variables every channel names, read from ``env`` (the edge's environment)."""
    return {name: env[name] for name in secret_names(config) if name in env}


@dataclass(frozen=True)
class FileChannel:
    """``[notifications.file]``."""

    path: Path


@dataclass(frozen=True)
class EmailChannel:
    """``[notifications.email]``."""

    host: str = "localhost"
    port: int = 25
    sender: str = "ocop@example.vn"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class WebhookChannel:
    """``[notifications.webhook]``."""

    url: str = "http://127.0.0.1:8080/ocop"
    secret_env: str | None = None
    timeout_seconds: float = 10.0


def file_settings(config: NotificationsConfig) -> FileChannel | None:
    found = config.settings.get("file")
    return found if isinstance(found, FileChannel) else None


def email_settings(config: NotificationsConfig) -> EmailChannel:
    found = config.settings.get("email")
    return found if isinstance(found, EmailChannel) else EmailChannel()


def webhook_settings(config: NotificationsConfig) -> WebhookChannel:
    found = config.settings.get("webhook")
    return found if isinstance(found, WebhookChannel) else WebhookChannel()


class AppendFileChannel:
    """``file``: one JSON line per message appended to ``[notifications.file] path``."""

    name = "file"
    required_keys: tuple[str, ...] = ()

    def config_keys(self) -> Mapping[str, Check]:
        from .config_checks import text

        return {"path": text}

    def settings(self, values: Mapping[str, Any], resolve: Callable[[str], Path]) -> FileChannel:
        return FileChannel(resolve(values.get("path", "outbox.jsonl")))

    def address(self, user: User) -> str | None:
        return user.key

    def secret_names(self, config: NotificationsConfig) -> tuple[str, ...]:
        return ()

    def config_secrets(self, config: NotificationsConfig) -> list[str]:
        return []

    def send(
        self, row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
    ) -> None:
        _send_file(row, config)


class SmtpEmailChannel:
    """``email``: one SMTP session per message to the user's e-mail address."""

    name = "email"
    required_keys: tuple[str, ...] = ()

    def config_keys(self) -> Mapping[str, Check]:
        from .config_checks import flag, integer, number, positive, text

        return {
            "host": text,
            "port": positive(integer),
            "sender": text,
            "starttls": flag,
            "username": text,
            "password_env": text,
            "timeout_seconds": positive(number),
        }

    def settings(self, values: Mapping[str, Any], resolve: Callable[[str], Path]) -> EmailChannel:
        return EmailChannel(**values)

    def address(self, user: User) -> str | None:
        return user.email

    def secret_names(self, config: NotificationsConfig) -> tuple[str, ...]:
        password_env = email_settings(config).password_env
        return (password_env,) if password_env else ()

    def config_secrets(self, config: NotificationsConfig) -> list[str]:
        return []

    def send(
        self, row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
    ) -> None:
        _send_email(row, config, env)


class HttpWebhookChannel:
    """``webhook``: the JSON document POSTed (signed when a secret is set) to one URL."""

    name = "webhook"
    required_keys: tuple[str, ...] = ("url",)

    def config_keys(self) -> Mapping[str, Check]:
        from .config_checks import number, positive, text

        return {
            "url": text,
            "secret_env": text,
            "timeout_seconds": positive(number),
        }

    def settings(self, values: Mapping[str, Any], resolve: Callable[[str], Path]) -> WebhookChannel:
        return WebhookChannel(**values)

    def address(self, user: User) -> str | None:
        return user.key

    def secret_names(self, config: NotificationsConfig) -> tuple[str, ...]:
        secret_env = webhook_settings(config).secret_env
        return (secret_env,) if secret_env else ()

    def config_secrets(self, config: NotificationsConfig) -> list[str]:
        return url_secrets(webhook_settings(config).url)

    def send(
        self, row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
    ) -> None:
        _send_webhook(row, config, env)


register(AppendFileChannel())
register(SmtpEmailChannel())
register(HttpWebhookChannel())


def _send_file(row: Mapping[str, Any], config: NotificationsConfig) -> None:
    """Append one JSON line and fsync: once this returns, the line survives a power cut."""
    settings = file_settings(config)
    if settings is None:
        raise DeliveryError("the file channel has no [notifications.file] path")
    path = settings.path
    line = json.dumps(message_document(row), ensure_ascii=False) + "\n"
    data = line.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND and one write per line: concurrent workers never interleave inside a line.
        # 0640 when created, as stored documents: the bodies speak of dossiers that the policy
        # shows only to some, and the umask's usual 0644 would show them to every login.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
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
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import format_datetime

    cfg = email_settings(config)
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
        message["Date"] = format_datetime(row["sent_at"])  # the caller's clock, never the wall
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


def _send_webhook(
    row: Mapping[str, Any], config: NotificationsConfig, env: Mapping[str, str]
) -> None:
    """POST the JSON document; any 2xx is delivered, anything else (or no answer) a failure."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """A redirected POST would be replayed as a GET without the body: a failure."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    cfg = webhook_settings(config)
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
    opener = urllib.request.build_opener(NoRedirect)
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


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
