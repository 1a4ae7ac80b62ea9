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
# A base64 word, continued over the next lines when a server wraps its reply ("535-…", "535 …").
_BASE64_WORD = re.compile(
    r"[A-Za-z0-9+/]{6,}={0,2}(?:\r?\n(?:\d{3}[ -])?[ \t]*[A-Za-z0-9+/]{2,}={0,2})*"
)
_LINE_BREAK = re.compile(r"\r?\n(?:\d{3}[ -])?[ \t]*")
# Between two characters of an echoed secret: nothing, or a line folded by the echoing server.
_FOLD = r"(?:\r?\n[ \t]*)?"


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
        self._spellings = [_spelling(secret) for secret in sorted(plain, key=len, reverse=True)]

    def __call__(self, text: str) -> str:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
        text = _BASE64_WORD.sub(self._base64_word, text)
        for variant in self._variants:
            text = text.replace(variant, MASK)
        for spelling in self._spellings:
            text = spelling.sub(MASK, text)
        return text

    def _base64_word(self, match: re.Match[str]) -> str:
        words = match.group(0)
        if self._holds_secret(_LINE_BREAK.sub("", words)):
            return MASK
        # not one blob across the lines: each line's word on its own
        return re.sub(
            r"[A-Za-z0-9+/]{6,}={0,2}",
            lambda w: MASK if self._holds_secret(w.group(0)) else w.group(0),
            words,
        )

    def _holds_secret(self, word: str) -> bool:
        body = word.replace("=", "")
        try:
            decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            return False
        return b"\0" in decoded or any(secret in decoded for secret in self._secrets)


def _spelling(secret: str) -> re.Pattern[str]:
    """Every spelling of ``secret`` an echo may use, character by character: as is,
    percent-encoded (either case of hex, ``+`` for a space), JSON-escaped (``\\u0040``, ``\\/``),
    with a folded line anywhere in it."""

    def hex_digits(value: int, width: int) -> str:
        return "".join(
            f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}"
        )

    parts = []
    for char in secret:
        options = [re.escape(char)]
        options.append("".join("%" + hex_digits(byte, 2) for byte in char.encode("utf-8")))
        if ord(char) <= 0xFFFF:
            options.append(r"\\u" + hex_digits(ord(char), 4))
        if char == "/":
            options.append(r"\\/")
        if char == " ":
            options.append(r"\+")
        parts.append("(?:" + "|".join(options) + ")")
    return re.compile(_FOLD.join(parts))
