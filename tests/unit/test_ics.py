"""SEQUENCE and LAST-MODIFIED of a session (interop.ics.session_revisions): a pure function
of the course's history, matched to the session each hold, miss or cancellation recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from ipt_workflow import apply, load_rules, new_course
from ipt_workflow.interop.ics import SESSION_CHANGES, session_revisions

RULES = load_rules()
IPT16 = RULES.protocol("ipt-16")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_each_recorded_session_keeps_the_revision_of_the_entry_that_recorded_it() -> None:
    course = new_course(
        IPT16, RULES.clinic, course_id="c1", client="CL-1", therapist="T-7",
        start=date(2026, 3, 2), slot=time(10, 0), timezone="Europe/London", now=T0,
    )  # fmt: skip
    assert session_revisions(course) == ({}, (0, T0))
    steps = [
        ("cancel_session", "2026-03-02T08:00", {"number": 5}),  # not the earliest: named
        ("hold_session", "2026-03-02T10:50", None),  # the earliest planned: session 1
        ("record_measure", "2026-03-02T10:55", {"instrument": "phq9", "score": 9, "item9": 0}),
        ("miss_session", "2026-03-09T10:50", None),  # session 2
    ]
    for event, when, data in steps:
        course, _ = apply(course, event, at(when), IPT16, RULES.clinic, data)
    recorded, planned = session_revisions(course)
    assert recorded == {
        5: (1, at("2026-03-02T08:00")),
        1: (2, at("2026-03-02T10:50")),
        2: (3, at("2026-03-09T10:50")),
    }
    assert planned == (3, at("2026-03-09T10:50")), "a measure moves no session"
    assert "record_measure" not in SESSION_CHANGES
    assert {"reschedule_session", "change_slot", "change_therapist", "pause", "resume"} <= SESSION_CHANGES
