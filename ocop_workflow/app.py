"""The command line's edge: config, clock and acting user of one invocation, and the facade.

The CLI creates one :class:`App` per invocation. It is the only place on the command line that
reads the environment (``OCOP_CONFIG``, ``OCOP_USER``, ``OCOP_NOW``); everything else is
:class:`~ocop_workflow.service.Ocop`, built from the config and a clock. Each piece is made on
first use so that a command pays only for what it touches (``ocop --help`` imports no database
code at all).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .config import Config, User, load_config
from .errors import PermissionDenied

if TYPE_CHECKING:
    from .client import Client
    from .clock import Clock
    from .definitions import Registry
    from .engine import Engine
    from .service import Ocop
    from .store import Store


class App:
    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        acting_user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.env = os.environ if env is None else env
        self.config_path = Path(config_path or self.env.get("OCOP_CONFIG") or "config.toml")
        self.acting_user = acting_user
        self.verbose = False  # --verbose: the log on a terminal too

    @cached_property
    def config(self) -> Config:
        if not self.config_path.exists() and self.through_server():
            self._not_here(f"no config file {self.config_path}")  # see _no_local_database
        return load_config(self.config_path, self.env)

    @cached_property
    def ocop(self) -> Ocop:
        """The facade on this command's clock: one instant for everything the command writes."""
        from .clock import FixedClock, clock_from_env
        from .service import Ocop

        ocop = Ocop(self.config, FixedClock(clock_from_env(self.config, self.env).now()))
        ocop.instant_reads = True  # one command, one thread: plain sqlite3 reads are safe
        if self.through_server():
            ocop.opening_database = self._no_local_database
        return ocop

    def live_clock(self) -> Clock:
        """The clock of a long-running process (``worker``, ``serve``): real time, or — in a
        rehearsal with OCOP_NOW — that instant moving on at real speed."""
        from .clock import clock_from_env

        return clock_from_env(self.config, self.env, moving=True)

    @property
    def now(self) -> datetime:
        """One instant per command: every row it writes carries the same "now"."""
        return self.ocop.now()

    @property
    def store(self) -> Store:
        return self.ocop.store

    def checked_store(self) -> Store:
        """The store, refusing to go on against a database ``ocop init`` has not prepared."""
        return self.ocop.checked_store()

    @property
    def registry(self) -> Registry:
        return self.ocop.registry

    @property
    def engine(self) -> Engine:
        return self.ocop.engine

    def close(self) -> None:
        """Release the database connections and the server session, if any were opened (the CLI
        calls it on exit)."""
        ocop = self.__dict__.get("ocop")
        if ocop is not None:
            ocop.dispose()
        remote = self.__dict__.get("remote")
        if remote is not None:
            remote.close()

    def through_server(self) -> bool:
        """Whether commands that can act through ``ocop serve`` should (``OCOP_SERVER`` or a
        ``[client] url`` in an existing config file)."""
        from .client import SERVER_ENV

        if self.env.get(SERVER_ENV):
            return True
        return self.config_path.exists() and bool(self.config.client.url)

    def _no_local_database(self) -> None:
        """Through a server, a command that works on the database itself (``token``, ``sweep``,
        ``audit export``, ``init`` …) on a machine without one is refused as such — not with
        "no config file" or "run `ocop init`", which would have an officer make a database of
        their own instead of running the command where the database is."""
        from .sqlite_reads import sqlite_path

        path = sqlite_path(self.config.database_url)
        if path is not None and not Path(path).exists():
            self._not_here(f"no database {path}")

    def _not_here(self, missing: str) -> NoReturn:
        from .client import SERVER_ENV
        from .errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"this command works on the database itself, not through the server "
            f"({SERVER_ENV} or [client] url), and this machine has {missing}: "
            "run it where the database is"
        )

    @cached_property
    def remote(self) -> Client | None:
        """The API session these commands act through, or None to use the database directly.

        ``--as``/``OCOP_USER`` are refused here: through a server the token says who you are.
        """
        if not self.through_server():
            return None
        from .client import Client, read_token, server_url
        from .errors import UsageError

        config = self.config if self.config_path.exists() else None
        url = server_url(self.env, config.client.url if config else None)
        assert url is not None
        if self.acting_user:
            raise UsageError(
                "--as/OCOP_USER cannot be used through a server: you act as the owner of your "
                "token (unset OCOP_USER)"
            )
        token = read_token(self.env, config.client.token_file if config else None)
        return Client(url, token, now=self.env.get("OCOP_NOW"))

    def actor(self) -> User:
        """The acting user (``--as``, ``OCOP_USER``, ``[cli] default_user``), checked vs the login.

        With ``[security] require_os_user`` the login of the process's effective uid decides;
        ``$USER`` and ``$LOGNAME`` are ignored because anyone can set them, and so is
        ``default_user``: a shared config's convenience default must not lock every other
        officer out. An explicit ``--as``/``OCOP_USER`` naming someone else is still refused.
        """
        config = self.config
        explicit = self.acting_user or self.env.get("OCOP_USER")
        if config.require_os_user:
            wanted = explicit
            login = current_login()
            mine = [u for u in config.users.values() if u.os_user == login]
            if not mine:
                raise PermissionDenied(
                    f"login '{login}' is not the os_user of any user in {config.path}"
                )
            if wanted is not None and wanted != mine[0].key:
                raise PermissionDenied(
                    f"login '{login}' may act only as {mine[0].key}, not as {wanted}"
                )
            return mine[0]
        wanted = explicit or config.default_user
        if wanted is None:
            from .errors import UsageError

            raise UsageError("no acting user: give --as USER, set OCOP_USER or [cli] default_user")
        return config.user(wanted)


def current_login() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
