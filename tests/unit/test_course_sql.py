"""The plain-SQL hot path of the store (``storage.course_sql``) names the tables' columns in
the schema's order: the rows of new courses (``new_rows``) are inserted by position."""

from __future__ import annotations

from ipt_workflow.storage import course_sql
from ipt_workflow.storage import schema as t


def test_the_plain_sql_column_lists_are_the_schemas() -> None:
    assert tuple(c.name for c in t.courses.columns) == course_sql.COURSE_COLUMNS
    assert tuple(c.name for c in t.history.columns) == course_sql.HISTORY_COLUMNS
    assert tuple(c.name for c in t.sessions.columns) == course_sql.SESSION_COLUMNS
    assert tuple(c.name for c in t.reminders.columns)[:9] == course_sql.REMINDER_COLUMNS
