"""Initial schema: dossiers, the append-only audit trail, timers, the outbox, counters, leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dossier",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("product", sa.String(), nullable=False),
        sa.Column("producer", sa.String(), nullable=False),
        sa.Column("commune", sa.String(), nullable=False),
        sa.Column("product_group", sa.String(), nullable=True),
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("workflow_version", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("state_entered_at", TS, nullable=False),
        sa.Column("state_entry_seq", sa.Integer(), nullable=False),
        sa.Column("deadline_at", TS, nullable=True),
        sa.Column("deadline_note", sa.String(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("data", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    for column in ("commune", "workflow", "state", "stage", "deadline_at"):
        op.create_index(f"ix_dossier_{column}", "dossier", [column])

    op.create_table(
        "audit_entry",
        sa.Column("dossier_id", sa.String(), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("data_before", sa.String(), nullable=True),
        sa.Column("data_after", sa.String(), nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
    )
    op.create_index("ix_audit_entry_at", "audit_entry", ["at"])

    op.create_table(
        "timer",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dossier_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("entry_seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("deadline_at", TS, nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("auto_trigger", sa.String(), nullable=True),
        sa.Column("repeat_working_days", sa.Integer(), nullable=True),
        sa.Column("fired_at", TS, nullable=True),
        sa.Column("late_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_timer_dossier_id", "timer", ["dossier_id"])
    op.create_index("ix_timer_status_due", "timer", ["status", "due_at"])

    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(), nullable=False, unique=True),
        sa.Column("dossier_id", sa.String(), nullable=False),
        sa.Column("timer_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
    )
    op.create_index("ix_notification_dossier_id", "notification", ["dossier_id"])
    op.create_index("ix_notification_status_next", "notification", ["status", "next_attempt_at"])

    op.create_table(
        "counter",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.create_table(
        "lease",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    _protect_audit_trail()


def _protect_audit_trail() -> None:
    """Database triggers that make audit_entry append-only, whoever connects."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entry_no_{action.lower()} BEFORE {action} ON audit_entry "
                "BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_entry is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_entry_no_change BEFORE UPDATE OR DELETE ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only()"
        )


def downgrade() -> None:
    raise NotImplementedError("the audit trail is never dropped by a downgrade")
