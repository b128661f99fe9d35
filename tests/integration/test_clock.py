"""The shell reads the clock; the core never does. With time frozen (freezegun), a course
created and changed without an explicit instant carries the frozen time, to the second."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from freezegun import freeze_time

from ipt_workflow import Workflow


def test_workflow_reads_the_clock_once_per_call_at_whole_seconds(tmp_path: Path) -> None:
    with Workflow(str(tmp_path / "x.sqlite")) as wf:  # models are built before time is frozen
        with freeze_time("2026-03-29T00:59:59.750000+00:00"):  # a second before London springs forward
            course = wf.create_course(client="CL-1", start="2026-03-30", time="10:00", tz="Europe/London")
        assert course.created_at == datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)
        with freeze_time("2026-03-29T01:00:00+00:00"):
            course = wf.apply(course.id, "complete_intake")
        assert course.history[-1].at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
        assert wf.plan(course.id).sessions[0].start.isoformat() == "2026-03-30T10:00:00+01:00"
