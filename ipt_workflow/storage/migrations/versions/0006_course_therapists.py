"""The therapists a course holds besides its own: the one it was handed over from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

After ``change_therapist`` from session n, the sessions before n still book the previous
therapist; ``ipt_course_therapists`` lets the clash check find that course by that
therapist through an index. Courses handed over before this revision are filled in from
their stored plans (only courses with a ``change_therapist`` in their history can have any).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: Where a session's therapist sits in a stored plan list (``PLAN_FIELDS``).
_THERAPIST = 9


def upgrade() -> None:
    table = op.create_table(
        "ipt_course_therapists",
        sa.Column("course_id", sa.String(64), sa.ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("therapist", sa.String(64), primary_key=True),
    )
    op.create_index("ix_ipt_course_therapists_therapist", "ipt_course_therapists", ["therapist"])
    courses = sa.table("ipt_courses", sa.column("id"), sa.column("therapist"), sa.column("plan", sa.JSON))
    history = sa.table("ipt_history", sa.column("course_id"), sa.column("event"))
    handed = sa.select(history.c.course_id).where(history.c.event == "change_therapist").distinct()
    bind = op.get_bind()
    rows = []
    for course_id, therapist, plan in bind.execute(
        sa.select(courses.c.id, courses.c.therapist, courses.c.plan).where(courses.c.id.in_(handed))
    ):
        held = {s[_THERAPIST] for s in plan or [] if s[3] == "planned" and len(s) > _THERAPIST and s[_THERAPIST]}
        rows += [{"course_id": course_id, "therapist": t} for t in sorted(held - {therapist, "unassigned"})]
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_index("ix_ipt_course_therapists_therapist", "ipt_course_therapists")
    op.drop_table("ipt_course_therapists")
