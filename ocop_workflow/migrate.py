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
