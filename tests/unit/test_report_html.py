"""The report and caseload pages as text (SPEC §13): client references, rule ids and event
data are data, never markup; nothing in the page fetches anything."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from ipt_workflow.core.wallclock import zone
from ipt_workflow.present.report import caseload_row, caseload_view, render_caseload, render_report, report_view

MARKUP = "<script>alert(1)</script>"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def course_doc(**changes: Any) -> dict[str, Any]:
    session = {"number": 1, "phase": "assessment", "start": "2026-03-02T10:00:00+00:00",
               "end": "2026-03-02T10:50:00+00:00", "status": "held", "therapist": "T-01", "original_start": None,
               "duration_minutes": 50, "format": "individual", "participants": ["client"],
               "optional_participants": []}  # fmt: skip
    doc = {
        "id": "c-1", "client": MARKUP, "therapist": "T-01", "protocol": "ipt-16", "protocol_version": MARKUP,
        "timezone": "Europe/London", "state": "assessment", "focus": [MARKUP], "current_focus": MARKUP,
        "foci_worked": [], "planned_sessions": 12, "version": 3,
        "sessions": [session, {**session, "number": 2, "status": "planned", "start": "2026-03-09T10:00:00+00:00",
                               "end": "2026-03-09T10:50:00+00:00"}],
        "measurements": [{"instrument": "phq9", "score": 12, "item9": 1, "at": "2026-03-02T09:55:00+00:00",
                          "session": None}],
        "history": [{"event": "set_focus", "at": "2026-03-02T11:00:00+00:00", "from": "assessment",
                     "to": "assessment", "rule": MARKUP, "data": {"areas": [MARKUP]}}],
        "phq9": {"baseline": 12, "latest": 12, "count": 1, "change_percent": None, "response": False,
                 "remission": False, "severity": "moderate"},
    }  # fmt: skip
    return {**doc, **changes}


ALERT = {"id": "r1", "course": "c-1", "kind": "safety_alert", "audience": "therapist",
         "due": "2026-03-02T09:55:00+00:00", "session": None, "status": "delivered", "rule": MARKUP,
         "delivered_at": "2026-03-02T09:56:00+00:00", "attempts": 1}  # fmt: skip


def test_markup_in_data_is_escaped_text() -> None:
    html = render_report(report_view(course_doc(), [ALERT], NOW))
    assert "<script" not in html
    # the client reference, version, focus, event data, the rule of a history entry and of an alert
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6


def test_caseload_escapes_markup_too() -> None:
    rows = [caseload_row(course_doc(), [ALERT], NOW)]
    html = render_caseload(caseload_view(rows, "T-01", NOW, zone("Europe/London")))
    assert "<script" not in html and "&lt;script&gt;" in html


def test_nothing_is_fetched() -> None:
    html = render_report(report_view(course_doc(), [ALERT], NOW))
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", html)  # only in-page references (#id)
    assert "url(" not in html.replace("url(#", "")
    assert "default-src 'none'" in html


def test_times_on_the_course_wall_clock_with_weekday() -> None:
    html = render_report(report_view(course_doc(), [ALERT], NOW))
    assert "Generated Fri 2026-03-20 12:00 GMT" in html
    assert "Mon 2026-03-02 09:56 GMT" in html  # the alert's delivery
