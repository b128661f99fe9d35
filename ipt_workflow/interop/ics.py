"""Calendar export (RFC 5545, via icalendar): one VEVENT per session at the course's TZID,
with a VALARM for each client reminder of that session. No client names: summaries carry
the course id and the session number only."""

from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event

from ..core.model import Course, Plan, SessionStatus
from ..core.wallclock import zone


def course_calendar(course: Course, plan: Plan, stamp: datetime) -> bytes:
    """The ICS text of ``course``'s sessions; ``stamp`` is DTSTAMP (the export time)."""
    tz = zone(course.timezone)
    cal = Calendar()
    cal.add("prodid", "-//ipt-workflow//ipt-workflow//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"IPT course {course.id}")
    alarms: dict[int, list[datetime]] = {}
    for r in plan.reminders:
        if r.audience == "client" and r.session is not None and r.status in ("pending", "delivered"):
            alarms.setdefault(r.session, []).append(r.due)
    for s in plan.sessions:
        event = Event()
        event.add("uid", f"{course.id}-session-{s.number}@ipt-workflow")
        event.add("dtstamp", stamp)
        event.add("dtstart", s.start.astimezone(tz).replace(tzinfo=tz))
        event.add("duration", timedelta(minutes=s.duration_minutes))
        event.add("summary", f"IPT session {s.number} ({s.phase})")
        event.add("description", f"Course {course.id}, protocol {course.protocol} {course.protocol_version}")
        cancelled = s.status in (SessionStatus.cancelled, SessionStatus.missed)
        event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        event.add("x-ipt-status", s.status.value)
        if s.status is SessionStatus.planned:
            for due in sorted(alarms.get(s.number, [])):
                alarm = Alarm()
                alarm.add("action", "DISPLAY")
                alarm.add("description", f"IPT session {s.number}")
                # An absolute UTC instant (quiet hours already applied): RFC 5545 wants VALUE=DATE-TIME.
                alarm.add("trigger", due, parameters={"VALUE": "DATE-TIME"})
                event.add_component(alarm)
        cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())
