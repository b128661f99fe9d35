"""The fingerprint of the rules each stored plan was made under.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

``ipt_courses.rules_fingerprint`` is written with every plan (``planner.rules_fingerprint``:
the protocol version's content and the clinic policy's). Rows stored before this revision get
NULL: their plans count as made under other rules, so ``ipt replan`` (or the daemon, before it
emits one of their reminders) replans them under the rules in force.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ipt_courses", sa.Column("rules_fingerprint", sa.String(32)))


def downgrade() -> None:
    op.drop_column("ipt_courses", "rules_fingerprint")
