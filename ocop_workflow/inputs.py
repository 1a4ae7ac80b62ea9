"""Checks at the edge: every text, number and date a user gives is checked before it is stored.

A value that is accepted must be storable on every database (PostgreSQL refuses NUL bytes),
printable in every output (XLSX refuses control characters, JSON has no NaN) and usable in every
later computation (a date in year 9999 overflows the deadline arithmetic). So the class of bad
values is refused once, here, with a usage error (exit 2) naming the value — never stored to fail
later for everyone who reads it.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

from .errors import NotFound, OcopError, UsageError

#: Names (product, producer, commune, group, file names): one line, no control characters.
NAME_MAX = 200
#: Free text (reasons, notes): may span lines, but no other control character.
TEXT_MAX = 2000
#: Dates a dossier may carry: wide enough for any real record, narrow enough for arithmetic.
EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)
# Bidirectional overrides and isolates can make a name read differently from what it is.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
# C0 and C1 controls, DEL, lone surrogates (undecodable bytes) and the bidi controls; free text
# (multiline) may hold newlines and tabs. One regex: an import checks every cell of 10,000 rows.
_BAD_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_BAD_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def check_text(
    value: str,
    what: str,
    *,
    multiline: bool = False,
    max_len: int | None = None,
    field: str | None = None,
) -> str:
    """``value`` unchanged if it is clean text; a usage error naming ``what`` otherwise.

    Refused: control characters (C0, C1, DEL; newline and tab too unless ``multiline``), lone
    surrogates (undecodable bytes), bidirectional overrides, and more than ``max_len`` characters.
    ``field``: the input it came from, as the facade names it (the error's ``fields``).
    """
    fields = (field,) if field else ()
    limit = max_len if max_len is not None else (TEXT_MAX if multiline else NAME_MAX)
    if len(value) > limit:
        raise UsageError(
            f"{what} is {len(value)} characters long; at most {limit} are allowed", fields=fields
        )
    bad = (_BAD_TEXT if multiline else _BAD_NAME).search(value)
    if bad is not None:
        char = bad.group()
        if _BIDI.fullmatch(char):
            raise UsageError(
                f"{what} contains a bidirectional control character: not allowed", fields=fields
            )
        raise UsageError(
            f"{what} contains the control character {char!r}: not allowed", fields=fields
        )
    return value


def nfc(text: str) -> str:
    """``text`` in Unicode's composed form (NFC).

    Vietnamese arrives in two spellings that look the same: "à" as one character, or "a" plus
    a combining grave (NFD: macOS input, text copied from PDFs, some phones). Names are compared
    (a producer's organisation with a dossier's producer, communes with scopes), so every name
    that is stored or configured is composed first: one name, one string.
    """
    return unicodedata.normalize("NFC", text)


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) and bidirectional control shown
    escaped (``\\x1b``): what a remote server or a user wrote is displayed, never obeyed by the
    terminal (ESC sequences clear screens and retitle windows; 0x9b is ESC [ in one byte). A
    lone surrogate (legal in JSON, not in UTF-8) is shown escaped too: it cannot be encoded."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def check_finite(value: float, what: str, *, field: str | None = None) -> float:
    """A number that JSON, the database and arithmetic can carry: not NaN, not infinite."""
    if not math.isfinite(value):
        raise UsageError(
            f"{what} must be a finite number, not {value!r}", fields=(field,) if field else ()
        )
    return value


def check_date(value: date, what: str, *, field: str | None = None) -> date:
    """A date between 1900-01-01 and 2199-12-31."""
    if not EARLIEST <= value <= LATEST:
        raise UsageError(
            f"{what} {value.isoformat()} is out of range "
            f"({EARLIEST.isoformat()} to {LATEST.isoformat()})",
            fields=(field,) if field else (),
        )
    return value


def check_year(value: int, what: str) -> int:
    """A year within the dates a dossier may carry (a plan year, a report's year): beyond
    them the date arithmetic overflows."""
    if not EARLIEST.year <= value <= LATEST.year:
        raise UsageError(f"{what} {value} is out of range ({EARLIEST.year} to {LATEST.year})")
    return value


def check_file(path: Path) -> None:
    """A file the user names to be read whole (an import sheet, a document to attach): "not
    found" (exit 3) when nothing is there, a usage error (exit 2) when it is not a regular file
    (a folder, a FIFO, a device) — never "not found" for something that exists."""
    if path.is_file():
        return
    if not path.exists():
        raise NotFound(f"file {path} not found")
    raise UsageError(f"file {path} is not a regular file")


def read_small_file(
    path: Path,
    what: str,
    max_bytes: int,
    error: type[OcopError] = UsageError,
    missing: type[OcopError] = NotFound,
    hint: str = "",
) -> bytes:
    """The bytes of ``path``: a regular file of at most ``max_bytes``, read through one
    descriptor (the checks and the read see the same file, a symlink's target included).

    A FIFO would block the command forever, ``/dev/zero`` or a huge file would eat the memory:
    every small file a user names (config, migration plan, checkpoint, key) is read here, and
    anything else is ``error`` naming ``what`` — one line, nothing read. ``missing`` (with
    ``hint`` appended) for a path that does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise missing(f"{what} {path} not found{hint}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{what} {path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, min(1 << 16, max_bytes + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise error(f"{what} {path} is larger than {max_bytes:,} bytes: not one")
    return b"".join(chunks)


def toml_document(raw: bytes, where: str, error: type[OcopError] = UsageError) -> dict[str, Any]:
    """Parse TOML ``raw`` read from ``where``; ``error`` for anything that is not a document.

    Besides bad UTF-8 and bad TOML, a value nested thousands deep (``a = [[[[…``, a few
    kilobytes) exhausts the parser's recursion: refused like any other malformed file.
    """
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{where}: invalid TOML: values nested too deep") from None


def json_document(raw: bytes, where: str, error: type[OcopError] = UsageError) -> Any:
    """Parse JSON ``raw`` read from ``where``; ``error`` for anything that is not a document
    (bad UTF-8, bad JSON, numbers too long to convert, arrays nested too deep)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise error(f"{where}: not valid JSON") from None
    except RecursionError:
        raise error(f"{where}: not valid JSON: values nested too deep") from None


#: What every token ``auth.create_token`` makes begins with, so a leaked one is recognisable in
#: logs and secret scanners.
TOKEN_PREFIX = "ocop_"
_TOKEN_FORM = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{1,195}")


def may_be_token(token: str) -> bool:
    """Whether ``token`` has a token's form (``ocop_`` and URL-safe base64, as
    ``auth.create_token`` makes them). The server reads nothing for anything else; the CLI
    refuses to send it (a control character in it would be echoed whole by the HTTP library's
    error)."""
    return _TOKEN_FORM.fullmatch(token) is not None
