"""Group IPT (SPEC §10): the groups table, and the group a course is a member of.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ipt_workflow.storage.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ipt_groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("protocol", sa.String(64), nullable=False),
        sa.Column("protocol_version", sa.String(32), nullable=False),
        sa.Column("therapist", sa.String(64), nullable=False),
        sa.Column("cotherapist", sa.String(64)),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("slot", sa.String(5), nullable=False),
        sa.Column("min_size", sa.Integer, nullable=False),
        sa.Column("max_size", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sessions", sa.JSON, nullable=False),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_ipt_groups_therapist", "ipt_groups", ["therapist"])
    op.create_index("ix_ipt_groups_cotherapist", "ipt_groups", ["cotherapist"])
    op.add_column("ipt_courses", sa.Column("group_id", sa.String(64)))
    op.create_index("ix_ipt_courses_group", "ipt_courses", ["group_id"])


def downgrade() -> None:
    op.drop_index("ix_ipt_courses_group", "ipt_courses")
    with op.batch_alter_table("ipt_courses") as batch:
        batch.drop_column("group_id")
    op.drop_index("ix_ipt_groups_cotherapist", "ipt_groups")
    op.drop_index("ix_ipt_groups_therapist", "ipt_groups")
    op.drop_table("ipt_groups")
