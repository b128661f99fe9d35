"""An example host application: clinic software that embeds ipt-workflow through its public
API only. ``tests/unit/test_host_app.py`` type-checks it with ``mypy --strict`` (so every
value the library hands back has a precise type) and runs it.

    python -m tests.host_app.app /tmp/clinic.sqlite
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped, unused-ignore]

from ipt_workflow import (
    AgendaEntry,
    Attachment,
    Course,
    CourseState,
    CourseSummary,
    InvalidInput,
    Plan,
    Reminder,
    Workflow,
)

NOW = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)


def outbox(sent: list[dict[str, Any]]) -> Any:
    def deliver(event: dict[str, Any]) -> None:
        sent.append(event)

    return deliver


def run(db: str) -> list[str]:
    """Set up a course, record an event, list and dispatch; the lines a report would show."""
    lines: list[str] = []
    with Workflow(db, clock=lambda: NOW) as wf:
        course: Course = wf.create_course(
            client="CL-0042", start=date(2027, 1, 4), time=time(11, 0), tz=ZoneInfo("Europe/London"), therapist="th-1"
        )
        after: Course = wf.apply(course.id, "complete_intake", at=datetime(2027, 1, 1, 9, 30, tzinfo=UTC))
        state: CourseState = after.state
        lines.append(f"{after.id} {state.value} v{after.version}")
        summaries: list[CourseSummary] = wf.courses(state="assessment", therapist="th-1")
        lines.extend(f"{s.id} {s.protocol} {s.created_at:%Y-%m-%d}" for s in summaries)
        plan: Plan = wf.plan(course.id)
        lines.append(f"{len(plan.sessions)} sessions, first {plan.sessions[0].start.isoformat()}")
        pending: list[Reminder] = wf.reminders(course=course.id, status="pending", until="2027-01-08T00:00Z")
        lines.append(f"{len(pending)} reminders pending this week")
        agenda: list[AgendaEntry] = wf.agenda(therapist="th-1", start=date(2027, 1, 4))
        lines.extend(f"{a.start:%a %H:%M} session {a.session}" for a in agenda)
        try:
            wf.reminders(status="sent")
        except InvalidInput as exc:
            lines.append(str(exc))
        sent: list[dict[str, Any]] = []
        done = wf.dispatch([outbox(sent)], now=datetime(2027, 1, 1, 10, 0, tzinfo=UTC))
        lines.append(f"dispatched {done.delivered} (+{done.digests} digests)")
        scheduler = BackgroundScheduler(timezone="UTC")
        attached: Attachment = wf.attach(scheduler, sinks=[outbox(sent)], sweep_seconds=60)
        lines.append(f"attached {', '.join(attached.jobs)}")
        detached: Attachment | None = wf.detach()
        lines.append(f"detached {len(detached.jobs) if detached else 0}")
    return lines


if __name__ == "__main__":
    print("\n".join(run(sys.argv[1])))
