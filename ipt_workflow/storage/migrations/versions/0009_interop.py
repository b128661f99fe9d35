"""The FHIR resource versions ingested.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

``ipt_ingested`` makes ``ipt ingest fhir`` apply a resource version once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ipt_workflow.storage.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ipt_ingested",
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.String(64), primary_key=True),
        sa.Column("course_id", sa.String(64)),
        sa.Column("event", sa.String(32)),
        sa.Column("ingested_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ipt_ingested")
