"""config.toml → a frozen :class:`Config`, every key checked.

An unknown key, a wrong type or a missing required key is a :class:`ConfigError` (exit 1) naming
the key, never a traceback and never silently ignored. Relative paths resolve against the config
file's folder, so ``ocop --config /srv/ocop/config.toml`` works from any directory.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import parse_instant as parse_instant
from .config_checks import Check as _Check
from .config_checks import flag as _bool
from .config_checks import integer as _int
from .config_checks import networks as _networks
from .config_checks import number as _num
from .config_checks import positive as _positive
from .config_checks import str_list as _str_list
from .config_checks import text as _str
from .errors import ConfigError
from .inputs import nfc

if TYPE_CHECKING:
    from .calendar_data import DayDecision

SYSTEM_ACTOR = "system"
KNOWN_ROLES = frozenset(
    {
        "producer",
        "commune_officer",
        "district_officer",
        "province_officer",
        "central_officer",
        "council_member",
        "council_chair",
        "records_officer",  # records migration: imports dossiers mid-cycle (policy.py)
        "auditor",  # reads everything, writes nothing (policy.py)
    }
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class User:
    key: str
    name: str
    roles: frozenset[str]
    communes: frozenset[str]
    email: str | None = None
    os_user: str | None = None
    organisation: str | None = None

    def covers(self, commune: str) -> bool:
        """True when the user's commune scope includes ``commune`` ("*" = every commune)."""
        return "*" in self.communes or commune in self.communes


@dataclass(frozen=True)
class NotificationsConfig:
    channels: tuple[str, ...] = ("file",)
    #: Each registered channel's settings, by name: what its ``[notifications.<name>]`` table
    #: became (``Channel.settings``), whether the channel is enabled or not.
    settings: Mapping[str, Any] = field(default_factory=dict)
    max_attempts: int = 5
    backoff_seconds: float = 30.0
    batch_size: int = 200
    #: The channels' secret variables (``password_env``, ``secret_env``) read from the
    #: environment once, when the config is loaded: delivery never reads the environment.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Council:
    """An evaluation council (Hội đồng đánh giá, phân hạng) of one level; the chair is a member."""

    key: str
    title: str
    level: str
    chair: str
    members: tuple[str, ...]
    communes: frozenset[str] = frozenset({"*"})

    def covers(self, commune: str) -> bool:
        return "*" in self.communes or commune in self.communes


@dataclass(frozen=True)
class AuditConfig:
    """``[audit]``: the checkpoint signing key and the worker's checkpoint schedule."""

    signing_key: Path | None = None
    public_key: Path | None = None
    checkpoint_dir: Path | None = None
    checkpoint_interval_hours: float | None = None
    checkpoint_recipients: tuple[str, ...] = ()
    checkpoint_channel: str = "email"


