"""One redaction for every error text that is stored, logged or printed.

Secrets leak in disguise: an SMTP server that echoes the client's ``AUTH PLAIN`` line returns
base64("\\0user\\0password"), which contains neither the password nor its own base64; a webhook
URL carries ``user:password@`` or ``?token=…``; a percent-encoded password is another string
again. :class:`Redactor` knows the configured secrets and replaces, in this order:

* every URL's userinfo and every query value (``http://***@host/hook?token=***``);
* every base64-looking word that decodes to text holding a secret, or holding a NUL byte
  (the shape of an AUTH PLAIN blob, even when the server cut it short);
* each secret itself, plain and percent-encoded.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

MASK = "***"

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_BASE64_WORD = re.compile(r"[A-Za-z0-9+/]{6,}={0,2}")


def redact_url(url: str) -> str:
    """``url`` without its userinfo, query values and fragment; host, port and path kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.query and not query:
        query = MASK
    return urlunsplit((parts.scheme, netloc, parts.path, query, MASK if parts.fragment else ""))


def url_secrets(url: str) -> list[str]:
    """The secret parts of a configured URL: its userinfo password and its query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    found += [value for _, value in parse_qsl(parts.query) if value]
    return found


class Redactor:
    """Replaces the given secrets, in any of their encodings, and URL credentials, by ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        plain = {s for s in secrets if s}
        variants = set(plain)
        for secret in plain:
            variants.add(quote(secret, safe=""))
            variants.add(quote(secret, safe="+"))  # how SQLAlchemy renders a URL's query
            variants.add(quote_plus(secret, safe=""))
            variants.add(base64.b64encode(secret.encode("utf-8")).decode("ascii"))
        self._secrets = tuple(s.encode("utf-8") for s in plain)
        self._variants = sorted(variants, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
        text = _BASE64_WORD.sub(self._base64_word, text)
        for variant in self._variants:
            text = text.replace(variant, MASK)
        return text

    def _base64_word(self, match: re.Match[str]) -> str:
        word = match.group(0)
        body = word.rstrip("=")
        try:
            decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            return word
        if b"\0" in decoded or any(secret in decoded for secret in self._secrets):
            return MASK
        return word
