"""Pin each dossier to its rule file's content and its deadlines to the calendar they used.

``workflow_sha256``: SHA-256 of the workflow file's canonical bytes when the dossier was
registered (or last migrated): a file edited in place under the same version string is then
noticed. ``calendar_fingerprint``: the calendar (decisions, local days, holidays version) its
pending timers were planned under: a day-off decision added later is noticed by the sweep, which
re-plans them. Both are NULL for dossiers older than this revision: such a dossier is pinned by
its version string only until its next audited action records the hash, and its timers are
checked against the calendar by the first sweep.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dossier", sa.Column("workflow_sha256", sa.String(64), nullable=True))
    op.add_column("dossier", sa.Column("calendar_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossier") as batch:
        batch.drop_column("calendar_fingerprint")
        batch.drop_column("workflow_sha256")
