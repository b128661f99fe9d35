"""Calendar export (RFC 5545, via icalendar): one VEVENT per session at the course's TZID,
with a VALARM for each distinct instant of that session's client reminders. No client
names: summaries carry the course id and the session number only.

A calendar app that imports a newer export updates its copy instead of duplicating it:
each session keeps one UID (course and session number), and its SEQUENCE and LAST-MODIFIED
come from the course's append-only history (``session_revisions``), so they never go back
between two exports and grow whenever the session moves or its status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from icalendar import Alarm, Calendar, Event

from ..core.model import Course, Plan, Session, SessionStatus
from ..core.wallclock import zone

#: Events that can move, record or cancel a session (SPEC §3 and §9). The last three come
#: with the calendar events; naming them before they exist costs nothing.
SESSION_CHANGES = frozenset(
    {
        "hold_session",
        "miss_session",
        "cancel_session",
        "pause",
        "resume",
        "extend",
        "reschedule_session",
        "change_slot",
        "change_therapist",
        "therapist_absence",  # a therapist's absence moved planned sessions (or gave them back)
    }
)
_RECORDS = ("hold_session", "miss_session", "cancel_session")
Revision = tuple[int, datetime]  # (SEQUENCE, LAST-MODIFIED in UTC)


def session_revisions(course: Course) -> tuple[dict[int, Revision], Revision]:
    """(SEQUENCE, LAST-MODIFIED) of the sessions of ``course``, from its history alone.

    SEQUENCE counts the history entries after creation whose event is in SESSION_CHANGES,
    up to and including the one that recorded the session held, missed or cancelled (for a
    planned session: all of them); LAST-MODIFIED is the last such entry's ``at`` (else the
    course's ``created_at``). Returns the values of recorded sessions by number, and the
    value every planned session has. An entry without ``{number}`` recorded the earliest
    session then planned: the earliest recorded session not yet matched to an entry."""
    unmatched = [s.number for s in sorted(course.sessions, key=lambda s: (s.start, s.number))]
    count, last = 0, course.created_at.astimezone(UTC)
    recorded: dict[int, Revision] = {}
    for entry in course.history:
        if entry.event not in SESSION_CHANGES:
            continue
        count, last = count + 1, entry.at.astimezone(UTC)
        if entry.event in _RECORDS and unmatched:
            number = entry.data.get("number")
            number = number if number in unmatched else unmatched[0]
            unmatched.remove(number)
            recorded[number] = (count, last)
    return recorded, (count, last)


def course_calendar(
    course: Course, plan: Plan, stamp: datetime, dropped: tuple[list[Session], datetime | None] = ([], None)
) -> bytes:
    """The ICS text of ``course``'s sessions; ``stamp`` is DTSTAMP (the export time).
    ``dropped`` (``planner.dropped_sessions``): the sessions a withdrawal or completion took
    off, written as cancelled (a SEQUENCE higher than before, LAST-MODIFIED the finish), so a
    calendar that imported an earlier export takes them off too."""
    cal = new_calendar(f"IPT course {course.id}")
    for event in session_events(course, plan, stamp):
        cal.add_component(event)
    gone, when = dropped
    if gone and when is not None:
        count = session_revisions(course)[1][0]
        for s in gone:
            cal.add_component(_session_event(course, s, (count + 1, when.astimezone(UTC)), stamp))
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


def new_calendar(name: str) -> Calendar:
    """An empty VCALENDAR named ``name``; add VEVENTs, then ``add_missing_timezones()``."""
    cal = Calendar()
    cal.add("prodid", "-//ipt-workflow//ipt-workflow//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    return cal


def session_events(course: Course, plan: Plan, stamp: datetime) -> list[Event]:
    """One VEVENT per session of ``plan`` (``course``'s), in plan order, with its SEQUENCE,
    LAST-MODIFIED and, on a planned session, one VALARM per distinct client reminder instant."""
    alarms: dict[int, set[datetime]] = {}
    for r in plan.reminders:
        if r.audience == "client" and r.session is not None and r.status in ("pending", "delivered"):
            alarms.setdefault(r.session, set()).add(r.due.astimezone(UTC))  # one VALARM per instant
    recorded, planned = session_revisions(course)
    events = []
    for s in plan.sessions:
        event = _session_event(course, s, recorded.get(s.number, planned), stamp)
        if s.status is SessionStatus.planned:
            for due in sorted(alarms.get(s.number, ())):
                alarm = Alarm()
                alarm.add("action", "DISPLAY")
                alarm.add("description", f"IPT session {s.number}")
                # An absolute UTC instant (quiet hours already applied): RFC 5545 wants VALUE=DATE-TIME.
                alarm.add("trigger", due, parameters={"VALUE": "DATE-TIME"})
                event.add_component(alarm)
        events.append(event)
    return events


def group_events(schedule: Course, sessions: list[Session], stamp: datetime) -> list[Event]:
    """One VEVENT per group session: ``schedule`` is the group read as a course (its id, zone,
    protocol and history; ``core.groups.schedule_course``). No client and no member is named,
    and no alarm is set (each member's reminders are theirs); the UID is the group's id and
    the session number, SEQUENCE and LAST-MODIFIED come from the group's history."""
    recorded, planned = session_revisions(schedule)
    return [_session_event(schedule, s, recorded.get(s.number, planned), stamp, group=True) for s in sessions]


def group_calendar(schedule: Course, sessions: list[Session], stamp: datetime) -> bytes:
    """The ICS text of a group's sessions (``group_events``)."""
    cal = new_calendar(f"IPT group {schedule.id}")
    for event in group_events(schedule, sessions, stamp):
        cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


def _session_event(course: Course, s: Session, revision: Revision, stamp: datetime, group: bool = False) -> Event:
    tz = zone(course.timezone)
    event = Event()
    event.add("uid", f"{course.id}-session-{s.number}@ipt-workflow")
    event.add("dtstamp", stamp)
    event.add("sequence", revision[0])
    event.add("last-modified", revision[1])
    event.add("dtstart", s.start.astimezone(tz).replace(tzinfo=tz))
    event.add("duration", timedelta(minutes=s.duration_minutes))
    if group:
        event.add("summary", f"IPT group session {s.number}")
        event.add("description", f"Group {course.id}, protocol {course.protocol} {course.protocol_version}")
    else:
        event.add("summary", f"IPT session {s.number} ({s.phase})")
        event.add("description", f"Course {course.id}, protocol {course.protocol} {course.protocol_version}")
    cancelled = s.status in (SessionStatus.cancelled, SessionStatus.missed)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("x-ipt-status", s.status.value)
    return event
