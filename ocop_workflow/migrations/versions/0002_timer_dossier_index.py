"""Index timers by (dossier, status, due): cancelling a dossier's pending timers must not scan.

Without it SQLite answers ``WHERE dossier_id = ? AND status = 'pending'`` from the
(status, due_at) index and scans every pending timer of the database on each transition.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_timer_dossier_status_due", "timer", ["dossier_id", "status", "due_at"])
    op.drop_index("ix_timer_dossier_id", table_name="timer")


def downgrade() -> None:
    op.create_index("ix_timer_dossier_id", "timer", ["dossier_id"])
    op.drop_index("ix_timer_dossier_status_due", table_name="timer")
