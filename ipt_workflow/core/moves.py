"""The session events of SPEC §9, checked against the plan: recording a session (held,
missed, cancelled) when it can be true, moving one session, changing the slot from one
session on, handing the course to another therapist. Each returns the record changes the
event makes (``data_note``: what its history entry keeps, which ``calendar`` reads back),
or raises InvalidInput / Refused naming the session and the times; then nothing changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .calendar import Segment, explicit_start, local_text, wall_start
from .errors import InvalidInput, Refused
from .model import Course, Reminder, Session, SessionStatus, check_reference
from .planner import after_quiet_hours, phase_of_state, reminder_id, sessions, step_start
from .policy import WEEKDAYS, ClinicPolicy
from .protocol import Protocol
from .wallclock import parse_duration, parse_time, zone

RECORDING = {
    "hold_session": SessionStatus.held,
    "miss_session": SessionStatus.missed,
    "cancel_session": SessionStatus.cancelled,
}


def notice(
    course: Course,
    event: str,
    kind: str,
    number: int,
    start: datetime,
    at: datetime,
    policy: ClinicPolicy,
    old_start: datetime | None = None,
) -> Reminder | None:
    """The client's ``session_moved`` / ``session_cancelled`` notice: due at ``at``, or when
    the quiet hours end if that is still before ``start``; None for a session already past.
    Its detail carries the session's local ``start`` (the new one for a move) and, for a
    move, the ``old_start``."""
    if start <= at:
        return None
    due = at
    if policy.quiet_hours is not None:
        quiet = policy.quiet_hours
        later = after_quiet_hours(at, quiet.start_time, quiet.end_time, zone(course.timezone))
        due = later if later < start else at
    rid = reminder_id(course.id, kind, number, start.isoformat(), f"notice:{at.isoformat()}")
    detail = {"start": start.isoformat()}
    if old_start is not None:
        detail["old_start"] = old_start.isoformat()
    return Reminder(
        id=rid, course=course.id, kind=kind, audience="client", due=due, session=number, rule=event, detail=detail
    )


def with_notice(alerts: list[Reminder], told: Reminder) -> list[Reminder]:
    """``alerts`` with ``told`` in place of any earlier notice about the same session (a
    pending one that no longer holds is cancelled when the course is saved)."""
    kept = [a for a in alerts if not (a.kind in NOTICE_KINDS and a.session == told.session)]
    return sorted([*kept, told], key=lambda a: (a.due, a.id))


NOTICE_KINDS = ("session_moved", "session_cancelled")


def _target(course: Course, event: str, number: int | None, all_sessions: list[Session]) -> Session:
    """The planned session ``number`` (default: the earliest planned one)."""
    state = course.state.value
    if number is None:
        target = next((s for s in all_sessions if s.status is SessionStatus.planned), None)
        if target is None:
            raise Refused(event, state, "no planned session left (extend the course first)")
        return target
    found = next((s for s in all_sessions if s.number == number), None)
    if found is None:
        raise Refused(event, state, f"session {number} is not in the plan")
    if found.status is not SessionStatus.planned:
        raise Refused(
            event, state, f"session {number} is not a planned session ({found.status.value}, {local_text(found.start)})"
        )
    return found


def record_session(
    course: Course, event: str, at: datetime, data: dict[str, Any], protocol: Protocol, policy: ClinicPolicy
) -> dict[str, Any]:
    """hold/miss (never before the session's start) or cancel a planned session; a
    cancellation less than the clinic's late_cancel_window before the start is late."""
    all_sessions = sessions(course, protocol, policy)
    target = _target(course, event, data.get("number"), all_sessions)
    status = RECORDING[event]
    tz = zone(course.timezone)
    if status is not SessionStatus.cancelled and at < target.start:
        raise Refused(
            event,
            course.state.value,
            f"session {target.number} starts {local_text(target.start)}; "
            f"it cannot be recorded at {local_text(at.astimezone(tz))}, before it starts",
        )
    phase = phase_of_state(course.state) if status is SessionStatus.held else target.phase
    # therapist and original_start are the calendar's to say (the planner fills them in):
    # the record keeps what the store keeps, so a course reads back equal to itself
    done = target.model_copy(update={"status": status, "phase": phase, "therapist": None, "original_start": None})
    changes: dict[str, Any] = {"sessions": sorted([*course.sessions, done], key=lambda s: s.number)}
    if status is SessionStatus.cancelled:
        window = parse_duration(policy.attendance.late_cancel_window, "late_cancel_window")
        if target.start - at < window:
            changes["data_note"] = {"number": target.number, "late": True}
        told = notice(course, event, "session_cancelled", target.number, target.start, at, policy)
        if told is not None:
            changes["notice"] = told
    return changes


def _where(event: str, name: str) -> str:
    return f"event '{event}' data: {name}"


def _neighbours(all_sessions: list[Session], target: Session) -> tuple[Session | None, Session | None]:
    """The sessions before and after ``target`` in the plan that take place (not cancelled)."""
    i = all_sessions.index(target)
    before = [s for s in all_sessions[:i] if s.status is not SessionStatus.cancelled]
    after = [s for s in all_sessions[i + 1 :] if s.status is not SessionStatus.cancelled]
    return (before[-1] if before else None), (after[0] if after else None)


def _not_before(event: str, course: Course, target: Session, start: datetime, at: datetime) -> None:
    if start < at:
        raise Refused(
            event,
            course.state.value,
            f"session {target.number} cannot move to {local_text(start)}: "
            f"that is before the event's time ({local_text(at.astimezone(zone(course.timezone)))})",
        )


def reschedule(
    course: Course, at: datetime, data: dict[str, Any], protocol: Protocol, policy: ClinicPolicy
) -> dict[str, Any]:
    """One planned session to a new local start, between its neighbours."""
    event, state = "reschedule_session", course.state.value
    tz = zone(course.timezone)
    start = explicit_start(data["start"], tz, _where(event, "start"))
    all_sessions = sessions(course, protocol, policy)
    target = _target(course, event, data["number"], all_sessions)
    n = target.number
    if start == target.start:
        raise Refused(event, state, f"session {n} already starts {local_text(start)}")
    _not_before(event, course, target, start, at)
    end = start + timedelta(minutes=target.duration_minutes)
    for other in all_sessions:
        if other is not target and other.start < end and start < other.end:
            raise Refused(
                event,
                state,
                f"session {n} cannot move to {local_text(start)}: onto session {other.number} "
                f"({other.status.value}, {local_text(other.start)})",
            )
    prev, nxt = _neighbours(all_sessions, target)
    passed = prev if prev is not None and start < prev.end else nxt if nxt is not None and end > nxt.start else None
    if passed is not None:
        raise Refused(
            event,
            state,
            f"session {n} cannot move to {local_text(start)}: past session {passed.number} "
            f"({local_text(passed.start)}); use change_slot to move this and the following sessions",
        )
    note = {"step": target.step, "old_start": target.start.isoformat(), "new_start": start.isoformat()}
    return {"data_note": note, "notice": notice(course, event, "session_moved", n, start, at, policy, target.start)}


def change_slot(
    course: Course, at: datetime, data: dict[str, Any], protocol: Protocol, policy: ClinicPolicy
) -> dict[str, Any]:
    """This and following: session ``from`` to the first such weekday on or after its
    planned date, the later sessions every cadence from there."""
    event, state = "change_slot", course.state.value
    weekday = data["weekday"]
    if weekday not in WEEKDAYS:
        raise InvalidInput(f"{_where(event, 'weekday')}: {weekday!r} is not one of {', '.join(WEEKDAYS)}")
    slot = parse_time(data["time"], _where(event, "time"))
    tz = zone(course.timezone)
    all_sessions = sessions(course, protocol, policy)
    target = _target(course, event, data["from"], all_sessions)
    n = target.number
    day = target.start.date()
    anchor = day + timedelta(days=(WEEKDAYS.index(weekday) - day.weekday()) % 7)
    wall_start(anchor, slot, tz, f"{_where(event, 'time')} on {anchor:%a %Y-%m-%d}")
    start = step_start(
        Segment(target.step, anchor, slot), target.step, timedelta(weeks=protocol.cadence_weeks), policy, tz
    )
    if start is None:
        closed = f"{anchor:%a %Y-%m-%d} is closed and the clinic skips closed days"
        raise Refused(event, state, f"{closed}: choose another day")
    if start == target.start and slot == target.start.time():
        raise Refused(event, state, f"session {n} is already on {weekday} at {slot:%H:%M}")
    _not_before(event, course, target, start, at)
    prev, _ = _neighbours(all_sessions, target)
    if prev is not None and start < prev.end:
        raise Refused(
            event,
            state,
            f"session {n} cannot move to {local_text(start)}: session {prev.number} "
            f"({local_text(prev.start)}) ends after it",
        )
    note = {
        "step": target.step,
        "anchor": anchor.isoformat(),
        "time": f"{slot:%H:%M}",
        "old_start": target.start.isoformat(),
        "new_start": start.isoformat(),
    }
    return {"data_note": note, "notice": notice(course, event, "session_moved", n, start, at, policy, target.start)}


def change_therapist(
    course: Course, at: datetime, data: dict[str, Any], protocol: Protocol, policy: ClinicPolicy
) -> dict[str, Any]:
    """Hand the course to another therapist from session ``from`` (default: the next planned)."""
    event = "change_therapist"
    therapist = check_reference(data["therapist"], _where(event, "therapist"))
    all_sessions = sessions(course, protocol, policy)
    target = _target(course, event, data.get("from"), all_sessions)
    if target.therapist == therapist:
        raise Refused(event, course.state.value, f"session {target.number} is already with therapist {therapist}")
    note = {"step": target.step, "previous": course.therapist, "number": target.number}
    return {"therapist": therapist, "data_note": note}
