"""Therapists' absences, and the detail (old and new start) of a client's move notice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ipt_workflow.storage.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ipt_absences",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("therapist", sa.String(64), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("until_date", sa.Date, nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_ipt_absences_therapist", "ipt_absences", ["therapist", "until_date"])
    op.add_column("ipt_reminders", sa.Column("detail", sa.JSON))


def downgrade() -> None:
    op.drop_column("ipt_reminders", "detail")
    op.drop_index("ix_ipt_absences_therapist", "ipt_absences")
    op.drop_table("ipt_absences")
