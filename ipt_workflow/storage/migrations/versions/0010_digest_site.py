"""The site each digest was recorded for.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``ipt_digests.site`` keeps the site id the digest's id was made with, so the event says it.
Rows recorded before this revision get NULL; their events say the database's site.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ipt_digests", sa.Column("site", sa.String(64)))


def downgrade() -> None:
    op.drop_column("ipt_digests", "site")
