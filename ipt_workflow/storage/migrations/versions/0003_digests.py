"""Therapist digests (one row per therapist and firing of the clinic's digest cron), and a
partial index on reminder leases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A digest is claimed, delivered and recorded like a reminder (lease, attempts, status), so
several daemons, restarts and ``--once`` runs every minute emit each one exactly once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ipt_workflow.storage.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ipt_digests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("therapist", sa.String(64), nullable=False),
        sa.Column("fire_local", sa.String(19), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("due", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_ipt_digests_due", "ipt_digests", ["status", "due"])
    # Which therapists have an active course, read off an index instead of every course row.
    op.create_index("ix_ipt_courses_therapist_state", "ipt_courses", ["therapist", "state"])
    # Only pending reminders carry a lease from now on (the daemon reads the earliest lease
    # off the partial index below); rows cancelled mid-lease by earlier versions kept theirs.
    op.execute("UPDATE ipt_reminders SET lease_until = NULL WHERE status <> 'pending'")
    where = sa.text("lease_until IS NOT NULL")
    op.create_index(
        "ix_ipt_reminders_lease", "ipt_reminders", ["lease_until"], sqlite_where=where, postgresql_where=where
    )


def downgrade() -> None:
    op.drop_index("ix_ipt_courses_therapist_state", "ipt_courses")
    op.drop_index("ix_ipt_reminders_lease", "ipt_reminders")
    op.drop_index("ix_ipt_digests_due", "ipt_digests")
    op.drop_table("ipt_digests")
