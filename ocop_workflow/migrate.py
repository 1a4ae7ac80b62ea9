"""``ocop init``: bring the schema to the Alembic head, idempotently and safely under concurrency.

Several workers may start at once and each run ``ocop init``; on PostgreSQL an advisory lock makes
them take turns, on SQLite ``BEGIN IMMEDIATE`` does. Alembic is imported only here, so it costs
nothing to the other commands.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .store import Store

_ADVISORY_LOCK = 0x0C0B_1489


def upgrade(store: Store) -> tuple[str | None, str]:
    """Run every pending migration; returns (revision before, revision after)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    _create_private(store)
    before = store.schema_revision()
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    after = store.schema_revision()
    assert after is not None
    return before, after


def head_revision() -> str:
    """The newest revision among the shipped scripts (tests pin store.SCHEMA_REVISION to it)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


#: The mode of a SQLite database ``ocop init`` creates (its WAL and shared-memory files take it).
SQLITE_MODE = 0o600


def _create_private(store: Store) -> None:
    """Create a missing SQLite file ``0600`` whatever the umask, before SQLite creates it.

    For SQLite the file is the credential: under the usual umask it was ``0644``, and every
    login on the machine could read every dossier and the password hashes around the policy.
    An empty file is an empty database. Anything unusual (no such folder) is left to SQLite to
    report as it does.
    """
    import os

    path = store.sqlite_file
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_MODE)
    except OSError:
        return
    os.close(fd)


def exposed_sqlite_file(store: Store) -> str | None:
    """A warning when the SQLite file, or its WAL or shared-memory file beside it (the WAL holds
    the latest writes), is readable or writable by other logins, else None."""
    import os
    import shlex
    import stat

    path = store.sqlite_file
    if path is None:
        return None
    exposed = []
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            exposed.append((name, mode))
    if not exposed:
        return None
    files = ", ".join(f"{name} (mode {mode:04o})" for name, mode in exposed)
    return (
        f"warning: database file(s) {files} readable by other logins: they can read every "
        f"dossier and the password hashes around the policy: "
        f"chmod 600 {' '.join(shlex.quote(name) for name, _ in exposed)}"
    )
