"""Who is calling the server: passwords (Argon2), bearer tokens (only their SHA-256 kept), and
throttled password logins.

A person is a ``[users]`` key, as on the command line. ``ocop user set-password`` stores an Argon2
hash; ``ocop token create`` prints a random token once and stores its SHA-256 (a stolen database
copy then holds no usable token — unlike a password, a 256-bit random token needs no slow hash).
A password login yields a session token of the same kind that expires after ``[server]
session_hours``. Failed logins are counted in the database per user and per address, so several
server processes behind a load balancer throttle together.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa

from .config import Config, User
from .errors import NotFound, OcopError, Unauthenticated, UsageError
from .inputs import TOKEN_PREFIX, may_be_token
from .store import Store, credential_t, login_failure_t, token_t

#: The shortest password ``set_password`` takes.
MIN_PASSWORD = 10
#: The longest a token may be made to last (ten years): beyond, the date arithmetic overflows.
MAX_TOKEN_DAYS = 3650
MAX_PASSWORD = 1024


class Throttled(OcopError):
    """Too many failed logins for this user or from this address; try again later."""

    exit_code = 6
    code = "throttled"


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``ocop token list`` shows it (never the token itself)."""

    id: int
    user: str
    kind: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def document(self, now: datetime, tz: tzinfo) -> dict[str, Any]:
        """``token list --json``: times in the business time zone ``tz``, as every JSON time."""
        from .render import when

        return {
            "id": self.id,
            "user": self.user,
            "kind": self.kind,
            "label": self.label,
            "created_at": when(self.created_at, tz),
            "expires_at": when(self.expires_at, tz),
            "revoked_at": when(self.revoked_at, tz),
            "status": self.status(now),
        }