#: ``[documents] max_bytes`` default: a scanned 500-page dossier is ~20–40 MB.
DEFAULT_MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
#: ``[documents] max_per_dossier`` default. A dossier's documents are part of its data, which
#: every later audit entry of it records whole: without a bound, a producer's thousands of tiny
#: uploads would grow the (undeletable) trail with their square. A real dossier holds a few dozen.
DEFAULT_MAX_DOCUMENTS = 100


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: what ``ocop serve`` accepts and how it treats logins."""

    #: A header a trusted reverse proxy sets to the user key after single sign-on; off when None.
    #: Honoured only from a peer in ``trusted_proxies``.
    trusted_user_header: str | None = None
    #: The reverse proxies (addresses and networks) whose ``X-Forwarded-For`` names the client;
    #: empty: the header is ignored and the client is the peer itself.
    trusted_proxies: tuple[str, ...] = ()
    #: Failed password logins allowed per user and per address within ``login_window_seconds``.
    login_attempts: int = 5
    login_window_seconds: float = 900.0
    #: How long a session token from a password login lives.
    session_hours: float = 12.0


@dataclass(frozen=True)
class ClientConfig:
    """``[client]``: the CLI acts through this server instead of opening the database."""

    url: str | None = None
    token_file: Path | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    database_url: str
    workflows_dir: Path | None  # None: only the workflows shipped with the package
    default_workflow: str
    timezone: str
    holidays: str
    allow_clock_override: bool
    default_user: str | None
    sweep_interval_seconds: float
    sweep_batch_size: int
    notifications: NotificationsConfig
    require_os_user: bool
    users: Mapping[str, User]
    targets: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    councils: Mapping[str, Council] = field(default_factory=dict)
    documents_dir: Path = Path("documents")
    #: A province's own days off (and worked Saturdays), each with its source: ``[calendar]``.
    calendar_days: tuple[DayDecision, ...] = ()
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    max_documents: int = DEFAULT_MAX_DOCUMENTS
    audit: AuditConfig = field(default_factory=AuditConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    #: ``[communes] names``: the complete list of communes (empty: not configured)
    communes: tuple[str, ...] = ()
    #: ``[log] level``: the log level wherever stderr goes (None: info to a pipe or file,
    #: warnings only on a terminal unless --verbose)
    log_level: str | None = None

    @property
    def communes_closed(self) -> bool:
        """True when ``[communes]`` lists every commune: anything else is refused."""
        return bool(self.communes)

    def known_communes(self) -> frozenset[str]:
        """The configured list, else every commune a user's or council's scope names."""
        cached = self.__dict__.get("_known_communes")
        if cached is None:
            cached = self.__dict__["_known_communes"] = self._known_communes()
        return cached

    def _known_communes(self) -> frozenset[str]:
        if self.communes:
            return frozenset(self.communes)
        scopes = [
            *(u.communes for u in self.users.values()),
            *(c.communes for c in self.councils.values()),
        ]
        return frozenset(name for scope in scopes for name in scope if name != "*")

    def check_commune(self, name: str) -> None:
        """Refuse (exit 3, with "did you mean …") a commune that is not known."""
        known = self.known_communes()
        if name in known:  # the common case, once per imported row: no folding
            return
        from .communes import check_commune

        check_commune(name, known, closed=self.communes_closed)

    def user(self, key: str) -> User:
        from .errors import NotFound

        if key == SYSTEM_ACTOR:
            from .errors import PermissionDenied

            raise PermissionDenied("'system' is the scheduler's own identity; no one can act as it")
        try:
            return self.users[key]
        except KeyError:
            from .communes import hint

            raise NotFound(
                f"unknown user '{key}': not a key of [users] in {self.path}{hint(key, self.users)}"
            ) from None


# --- checking -------------------------------------------------------------------------------


def _section(data: Any, name: str, schema: Mapping[str, _Check]) -> dict[str, Any]:
    """Check one table: it is a table, it has only known keys, each value passes its check."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{name}' must be a table")
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{name}.{key}"
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"unknown config key '{full}' (known keys of [{name}]: {known})")
        out[key] = schema[key](full, value)
    return out


def _require(values: Mapping[str, Any], section: str, key: str) -> Any:
    if key not in values:
        raise ConfigError(f"missing required config key '{section}.{key}'")
    return values[key]


