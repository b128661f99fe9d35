"""The quick read path (rows straight to the JSON shapes, no models, no rules) gives exactly
what the model path gives, for a course with a history."""

from __future__ import annotations

from datetime import UTC, datetime

from ipt_workflow import Workflow, course_json, reminder_json
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
            wf.apply("c-1", event, data, at=at)
        expected = course_json(wf.course("c-1"), wf.plan("c-1"))
        assert course_document(wf.store.engine, "c-1") == expected
        assert reminder_documents(wf.store.engine, course="c-1") == [reminder_json(r) for r in wf.reminders("c-1")]
        window = {"start": datetime(2026, 3, 20, tzinfo=UTC), "until": datetime(2026, 4, 20, tzinfo=UTC)}
        assert reminder_documents(wf.store.engine, **window, status="pending") == [
            reminder_json(r) for r in wf.reminders(status="pending", **window)
        ]
