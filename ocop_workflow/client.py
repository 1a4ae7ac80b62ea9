"""The command line acting through ``ocop serve``: an officer's machine needs no database at all.

With ``OCOP_SERVER`` (or ``[client] url``) set, ``ocop dossier …``, ``score``, ``import``,
``timers list``, ``notifications list``, ``report progress|html``, ``workflow list|show|diagram``
and ``audit verify`` call the JSON API with a bearer token instead of opening the database.
The token comes from ``OCOP_TOKEN`` or from a token file (``OCOP_TOKEN_FILE``, ``[client]
token_file``, else ``~/.config/ocop/token``) that only its owner may read. ``--as`` and
``OCOP_USER`` are refused: through a server everyone acts as the owner of their token, which is
what makes "nobody can act as somebody else" true.

The server's error bodies come back as the same :class:`~ocop_workflow.errors.OcopError` classes,
so the exit codes and ``error: …`` lines are the ones a local command gives.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import (
    ConfigError,
    EnvironmentProblem,
    OcopError,
    TransitionRefused,
    Unauthenticated,
    WorkflowFileError,
)

SERVER_ENV = "OCOP_SERVER"
TOKEN_ENV = "OCOP_TOKEN"
TOKEN_FILE_ENV = "OCOP_TOKEN_FILE"
DEFAULT_TOKEN_FILE = Path("~/.config/ocop/token")


def _errors() -> dict[str, type[OcopError]]:
    """Each error ``code`` of the one hierarchy → its class (the most general one that has
    it): derived from errors.py, so a new error class needs no second list here."""
    from . import auth  # noqa: F401  (defines Throttled, the one error class outside errors.py)

    found: dict[str, type[OcopError]] = {}
    pending: list[type[OcopError]] = [OcopError]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


class Client:
    """A JSON API session as one person (their token)."""

    def __init__(self, url: str, token: str, *, now: str | None = None) -> None:
        from urllib.parse import urlsplit

        import httpx

        headers = {"Authorization": f"Bearer {token}"}
        if now:
            headers["X-Ocop-Now"] = now
        self.url = url.rstrip("/")
        # Plain http is allowed only to this machine (``check_server_url``): a proxy from the
        # environment (http_proxy, ALL_PROXY) would receive the token in clear on the way.
        plain = urlsplit(self.url).scheme == "http"  # (urlsplit lowers it: HTTP:// too)
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=120.0, trust_env=not plain
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        ok: tuple[int, ...] = (),
        text: bool = False,
    ) -> Any:
        """One API call; an error body becomes the error class (and exit code) it names.

        ``ok``: statuses whose body is an answer, not an error, when it holds no ``error`` (a
        failed audit verification is 409 with its report). ``text``: the answer is a page or a
        diagram, returned as text (an error is still the JSON error body)."""
        import httpx

        query = {k: v for k, v in (params or {}).items() if v is not None and v is not False}
        try:
            response = self.http.request(
                method, "/api/v1" + path, params=query, json=json, data=data, files=files
            )
        except httpx.HTTPError as exc:
            raise EnvironmentProblem(f"server {self.url} unreachable: {exc}") from None
        if text and response.is_success:
            return response.text
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and not isinstance(body, dict | list):
            raise EnvironmentProblem(  # a captive portal, a proxy's page, another program
                f"server {self.url} answered {response.status_code} with something that is not "
                "the API's JSON: is OCOP_SERVER (or [client] url) the ocop server?"
            )
        if response.is_success or (
            response.status_code in ok and isinstance(body, dict) and "error" not in body
        ):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            raise EnvironmentProblem(
                f"server {self.url} answered {response.status_code} {response.reason_phrase}"
            )
        cls = _errors().get(str(error.get("code")), OcopError)
        message = str(error.get("message"))
        reasons = _texts(error.get("reasons"))
        fields = tuple(_texts(error.get("fields")))
        failure = (
            cls(message, reasons, fields=fields)
            if cls in (TransitionRefused, WorkflowFileError)
            else cls(message, fields=fields)
        )
        if reasons and not hasattr(failure, "reasons"):
            failure.reasons = reasons  # type: ignore[attr-defined]
        report = body.get("report")
        if isinstance(report, dict):  # a refused import's row-by-row report
            failure.report = report | {"problems": _texts(report.get("problems"))}  # type: ignore[attr-defined]
        raise failure

    def close(self) -> None:
        self.http.close()


def _texts(value: Any) -> list[str]:
    """The texts of a list in an error answer; anything else (a server that is not ours) is
    none, never a crash where the error is being told."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def server_url(env: Mapping[str, str], config_url: str | None) -> str | None:
    """The server to act through (``OCOP_SERVER`` wins over ``[client] url``), checked."""
    url = env.get(SERVER_ENV) or config_url or None
    return None if url is None else check_server_url(url)


#: Host names a plain-HTTP URL may use besides loopback addresses (``127.0.0.0/8``, ``::1``):
#: the token then never leaves the machine.
_LOOPBACK = {"localhost"}


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback address — an address, not
    a name that merely starts with ``127.`` (``127.example.org`` resolves anywhere)."""
    import ipaddress

    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_url(url: str) -> str:
    """``url`` if a bearer token may be sent to it, else :class:`ConfigError` (exit 1).

    Refused: anything but ``http``/``https`` with a host (and a numeric port); credentials in
    the URL (they would be printed in every error about the server; the token is the
    credential); and plain ``http`` to another machine, which would send the token across the
    network in clear. The URL is never quoted back with its userinfo.
    """
    from urllib.parse import urlsplit

    from .redact import redact_url

    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"server URL {shown} is not a URL") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise ConfigError(f"server URL {shown}: give http(s)://HOST[:PORT]")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"server URL {shown} holds credentials: remove them (the token is the credential)"
        )
    if parts.scheme == "http" and not _loopback(host):
        raise ConfigError(
            f"server URL {shown}: use https:// (over plain http the token would cross the "
            "network in clear)"
        )
    return url


def read_token(env: Mapping[str, str], token_file: Path | None) -> str:
    """The bearer token: ``OCOP_TOKEN``, or the first line of a file only its owner can read;
    refused (never repeated) unless it has a token's form."""
    token = env.get(TOKEN_ENV)
    if token:
        return _token_form(token.strip(), TOKEN_ENV)
    path = Path(env.get(TOKEN_FILE_ENV) or token_file or DEFAULT_TOKEN_FILE).expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise Unauthenticated(
            f"no token: set {TOKEN_ENV} or put one in {path} (ocop token create on the server)"
        ) from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would wait forever, a device never end
        raise ConfigError(f"token file {path} is not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"token file {path} is readable by others: chmod 600 {path} (and make a new token)"
        )
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise ConfigError(f"token file {path} belongs to another user")
    from .inputs import read_small_file

    raw = read_small_file(path, "token file", 4096, ConfigError, ConfigError)
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"token file {path} is not UTF-8 text") from None
    if not text:
        raise Unauthenticated(f"token file {path} is empty")
    return _token_form(text.splitlines()[0].strip(), f"token file {path}")


def _token_form(token: str, where: str) -> str:
    from .inputs import may_be_token

    if not may_be_token(token):
        raise Unauthenticated(
            f"{where} does not hold a token (ocop_ and letters, digits, - or _, as `ocop token "
            "create` prints it): nothing was sent"
        )
    return token
