"""Room in a reminder's ``rule`` for the session a ``schedule_conflict`` alert names.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A clash alert's rule is ``clash:COURSE#N`` (the other course's id is up to 64 characters).
SQLite does not enforce a VARCHAR's length, so only PostgreSQL's column changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("ipt_reminders", "rule", type_=sa.String(160), existing_type=sa.String(64))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("ipt_reminders", "rule", type_=sa.String(64), existing_type=sa.String(160))
