"""Dossier ids unique whatever their case: a unique index on lower(id).

``iale-1`` beside ``IALE-1`` are two dossiers nobody can tell apart on paper or by phone. The
application refuses such an id (``engine.taken_ids``); two registrations at the same instant on
PostgreSQL could still both pass that check, so the database refuses the second (an
IntegrityError, reported as exit 5 "already exists"). Ids are ASCII, so ``lower()`` folds them
alike on SQLite and PostgreSQL; the index also serves the case-insensitive look-up.

A database already holding two ids that differ only by case cannot take the index: the upgrade
fails naming the index, and those dossiers must be told apart first (by whoever owns them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ux_dossier_id_folded", "dossier", [sa.text("lower(id)")], unique=True)


def downgrade() -> None:
    op.drop_index("ux_dossier_id_folded", table_name="dossier")
