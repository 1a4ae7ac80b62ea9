"""Alembic environment: migrations always run on the connection ``ocop init`` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from ocop_workflow import store  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `ocop init` (ocop_workflow.migrate.upgrade)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
