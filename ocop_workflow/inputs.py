"""Checks at the edge: every text, number and date a user gives is checked before it is stored.

A value that is accepted must be storable on every database (PostgreSQL refuses NUL bytes),
printable in every output (XLSX refuses control characters, JSON has no NaN) and usable in every
later computation (a date in year 9999 overflows the deadline arithmetic). So the class of bad
values is refused once, here, with a usage error (exit 2) naming the value — never stored to fail
later for everyone who reads it.
"""

from __future__ import annotations

import math
import re
from datetime import date

from .errors import UsageError

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
    value: str, what: str, *, multiline: bool = False, max_len: int | None = None
) -> str:
    """``value`` unchanged if it is clean text; a usage error naming ``what`` otherwise.

    Refused: control characters (C0, C1, DEL; newline and tab too unless ``multiline``), lone
    surrogates (undecodable bytes), bidirectional overrides, and more than ``max_len`` characters.
    """
    limit = max_len if max_len is not None else (TEXT_MAX if multiline else NAME_MAX)
    if len(value) > limit:
        raise UsageError(f"{what} is {len(value)} characters long; at most {limit} are allowed")
    bad = (_BAD_TEXT if multiline else _BAD_NAME).search(value)
    if bad is not None:
        char = bad.group()
        if _BIDI.fullmatch(char):
            raise UsageError(f"{what} contains a bidirectional control character: not allowed")
        raise UsageError(f"{what} contains the control character {char!r}: not allowed")
    return value


def check_finite(value: float, what: str) -> float:
    """A number that JSON, the database and arithmetic can carry: not NaN, not infinite."""
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, not {value!r}")
    return value


def check_date(value: date, what: str) -> date:
    """A date between 1900-01-01 and 2199-12-31."""
    if not EARLIEST <= value <= LATEST:
        raise UsageError(
            f"{what} {value.isoformat()} is out of range "
            f"({EARLIEST.isoformat()} to {LATEST.isoformat()})"
        )
    return value
