"""Helpers shared by the audit tests: a schema made in-process, and an intruder's first step."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from conftest import Workspace, write_config

from ocop_workflow.migrate import upgrade
from ocop_workflow.store import Store


def upgraded_workspace(root: Path, url: str, *, extra: str = "") -> Workspace:
    """A workspace whose schema is made in this process (no ``ocop init`` subprocess)."""
    write_config(root, extra=extra)
    store = Store(url)
    try:
        upgrade(store)
    finally:
        store.dispose()
    return Workspace(root, url)


def drop_protection(url: str) -> None:
    """What an intruder with the database password does first: drop the append-only triggers."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(sa.text("DROP TRIGGER audit_entry_no_update"))
                conn.execute(sa.text("DROP TRIGGER audit_entry_no_delete"))
            else:
                conn.execute(sa.text("DROP TRIGGER audit_entry_no_change ON audit_entry"))
    finally:
        engine.dispose()
