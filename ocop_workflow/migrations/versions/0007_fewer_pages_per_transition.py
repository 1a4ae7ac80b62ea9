"""Fewer pages written per transition: one waking timer per dossier indexed, three indexes gone.

bench/transitions.py attributes every WAL page an ``Engine.advance`` writes to its table or
index (``wal_pages_by_btree``). Before this revision an advance wrote 19.7 pages on SQLite, and
most of them were index entries moved, not data:

* ``ix_timer_pending_due`` (due_at of every pending timer): 5.6 pages. A transition cancels
  the ~3 pending timers of the state it leaves (3 index entries deleted) and plans ~3 for the
  state it enters (3 inserted), each in another leaf (a reminder, a deadline and an escalation
  are days apart). It is replaced by ``ix_timer_wake``, which holds one timer per dossier: its
  pending timer due first (``timer.wake = 1``). The sweep claims due dossiers through it and
  reads their other due timers through ``ix_timer_dossier`` (``store.pending_due``); a
  transition moves one entry of the index instead of ~6. The upgrade marks *every* pending
  timer as waking: more entries than needed (the sweep then claims each as it comes due,
  exactly as before), never fewer, and it needs no per-dossier ordering on a large table; the
  index shrinks to one entry per dossier as dossiers move.
* ``ix_dossier_state`` and ``ix_dossier_deadline_at``: 1.5 and 1.7 pages (each changes on every
  move: an entry deleted in one leaf, inserted in another). Only reading commands use them
  (``dossier list --state/--overdue``, the overdue report), and they return many rows: at
  100,000 dossiers of ~4 KB, a scan answered ``--state`` in 0.37–0.40 s against 0.40 s with the
  index (SQLite walks the table in id order for the listing's ORDER BY anyway) and
  ``--overdue`` in 0.35 s against 0.27 s.
* ``ix_audit_entry_at``: 1.2 pages (the rightmost leaf rewritten by every entry). Read only by
  the year's progress report (which reads a whole year of entries: a scan in (dossier, seq)
  order, which its ORDER BY wants anyway), the HTML report (which already reads the whole
  trail) and ``audit export --since`` (a bulk export, which streams what it finds).

The audit entries changed format in the same release without a schema change (no more
``data_before``, see audit.py): entries written before keep their rows and hashes.

Downgrade restores the three indexes and the pending index, and drops ``wake``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")
WAKING = sa.text("status = 'pending' AND wake = 1")


def upgrade() -> None:
    op.add_column("timer", sa.Column("wake", sa.Integer(), nullable=True))
    op.execute("UPDATE timer SET wake = 1 WHERE status = 'pending'")
    op.create_index(
        "ix_timer_wake", "timer", ["due_at"], sqlite_where=WAKING, postgresql_where=WAKING
    )
    op.drop_index("ix_timer_pending_due", table_name="timer")
    op.drop_index("ix_dossier_state", table_name="dossier")
    op.drop_index("ix_dossier_deadline_at", table_name="dossier")
    op.drop_index("ix_audit_entry_at", table_name="audit_entry")


def downgrade() -> None:
    op.create_index("ix_audit_entry_at", "audit_entry", ["at"])
    op.create_index("ix_dossier_deadline_at", "dossier", ["deadline_at"])
    op.create_index("ix_dossier_state", "dossier", ["state"])
    op.create_index(
        "ix_timer_pending_due", "timer", ["due_at"], sqlite_where=PENDING, postgresql_where=PENDING
    )
    op.drop_index("ix_timer_wake", table_name="timer")
    with op.batch_alter_table("timer") as batch:
        batch.drop_column("wake")
