"""Fewer pages per transition: timers indexed by due time only while pending; no stage index.

A transition cancels the dossier's pending timers and plans new ones. With a (status, due_at)
and a (dossier_id, status, due_at) index every cancelled timer moved inside both indexes: about
12 of the ~25 database pages an advance wrote (measured with bench/transitions.py). Now:

* ``ix_timer_pending_due`` (due_at) holds pending timers only (a partial index). The sweep's
  due query reads it; a cancelled, fired or superseded timer just leaves it.
* ``ix_timer_dossier`` (dossier_id) finds a dossier's timers of any status (cancelling them,
  ``timers list DOSSIER --all``); a status change does not touch it.
* ``ix_dossier_stage`` is dropped: a stage is a set of states, and listing by stage is a
  reading command that can afford a scan; every transition paid for the index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index("ix_timer_dossier", "timer", ["dossier_id"])
    op.create_index(
        "ix_timer_pending_due",
        "timer",
        ["due_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    op.drop_index("ix_timer_dossier_status_due", table_name="timer")
    op.drop_index("ix_timer_status_due", table_name="timer")
    op.drop_index("ix_dossier_stage", table_name="dossier")


def downgrade() -> None:
    op.create_index("ix_dossier_stage", "dossier", ["stage"])
    op.create_index("ix_timer_status_due", "timer", ["status", "due_at"])
    op.create_index("ix_timer_dossier_status_due", "timer", ["dossier_id", "status", "due_at"])
    op.drop_index("ix_timer_pending_due", table_name="timer")
    op.drop_index("ix_timer_dossier", table_name="timer")
