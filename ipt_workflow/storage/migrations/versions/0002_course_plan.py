"""The course's projected sessions, kept with the course.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Reading a course then needs neither the rules nor the planner; the projection is written in
the same transaction as the reminders it implies, so the two always agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ipt_courses", sa.Column("plan", sa.JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("ipt_courses", "plan")
