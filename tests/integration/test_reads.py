"""The quick read path (rows straight to the JSON shapes, no models, no rules) gives exactly
what the model path gives, for a course with a history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ipt_workflow import UnknownName, Workflow, course_json, reminder_json
from ipt_workflow.storage.reads import course_document, reminder_documents

PHQ9 = {"instrument": "phq9", "score": 14, "item9": 1}


def test_course_document_and_reminder_documents_equal_the_model_views(db_url: str) -> None:
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with Workflow(db_url, clock=lambda: now) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1")
        steps = [
            ("complete_intake", None, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
            ("record_measure", PHQ9, datetime(2026, 3, 2, 10, 55, tzinfo=UTC)),
            ("hold_session", None, datetime(2026, 3, 2, 11, 0, tzinfo=UTC)),
            ("miss_session", None, datetime(2026, 3, 9, 11, 0, tzinfo=UTC)),
            ("pause", None, datetime(2026, 3, 10, 9, 0, tzinfo=UTC)),
            ("resume", None, datetime(2026, 3, 24, 9, 0, tzinfo=UTC)),
        ]
        for event, data, at in steps:
            wf.clock = lambda at=at: at  # recorded as it happens
            wf.apply("c-1", event, data, at=at)
        expected = course_json(wf.course("c-1"), wf.plan("c-1"))
        window = {"start": datetime(2026, 3, 20, tzinfo=UTC), "until": datetime(2026, 4, 20, tzinfo=UTC)}
        # The engine, and the URL or path as the CLI passes it (plain sqlite3 on an SQLite file).
        for source in (wf.store.engine, db_url):
            assert course_document(source, "c-1") == expected
            assert reminder_documents(source, course="c-1") == [reminder_json(r) for r in wf.reminders("c-1")]
            assert reminder_documents(source, **window, status="pending") == [
                reminder_json(r) for r in wf.reminders(status="pending", **window)
            ]
            assert reminder_documents(source, limit=3) == [reminder_json(r) for r in wf.reminders()[:3]]


def test_course_document_of_an_unknown_course_names_it(db_url: str) -> None:
    with Workflow(db_url) as wf:
        for source in (wf.store.engine, db_url):
            with pytest.raises(UnknownName, match="unknown course 'nope'"):
                course_document(source, "nope")