TOP_LEVEL = frozenset(
    {
        "database",
        "engine",
        "clock",
        "cli",
        "scheduler",
        "notifications",
        "security",
        "users",
        "targets",
        "councils",
        "documents",
        "calendar",
        "audit",
        "server",
        "client",
        "communes",
        "log",
    }
)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and check ``path``; apply ``OCOP_DATABASE_URL`` from ``env`` (default os.environ)."""
    env = os.environ if env is None else env
    path = Path(path)
    from .inputs import toml_document

    raw, info = _read_config_bytes(path)
    data = toml_document(raw, str(path), ConfigError)
    config = parse_config(data, path.resolve(), env)
    if config.require_os_user:
        database = data.get("database")
        file_url = database.get("url") if isinstance(database, dict) else None
        check_trusted_config(config, info, file_url if isinstance(file_url, str) else None)
    return config


def check_trusted_config(config: Config, info: os.stat_result, file_url: str | None) -> None:
    """Under ``[security] require_os_user``, the config itself must be one nobody else wrote.

    The login check is only as good as the file that maps logins to users: a config that
    another login could write (group- or world-writable, or owned by someone other than root or
    the account running ocop) could map that login to anyone. And database credentials in a
    file every login can read let any login run its own ocop (``--config mine.toml``) straight
    against the database, where no check of ours applies. Both are refused (exit 1), naming the
    fix. What this cannot do — no program can — is stop a login that holds the credentials
    itself; see the README's trust model.
    """
    import stat

    path = config.path
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"config file {path} is writable by other logins (mode {stat.S_IMODE(info.st_mode):o}):"
            " with [security] require_os_user it must be writable only by its owner "
            f"(chmod go-w {path})"
        )
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"config file {path} is owned by uid {info.st_uid}: with [security] require_os_user "
            "it must be owned by root or by the account ocop runs as"
        )
    from urllib.parse import urlsplit

    try:
        password = urlsplit(file_url).password if file_url else None
    except ValueError:
        password = None
    if password and info.st_mode & stat.S_IROTH:
        raise ConfigError(
            f"config file {path} holds the database password and every login can read it: "
            f"with [security] require_os_user make it readable only by the service account "
            f"(chmod o-r {path}), or give the password in OCOP_DATABASE_URL"
        )


#: A config file is a few kilobytes; anything this large is not one (``--config /dev/zero``).
CONFIG_MAX_BYTES = 1 << 20


def _read_config_bytes(path: Path) -> tuple[bytes, os.stat_result]:
    """The file's bytes: a regular file of at most ``CONFIG_MAX_BYTES``, read through one
    descriptor (the checks and the read see the same file)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found (give --config PATH or set OCOP_CONFIG; "
            "to start one: ocop config example > config.toml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ConfigError(f"config file {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(CONFIG_MAX_BYTES + 1)
    if len(raw) > CONFIG_MAX_BYTES:
        raise ConfigError(f"config file {path} is larger than {CONFIG_MAX_BYTES} bytes")
    return raw, info


def example_config() -> str:
    """The commented starter ``ocop config example`` prints: the repository's ``config.toml``,
    shipped inside the package (``ocop_workflow/starter``) so an installed ``ocop`` has it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "starter" / "config.toml", here.parent / "config.toml"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise ConfigError("the example configuration is missing from this installation")


def parse_config(data: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Config:
    for key in data:
        if key not in TOP_LEVEL:
            raise ConfigError(
                f"unknown config key '{key}' in {path} (known: {', '.join(sorted(TOP_LEVEL))})"
            )
    base = path.parent

    def resolve(p: str) -> Path:
        candidate = Path(p).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    db = _section(data.get("database"), "database", {"url": _str})
    url = env.get("OCOP_DATABASE_URL") or db.get("url") or "sqlite:///ocop.db"
    url = _resolve_sqlite_url(url, base)

    engine = _section(
        data.get("engine"),
        "engine",
        {
            "workflows_dir": _str,
            "default_workflow": _str,
            "timezone": _str,
            "holidays": _str,
        },
    )
    timezone = engine.get("timezone", "Asia/Ho_Chi_Minh")
    _check_timezone(timezone)

    clock = _section(data.get("clock"), "clock", {"allow_override": _bool})
    cli = _section(data.get("cli"), "cli", {"default_user": _str})
    scheduler = _section(
        data.get("scheduler"),
        "scheduler",
        {"sweep_interval_seconds": _positive(_num), "batch_size": _positive(_int)},
    )
    security = _section(data.get("security"), "security", {"require_os_user": _bool})
    notifications = _notifications(data.get("notifications"), resolve, env)
    users = _users(data.get("users"))
    targets = _targets(data.get("targets"))
    councils = _councils(data.get("councils"), users)
    from .calendar_data import parse_local

    calendar_days = parse_local(data.get("calendar"))
    documents = _section(
        data.get("documents"),
        "documents",
        {"dir": _str, "max_bytes": _positive(_int), "max_per_dossier": _positive(_int)},
    )
    audit = _audit(data.get("audit"), resolve, notifications)
    server = _section(
        data.get("server"),
        "server",
        {
            "trusted_user_header": _str,
            "trusted_proxies": _networks,
            "login_attempts": _positive(_int),
            "login_window_seconds": _positive(_num),
            "session_hours": _positive(_num),
        },
    )
    if server.get("trusted_user_header") and not server.get("trusted_proxies"):
        raise ConfigError(
            "config key 'server.trusted_user_header' needs 'server.trusted_proxies': the header "
            "is honoured only from the proxy that sets it"
        )
    client = _section(data.get("client"), "client", {"url": _str, "token_file": _str})
    communes = _communes(data.get("communes"), users, councils)
    log = _section(data.get("log"), "log", {"level": _str})
    if log.get("level", "INFO").upper() not in LOG_LEVELS:
        raise ConfigError(
            f"config key 'log.level': unknown level '{log['level']}' "
            f"(known: {', '.join(LOG_LEVELS)})"
        )

    default_user = cli.get("default_user")
    if default_user is not None and default_user not in users:
        raise ConfigError(
            f"config key 'cli.default_user': '{default_user}' is not a key of [users]"
        )

    return Config(
        path=path,
        database_url=url,
        workflows_dir=resolve(engine["workflows_dir"]) if "workflows_dir" in engine else None,
        default_workflow=engine.get("default_workflow", "ocop-1489"),
        timezone=timezone,
        holidays=engine.get("holidays", "VN"),
        allow_clock_override=clock.get("allow_override", False),
        default_user=default_user,
        sweep_interval_seconds=float(scheduler.get("sweep_interval_seconds", 30)),
        sweep_batch_size=scheduler.get("batch_size", 500),
        notifications=notifications,
        require_os_user=security.get("require_os_user", False),
        users=users,
        targets=targets,
        councils=councils,
        documents_dir=resolve(documents.get("dir", "documents")),
        calendar_days=calendar_days,
        communes=communes,
        log_level=log["level"].upper() if "level" in log else None,
        max_document_bytes=documents.get("max_bytes", DEFAULT_MAX_DOCUMENT_BYTES),
        max_documents=documents.get("max_per_dossier", DEFAULT_MAX_DOCUMENTS),
        audit=audit,
        server=ServerConfig(
            trusted_user_header=server.get("trusted_user_header"),
            trusted_proxies=server.get("trusted_proxies", ()),
            login_attempts=server.get("login_attempts", 5),
            login_window_seconds=float(server.get("login_window_seconds", 900)),
            session_hours=float(server.get("session_hours", 12)),
        ),
        client=ClientConfig(
            url=client.get("url"),
            token_file=resolve(client["token_file"]) if client.get("token_file") else None,
        ),
    )


def _audit(
    data: Any, resolve: Callable[[str], Path], notifications: NotificationsConfig
) -> AuditConfig:
    values = _section(
        data,
        "audit",
        {
            "signing_key": _str,
            "public_key": _str,
            "checkpoint_dir": _str,
            "checkpoint_interval_hours": _positive(_num),
            "checkpoint_recipients": _str_list,
            "checkpoint_channel": _str,
        },
    )
    interval = values.get("checkpoint_interval_hours")
    if interval is not None and not interval < float("inf"):
        raise ConfigError("config key 'audit.checkpoint_interval_hours' must be finite")
    if interval is not None and "signing_key" not in values:
        raise ConfigError("config key 'audit.checkpoint_interval_hours' needs audit.signing_key")
    channel = values.get("checkpoint_channel", "email")
    if values.get("checkpoint_recipients") and channel not in notifications.channels:
        raise ConfigError(
            f"config key 'audit.checkpoint_channel': channel {channel} is not in "
            "[notifications] channels"
        )
    signing = resolve(values["signing_key"]) if "signing_key" in values else None
    public = values.get("public_key")
    if public is None and signing is not None:
        from .checkpoint import public_key_path

        public_path: Path | None = public_key_path(signing)
    else:
        public_path = resolve(public) if public is not None else None
    directory = values.get("checkpoint_dir")
    return AuditConfig(
        signing_key=signing,
        public_key=public_path,
        checkpoint_dir=resolve(directory) if directory else resolve("checkpoints"),
        checkpoint_interval_hours=None if interval is None else float(interval),
        checkpoint_recipients=values.get("checkpoint_recipients", ()),
        checkpoint_channel=channel,
    )


def _resolve_sqlite_url(url: str, base: Path) -> str:
    """``sqlite:///ocop.db`` is relative to the config file's folder, not the caller's cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return prefix + str(base / rest)
    return url


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"config key 'engine.timezone': unknown time zone '{name}'") from None


def _notifications(
    data: Any, resolve: Callable[[str], Path], env: Mapping[str, str]
) -> NotificationsConfig:
    """``[notifications]`` and one ``[notifications.<name>]`` table per registered channel.

    The tables are the channel registry's: each channel names its keys and their checks
    (``config_keys``), the keys it needs when enabled (``required_keys``) and what the checked
    values become (``settings``), so a new channel is one class, and this function does not
    change. Every channel's secret variables are resolved here, from ``env``.
    """
    from .channels import CHANNELS, resolve_secrets  # the channel registry

    if data is not None and not isinstance(data, dict):
        raise ConfigError("config key 'notifications' must be a table")
    top = dict(data or {})
    tables = {name: top.pop(name, None) for name in CHANNELS}
    values = _section(
        top,
        "notifications",
        {
            "channels": _str_list,
            "max_attempts": _positive(_int),
            "backoff_seconds": _positive(_num),
            "batch_size": _positive(_int),
        },
    )
    channels = values.get("channels", ("file",))
    for channel in channels:
        if channel not in CHANNELS:
            raise ConfigError(
                f"config key 'notifications.channels': unknown channel '{channel}' "
                f"(known: {', '.join(CHANNELS)})"
            )
    settings: dict[str, Any] = {}
    for name, kind in CHANNELS.items():
        section = f"notifications.{name}"
        checked = _section(tables[name], section, kind.config_keys())
        if name in channels:
            for key in kind.required_keys:
                _require(checked, section, key)
        settings[name] = kind.settings(checked, resolve)
    config = NotificationsConfig(
        channels=channels,
        settings=settings,
        max_attempts=values.get("max_attempts", 5),
        backoff_seconds=float(values.get("backoff_seconds", 30.0)),
        batch_size=values.get("batch_size", 200),
    )
    return dataclasses.replace(config, secrets=resolve_secrets(config, env))


#: A ``[users]`` key: what the audit trail records as the actor, so plain and unambiguous.
_USER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _users(data: Any) -> dict[str, User]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config key 'users' must be a table of users")
    users: dict[str, User] = {}
    os_users: dict[str, str] = {}
    for key, raw in data.items():
        section = f"users.{key}"
        if key.lower() == SYSTEM_ACTOR:
            raise ConfigError(
                f"config key 'users.{key}': 'system' is reserved for the scheduler (in any case)"
            )
        if not _USER_KEY.fullmatch(key):
            raise ConfigError(
                f"config key 'users.{key!r}': a user key is the audit trail's actor: use letters, "
                "digits and . _ - (at most 64 characters), no spaces or control characters"
            )
        values = _section(
            raw,
            section,
            {
                "name": _str,
                "roles": _str_list,
                "communes": _str_list,
                "email": _str,
                "os_user": _str,
                "organisation": _str,
            },
        )
        roles = _require(values, section, "roles")
        for role in roles:
            if role == SYSTEM_ACTOR:
                raise ConfigError(
                    f"config key '{section}.roles': 'system' cannot be given to a user"
                )
            if role not in KNOWN_ROLES:
                raise ConfigError(
                    f"config key '{section}.roles': unknown role '{role}' "
                    f"(known: {', '.join(sorted(KNOWN_ROLES))})"
                )
        if "producer" in roles and "organisation" not in values:
            raise ConfigError(f"missing required config key '{section}.organisation' (a producer)")
        os_user = values.get("os_user")
        if os_user is not None:
            if os_user in os_users:
                raise ConfigError(
                    f"config key '{section}.os_user': '{os_user}' is already the login of "
                    f"users.{os_users[os_user]}"
                )
            os_users[os_user] = key
        organisation = values.get("organisation")
        users[key] = User(
            key=key,
            name=nfc(str(values.get("name", key))),
            roles=frozenset(roles),
            communes=frozenset(nfc(c) for c in values.get("communes", ())),
            email=values.get("email"),
            os_user=os_user,
            organisation=None if organisation is None else nfc(organisation),
        )
    return users


def _councils(data: Any, users: Mapping[str, User]) -> dict[str, Council]:
    """``[councils.<key>]``: who sits on each evaluation council; every member is a user."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config key 'councils' must be a table of councils")
    out: dict[str, Council] = {}
    for key, raw in data.items():
        section = f"councils.{key}"
        values = _section(
            raw,
            section,
            {
                "title": _str,
                "level": _str,
                "chair": _str,
                "members": _str_list,
                "communes": _str_list,
            },
        )
        level = _require(values, section, "level")
        chair = _require(values, section, "chair")
        members = tuple(_require(values, section, "members"))
        if chair not in members:
            members = (chair, *members)
        for member in members:
            if member not in users:
                raise ConfigError(f"config key '{section}.members': '{member}' is not a user")
        if len(set(members)) != len(members):
            raise ConfigError(f"config key '{section}.members': a member is listed twice")
        out[key] = Council(
            key=key,
            title=str(values.get("title", key)),
            level=level,
            chair=chair,
            members=members,
            communes=frozenset(nfc(c) for c in values.get("communes", ["*"])),
        )
    return out


def _communes(
    data: Any, users: Mapping[str, User], councils: Mapping[str, Council]
) -> tuple[str, ...]:
    """``[communes] names``: the province's communes; every user's and council's scope in it."""
    from .communes import fold, hint

    values = _section(data, "communes", {"names": _str_list})
    names = tuple(nfc(n.strip()) for n in values.get("names", ()))
    if not names:
        if data is not None:
            raise ConfigError("config key 'communes.names' must list at least one commune")
        return ()
    seen: dict[str, str] = {}
    for name in names:
        if not name or name == "*":
            raise ConfigError(f"config key 'communes.names': {name!r} is not a commune name")
        if fold(name) in seen:
            raise ConfigError(
                f"config key 'communes.names': '{name}' and '{seen[fold(name)]}' are one name "
                "spelt twice"
            )
        seen[fold(name)] = name
    scopes = [(f"users.{k}.communes", u.communes) for k, u in users.items()]
    scopes += [(f"councils.{k}.communes", c.communes) for k, c in councils.items()]
    for key, scope in scopes:
        for commune in sorted(scope - {"*"}):
            if commune not in names:
                raise ConfigError(
                    f"config key '{key}': '{commune}' is not in [communes] names"
                    f"{hint(commune, names)}"
                )
    return names


def _targets(data: Any) -> dict[int, dict[str, int]]:
    """``[targets.<year>]``: named integer plan targets (read by the progress report)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config key 'targets' must be a table of years")
    out: dict[int, dict[str, int]] = {}
    for year, raw in data.items():
        if not year.isdigit():
            raise ConfigError(f"config key 'targets.{year}': the table name must be a year")
        if not isinstance(raw, dict):
            raise ConfigError(f"config key 'targets.{year}' must be a table")
        checked: dict[str, int] = {}
        for key, value in raw.items():
            checked[key] = _int(f"targets.{year}.{key}", value)
        out[int(year)] = checked
    return out
