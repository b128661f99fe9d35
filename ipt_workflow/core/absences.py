"""A therapist's absence added or removed (SPEC §9): the course's plan with the new set of
absences, each planned session the change moved told to the client (``session_moved``), and
the history entry that says why. Pure: the caller gives the absences and ``at``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from .clashes import Booking, first_overlap
from .lifecycle import stays
from .model import Absence, Course, Effects, HistoryEntry, Plan, Session, SessionStatus
from .moves import notice, with_notice
from .planner import away_of, plan
from .policy import ClinicPolicy
from .protocol import Protocol

#: The history entry an absence change writes on each course it concerns.
ABSENCE_EVENT = "therapist_absence"


def change_absences(
    course: Course,
    protocol: Protocol,
    policy: ClinicPolicy,
    absences: list[Absence],
    at: datetime,
    note: dict[str, str],
    busy: Sequence[Booking] = (),
    buffer: timedelta = timedelta(0),
) -> tuple[Course, Plan, Effects, int]:
    """The course under ``absences`` (its therapists' absences after the change): the new
    course, its plan, the effects to store and how many planned sessions moved. ``note``
    is the history entry's data (the absence and whether it was added or removed). A
    session the absence moves onto one of ``busy`` (the therapist's other bookings, sorted
    by start) goes to the next working day at its time when the therapist is free then,
    before the series' next date (a ``reschedule_session`` entry tied to the absence)."""
    before = plan(course, protocol, policy)
    entry = HistoryEntry.model_validate(
        {"event": ABSENCE_EVENT, "at": _after_last(course, at), "from": course.state, "to": course.state, "data": note}
    )
    changed = course.model_copy(update={"absences": absences, "history": [*course.history, entry]})
    after = plan(changed, protocol, policy)
    if note.get("change") == "added":
        changed, after = _dodge(changed, protocol, policy, after, note, busy, buffer, at)
    changed, after = _keep_apart(changed, protocol, policy, before, after, at)
    was = {s.number: s for s in before.sessions if s.status is SessionStatus.planned}
    alerts = list(course.alerts)
    moved = 0
    for s in after.sessions:
        old = was.get(s.number)
        if s.status is not SessionStatus.planned or old is None or old.start == s.start:
            continue
        moved += 1
        told = notice(course, ABSENCE_EVENT, "session_moved", s.number, s.start, at, policy, old.start)
        if told is not None:
            alerts = with_notice(alerts, told)
    new = changed.model_copy(update={"alerts": alerts})
    final = plan(new, protocol, policy)
    old_ids = {r.id for r in before.reminders}
    new_ids = {r.id for r in final.reminders}
    effects = Effects(
        added=[r for r in final.reminders if r.id not in old_ids],
        cancelled=[r.id for r in before.reminders if r.id not in new_ids and not stays(r, at, new)],
        history=new.history[len(course.history) :],
    )
    return new, final, effects, moved


def _dodge(
    course: Course,
    protocol: Protocol,
    policy: ClinicPolicy,
    current: Plan,
    note: dict[str, str],
    busy: Sequence[Booking],
    buffer: timedelta,
    at: datetime,
) -> tuple[Course, Plan]:
    therapist = note["therapist"]
    away = away_of(course, therapist)
    cadence = timedelta(weeks=protocol.cadence_weeks)
    entries: list[HistoryEntry] = []
    taken = [s for s in current.sessions if s.status is SessionStatus.planned]
    for s in taken:
        if s.therapist != therapist or s.original_start is None or s.start <= at or s.step in _moved_steps(course):
            continue
        if not _clashes(therapist, s, s.start, busy, buffer) and not _overlaps(s, s.start, current.sessions):
            continue
        day, last = s.start.date() + timedelta(days=1), s.original_start.date() + cadence
        while day < last:
            if policy.is_working_day(day) and (away is None or not away(day)):
                tz = s.start.tzinfo
                start = datetime.combine(day, s.start.time(), tz).astimezone(UTC).astimezone(tz)
                free = not _clashes(therapist, s, start, busy, buffer) and _fits(s, start, taken)
                if start.time() == s.start.time() and free:
                    data = {
                        "number": s.number,
                        "step": s.step,
                        "new_start": start.isoformat(),
                        "old_start": s.start.isoformat(),
                        "absence": note["absence"],
                    }
                    entry = {"event": "reschedule_session", "at": _after_last(course, at), "from": course.state,
                             "to": course.state, "data": data}  # fmt: skip
                    entries.append(HistoryEntry.model_validate(entry))
                    break
            day += timedelta(days=1)
    if not entries:
        return course, current
    course = course.model_copy(update={"history": [*course.history, *entries]})
    return course, plan(course, protocol, policy)


def _keep_apart(
    course: Course, protocol: Protocol, policy: ClinicPolicy, before: Plan, current: Plan, at: datetime
) -> tuple[Course, Plan]:
    """A series session the change put onto another session of the course (one the user
    moved there while the absence stood, say) stays where it was before the change: a
    ``reschedule_session`` entry (``kept``) pins it, so the course's sessions never overlap."""
    moved = _moved_steps(course)
    was = {s.number: s for s in before.sessions if s.status is SessionStatus.planned}
    entries: list[HistoryEntry] = []
    for s in current.sessions:
        if s.status is not SessionStatus.planned or s.step in moved or s.start <= at:
            continue
        old = was.get(s.number)
        if not _overlaps(s, s.start, current.sessions) or old is None or old.start == s.start:
            continue
        if _overlaps(s, old.start, current.sessions):
            continue
        data = {"number": s.number, "step": s.step, "new_start": old.start.isoformat(),
                "old_start": s.start.isoformat(), "kept": True}  # fmt: skip
        entry = {"event": "reschedule_session", "at": _after_last(course, at), "from": course.state,
                 "to": course.state, "data": data}  # fmt: skip
        entries.append(HistoryEntry.model_validate(entry))
    if not entries:
        return course, current
    course = course.model_copy(update={"history": [*course.history, *entries]})
    return course, plan(course, protocol, policy)


def _overlaps(s: Session, start: datetime, sessions: Sequence[Session]) -> bool:
    """``s`` at ``start`` overlaps another session of the course that takes place."""
    end = start + timedelta(minutes=s.duration_minutes)
    return any(
        o.number != s.number and o.status is not SessionStatus.cancelled and o.start < end and start < o.end
        for o in sessions
    )


def _moved_steps(course: Course) -> set[int]:
    return {int(h.data["step"]) for h in course.history if h.event == "reschedule_session" and "step" in h.data}


def _clashes(therapist: str, s: Session, start: datetime, busy: Sequence[Booking], buffer: timedelta) -> bool:
    utc = start.astimezone(UTC)
    end = utc + timedelta(minutes=s.duration_minutes) + buffer
    probe = Booking(utc, end, therapist, "", s.number, start.isoformat(), s.duration_minutes, "")
    return first_overlap(busy, probe) is not None


def _fits(s: Session, start: datetime, taken: Sequence[Session]) -> bool:
    """``start`` keeps ``s`` apart from the course's other sessions and in its place among them."""
    end = start + timedelta(minutes=s.duration_minutes)
    for other in taken:
        if other is s:
            continue
        if other.start < s.start and other.end > start:
            return False
        if other.start > s.start and other.start < end:
            return False
    return True


def _after_last(course: Course, at: datetime) -> datetime:
    return max(at, course.history[-1].at) if course.history else at
