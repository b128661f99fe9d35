"""The first schema: courses, history, sessions, measurements, reminders, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ipt_workflow.storage.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _course_fk() -> sa.Column[str]:
    return sa.Column("course_id", sa.String(64), sa.ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "ipt_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.create_table(
        "ipt_courses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("therapist", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(64), nullable=False),
        sa.Column("protocol_version", sa.String(32), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("slot", sa.String(5), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("planned_sessions", sa.Integer, nullable=False),
        sa.Column("focus", sa.JSON, nullable=False),
        sa.Column("current_focus", sa.String(64)),
        sa.Column("foci_worked", sa.JSON, nullable=False),
        sa.Column("pauses", sa.JSON, nullable=False),
        sa.Column("fired_rules", sa.JSON, nullable=False),
        sa.Column("completed_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_ipt_courses_state", "ipt_courses", ["state"])
    op.create_index("ix_ipt_courses_therapist", "ipt_courses", ["therapist"])
    op.create_table(
        "ipt_history",
        _course_fk(),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "ipt_sessions",
        _course_fk(),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("start_utc", UTCDateTime, nullable=False),
        sa.Column("start_local", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("participants", sa.JSON, nullable=False),
        sa.Column("optional_participants", sa.JSON, nullable=False),
    )
    op.create_index("ix_ipt_sessions_start", "ipt_sessions", ["start_utc"])
    op.create_table(
        "ipt_measurements",
        _course_fk(),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("instrument", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("item9", sa.Integer),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("session", sa.Integer),
    )
    op.create_table(
        "ipt_reminders",
        _course_fk(),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("due", UTCDateTime, nullable=False),
        sa.Column("session", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("delivered_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_ipt_reminders_due", "ipt_reminders", ["status", "due"])
    op.bulk_insert(
        sa.table("ipt_meta", sa.column("key", sa.String), sa.column("value", sa.String)),
        [{"key": "schema_version", "value": "1"}],
    )


def downgrade() -> None:
    for table in ("ipt_reminders", "ipt_measurements", "ipt_sessions", "ipt_history", "ipt_courses", "ipt_meta"):
        op.drop_table(table)