@dataclass(frozen=True)
class NewToken:
    """A token just made: the secret (shown once) and what is stored about it."""

    token: str
    info: TokenInfo


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def set_password(store: Store, config: Config, user_key: str, password: str, now: datetime) -> None:
    """Store the Argon2 hash of ``password`` for ``user_key`` (replacing any earlier one), and
    revoke the sessions opened with a password before: a password is reset because someone
    else may know it, and their session must not outlive it. API tokens (``ocop token
    create``) do not come from the password and are left to ``ocop token revoke``."""
    config.user(user_key)  # unknown user: exit 3; 'system': exit 6
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"password too long: at most {MAX_PASSWORD} characters")
    hashed = _hasher().hash(password)
    with store.write() as conn:
        conn.execute(credential_t.delete().where(credential_t.c.user_key == user_key))
        conn.execute(
            credential_t.insert(),
            [{"user_key": user_key, "password_hash": hashed, "updated_at": now}],
        )
        conn.execute(
            token_t.update()
            .where(
                token_t.c.user_key == user_key,
                token_t.c.kind == "session",
                token_t.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )


def create_token(
    store: Store,
    config: Config,
    user_key: str,
    now: datetime,
    *,
    expires: timedelta | None = None,
    kind: str = "api",
    label: str | None = None,
) -> NewToken:
    """A new random token for ``user_key``; only its SHA-256 is stored."""
    config.user(user_key)
    if expires is not None and expires <= timedelta(0):
        raise UsageError("a token's lifetime must be positive")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = {
        "user_key": user_key,
        "token_sha256": token_digest(token),
        "kind": kind,
        "label": label,
        "created_at": now,
        "expires_at": now + expires if expires is not None else None,
        "revoked_at": None,
    }
    with store.write() as conn:
        token_id = conn.execute(token_t.insert().returning(token_t.c.id), [row]).scalar_one()
    return NewToken(token, _info({**row, "id": token_id}))


def _info(row: Any) -> TokenInfo:
    m = row if isinstance(row, dict) else row._mapping
    return TokenInfo(
        id=m["id"],
        user=m["user_key"],
        kind=m["kind"],
        label=m["label"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


def list_tokens(store: Store, user_key: str | None = None) -> list[TokenInfo]:
    query = sa.select(token_t).order_by(token_t.c.id)
    if user_key is not None:
        query = query.where(token_t.c.user_key == user_key)
    with store.read() as conn:
        return [_info(row) for row in conn.execute(query)]


def revoke_token(
    store: Store, token_id: int, now: datetime, *, user_key: str | None = None
) -> None:
    """Revoke one token (already revoked: nothing changes). ``user_key`` limits to one owner's."""
    if not 0 < token_id < 2**63:  # no such row; the database could not even compare it
        raise NotFound(f"token {token_id} not found")
    query = token_t.update().where(token_t.c.id == token_id, token_t.c.revoked_at.is_(None))
    with store.write() as conn:
        found = conn.execute(sa.select(token_t.c.user_key).where(token_t.c.id == token_id)).first()
        if found is None or (user_key is not None and found.user_key != user_key):
            raise NotFound(f"token {token_id} not found")
        conn.execute(query.values(revoked_at=now))


#: The one indexed query a bearer token costs (built once: building a statement per request
#: cost more than the database's answer).
_BY_DIGEST = sa.select(
    token_t.c.id, token_t.c.user_key, token_t.c.expires_at, token_t.c.revoked_at
).where(token_t.c.token_sha256 == sa.bindparam("digest"))


def authenticate(
    store: Store,
    config: Config,
    token: str,
    now: datetime,
    *,
    lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> tuple[User, int]:
    """The person a bearer token belongs to (and the token's id), or :class:`Unauthenticated`.

    The same message for an unknown, expired or revoked token: a caller learns nothing from
    trying tokens. A token whose user has left ``[users]`` logs nobody in. Nothing is cached:
    every request reads the token's row, so a revocation holds from the next request on, in
    every server process. ``lookup``: the row by SHA-256 through a cheaper reader (the
    server's plain sqlite3 connection of this thread); else one query through ``store``.
    """
    if not may_be_token(token):
        raise Unauthenticated("invalid or expired token")
    digest = token_digest(token)
    row: Any  # a mapping, or None
    if lookup is not None:
        row = lookup(digest)
    else:
        with store.read() as conn:
            found = conn.execute(_BY_DIGEST, {"digest": digest}).first()
        row = None if found is None else found._mapping
    if row is None or row["revoked_at"] is not None:
        raise Unauthenticated("invalid or expired token")
    if row["expires_at"] is not None and row["expires_at"] <= now:
        raise Unauthenticated("invalid or expired token")
    user = config.users.get(row["user_key"])
    if user is None:
        raise Unauthenticated("invalid or expired token")
    return user, int(row["id"])


#: Verified against when the user has no password, so an unknown name costs the same time.
_DUMMY_HASH: list[str] = []


#: Forget the failed logins that no longer count: those before the first one (in insertion
#: order) still inside the window. Run with each new failure, in its transaction, so the table
#: holds about one window's failures whatever floods it — with or without a worker running.
#: The scan walks the primary key from the oldest row and stops at the first row still
#: counting: it reads about as many rows as it deletes, and needs no index on ``at``. A row
#: left of that one is older than it only in id; one that is out of order (servers' clocks a
#: little apart) waits for a later purge — a row still counting is never deleted.
_PURGE = login_failure_t.delete().where(
    login_failure_t.c.id
    < (
        sa.select(login_failure_t.c.id)
        .where(login_failure_t.c.at > sa.bindparam("since"))
        .order_by(login_failure_t.c.id)
        .limit(1)
        .scalar_subquery()
    )
)


def throttled_address(address: str) -> str:
    """The address failed logins are counted by: an IPv4 address as it is, an IPv6 one as its
    /64 network — one subscriber is routinely given a whole /64, so counting single IPv6
    addresses would give a guesser 2**64 fresh addresses to rotate through. Anything else (a
    test client's name) is kept, cut to 100 characters."""
    import ipaddress

    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def login(
    store: Store, config: Config, user_key: str, password: str, address: str, now: datetime
) -> NewToken:
    """A session token for a correct password; throttled per user and per address."""
    from argon2.exceptions import VerificationError

    settings = config.server
    since = now - timedelta(seconds=settings.login_window_seconds)
    # Whatever JSON may carry (a lone surrogate, a NUL) is counted, never a 500: the key as the
    # database can store it, the password as bytes (set_password's are UTF-8, so equal ones
    # stay equal).
    key = user_key[:100].encode("utf-8", "replace").decode().replace("\x00", "?")
    secret = password[:MAX_PASSWORD].encode("utf-8", "surrogatepass")
    address = throttled_address(address)
    with store.read() as conn:
        by_user, by_address = (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(login_failure_t)
                .where(column == value, login_failure_t.c.at > since)
            ).scalar_one()
            for column, value in (
                (login_failure_t.c.user_key, key),
                (login_failure_t.c.address, address),
            )
        )
        stored = conn.execute(
            sa.select(credential_t.c.password_hash).where(credential_t.c.user_key == key)
        ).scalar()
    if by_user >= settings.login_attempts or by_address >= settings.login_attempts:
        raise Throttled("too many failed logins: wait a few minutes and try again")
    hasher = _hasher()
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hasher.hash(secrets.token_hex(16)))
    ok = False
    try:
        ok = bool(hasher.verify(stored or _DUMMY_HASH[0], secret))
    except VerificationError:
        ok = False
    if not ok or stored is None or key not in config.users:
        with store.write() as conn:
            conn.execute(
                login_failure_t.insert(), [{"user_key": key, "address": address, "at": now}]
            )
            conn.execute(_PURGE, {"since": since})
        raise Unauthenticated("wrong user or password")
    with store.write() as conn:
        conn.execute(login_failure_t.delete().where(login_failure_t.c.user_key == key))
    return create_token(
        store,
        config,
        key,
        now,
        expires=timedelta(hours=settings.session_hours),
        kind="session",
        label=f"login from {address}",
    )
