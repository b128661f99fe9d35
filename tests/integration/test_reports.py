"""``Workflow.report`` and ``Workflow.caseload`` (SPEC §13) on SQLite and PostgreSQL: the
stored reminders' delivery shows in the report, and the caseload reads the same on both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ipt_workflow import Workflow

PHQ9 = {"instrument": "phq9", "score": 18, "item9": 1}


def test_report_and_caseload_on_every_backend(db_url: str) -> None:
    at = datetime(2026, 3, 2, 9, 55, tzinfo=UTC)
    with Workflow(db_url, clock=lambda: datetime(2026, 3, 1, tzinfo=UTC)) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1",
                         therapist="T-01")  # fmt: skip
        wf.create_course(client="CL-2", start="2026-03-02", time="12:00", tz="Europe/London", course_id="c-2",
                         therapist="T-02")  # fmt: skip
        wf.clock = lambda: at
        wf.apply("c-1", "complete_intake", at=at - timedelta(minutes=5))
        wf.apply("c-1", "record_measure", PHQ9, at=at)
        sent: list[dict[str, object]] = []
        wf.dispatch([sent.append], now=at + timedelta(minutes=1))
        assert "safety_alert" in [e["kind"] for e in sent]

        wf.clock = lambda: datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
        html = wf.report("c-1")
        assert html.count('class="phq-point"') == 1
        alert = html[html.index('data-kind="safety_alert"') :].split("</tr>")[0]
        assert 'data-status="delivered"' in alert and "Mon 2026-03-02 09:56 GMT" in alert  # its delivery

        rows = [r.model_dump() for r in wf.caseload()]
        assert [(r["course"], r["state"], r["week"], r["weeks"]) for r in rows] == [
            ("c-1", "assessment", 1, 12), ("c-2", "intake", 1, 12)
        ]  # fmt: skip
        # the safety alert delivered a day ago, session 1 (yesterday) never recorded
        assert [a["kind"] for a in rows[0]["open_alerts"]] == ["safety_alert", "attendance_unrecorded"]
        assert rows[0]["phq9"]["baseline"] == 18 and rows[1]["phq9"] is None
        assert [r.course for r in wf.caseload("T-02")] == ["c-2"]
