"""Group IPT (SPEC §10): one schedule for a cohort, a course for each member. Pure.

The group's sessions are planned once, by the same planner and calendar as a course: the
group is read as a course of its own (``schedule_course``: its start, slot, therapist, the
group sessions only, its calendar history and its therapist's absences) under the protocol
without its individual sessions (``group_protocol``). Group events (hold, cancel,
reschedule, change_slot, change_therapist) are applied to that course by the lifecycle, so
they are checked and recorded as for any course. Each member's planner then takes the
group's schedule (``GroupPlan``) as the times of its group sessions, by number: a member's
miss, pause or withdrawal never moves the group, and a paused member rejoins the group's
remaining sessions. The pre-group individual sessions are the member's own
(``free_pre_starts`` finds them in the therapist's free working hours).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .calendar import local_text
from .clashes import Booking
from .errors import InvalidInput, Refused, mentioning
from .lifecycle import apply, new_course, stays, validate_data
from .model import (
    ACTIVE_STATES,
    Absence,
    Course,
    CourseState,
    Effects,
    Group,
    GroupPlan,
    GroupSlot,
    GroupState,
    HistoryEntry,
    Plan,
    Reminder,
    Session,
    SessionStatus,
    check_reference,
)
from .moves import notice, with_notice
from .planner import plan, reminder_id, sessions
from .policy import ClinicPolicy
from .protocol import Bounds, Phases, Protocol, SessionCounts
from .wallclock import check_year, local_instant, zone

#: ``ipt group event`` events (SPEC §10).
GROUP_EVENTS = ("hold_session", "cancel_session", "reschedule_session", "change_slot", "change_therapist", "complete")
#: Days before the group's first session in which pre-group sessions are looked for.
PRE_WINDOW_DAYS = 14
PRE_STEP = timedelta(minutes=15)
MAX_GROUP_SIZE = 100

_PROTOCOLS: dict[int, tuple[Protocol, Protocol]] = {}


def group_protocol(protocol: Protocol) -> Protocol:
    """The protocol of the group's own schedule: its group sessions only, no rules, no
    client reminders (members get those). Raises InvalidInput for a protocol without
    ``format: group``."""
    if protocol.format != "group":
        raise InvalidInput(
            f"protocol: {protocol.id} {protocol.version} is not a group protocol (format: {protocol.format})"
        )
    cached = _PROTOCOLS.get(id(protocol))
    if cached is not None and cached[0] is protocol:
        return cached[1]
    first = protocol.individual_first
    counts = protocol.sessions
    gp = protocol.model_copy(
        update={
            "individual_first": 0,
            "sessions": SessionCounts.model_construct(
                min=max(1, counts.min - first), planned=max(1, counts.planned - first), max=max(1, counts.max - first)
            ),
            "phases": Phases.model_construct(
                engagement=0, assessment=Bounds.model_construct(min=0, max=0), termination=protocol.phases.termination
            ),
            "reschedule_missed": False,
            "rules": [],
            "measures": [],
            "reminders": [],
            "follow_ups": [],
            "guards": {},
        }
    )
    gp._guards = {}  # the group's own schedule takes every calendar event its state allows
    _PROTOCOLS[id(protocol)] = (protocol, gp)
    return gp


def new_group(
    protocol: Protocol,
    *,
    group_id: str,
    therapist: str,
    cotherapist: str | None,
    start: date,
    slot: time,
    timezone: str,
    min_size: int,
    max_size: int,
    now: datetime,
) -> Group:
    """A new group, checked (names the bad field). Raises InvalidInput."""
    group_protocol(protocol)
    zone(timezone)
    check_reference(group_id, "group_id")
    check_reference(therapist, "therapist")
    if cotherapist is not None:
        check_reference(cotherapist, "cotherapist")
        if cotherapist == therapist:
            raise mentioning(InvalidInput("cotherapist: the same as therapist"), "therapist")
    if min_size < 1:
        raise InvalidInput(f"min: {min_size} is less than 1")
    if max_size > MAX_GROUP_SIZE:
        raise InvalidInput(f"max: {max_size} is more than {MAX_GROUP_SIZE}")
    if min_size > max_size:
        raise mentioning(InvalidInput(f"min: {min_size} is more than max {max_size}"), "max")
    check_year(start, "start")
    at = now.astimezone(UTC)
    entry = HistoryEntry.model_validate({"event": "create", "at": at, "from": None, "to": CourseState.intervention})
    return Group(
        id=group_id,
        protocol=protocol.id,
        protocol_version=protocol.version,
        therapist=therapist,
        cotherapist=cotherapist,
        timezone=timezone,
        start=start,
        slot=slot,
        min=min_size,
        max=max_size,
        created_at=at,
        history=[entry],
    )


def schedule_course(group: Group, protocol: Protocol) -> Course:
    """The group's schedule read as a course (client: the group's id), for the planner."""
    state = CourseState.intervention if group.state is GroupState.active else CourseState.completed
    return Course.model_construct(
        schema_version=1,
        id=group.id,
        client=group.id,
        therapist=group.therapist,
        protocol=group.protocol,
        protocol_version=group.protocol_version,
        timezone=group.timezone,
        start=group.start,
        slot=group.slot,
        state=state,
        focus=[],
        current_focus=None,
        foci_worked=[],
        planned_sessions=group_protocol(protocol).sessions.planned,
        sessions=list(group.sessions),
        measurements=[],
        pauses=[],
        alerts=[],
        fired_rules=[],
        completed_at=None,
        created_at=group.created_at,
        history=list(group.history),
        version=group.version,
        absences=list(group.absences),
        group=None,
        group_plan=None,
    )


def group_sessions(group: Group, protocol: Protocol, policy: ClinicPolicy) -> list[Session]:
    """Every group session, recorded and planned, in time order (numbers from 1)."""
    return sessions(schedule_course(group, protocol), group_protocol(protocol), policy)


def group_plan(group: Group, protocol: Protocol, policy: ClinicPolicy) -> GroupPlan:
    """The group's schedule as its members' planners take it."""
    return plan_of(group, group_sessions(group, protocol, policy), protocol.individual_first)


def plan_of(group: Group, all_sessions: Sequence[Session], individual_first: int) -> GroupPlan:
    return GroupPlan(
        group=group.id,
        individual_first=individual_first,
        sessions=[
            GroupSlot(
                number=s.number,
                start=s.start,
                status=s.status,
                step=s.step,
                therapist=s.therapist,
                original_start=s.original_start,
            )
            for s in all_sessions
        ],
    )


def group_event(
    group: Group, event: str, at: datetime, protocol: Protocol, policy: ClinicPolicy, data: Mapping[str, Any] | None
) -> tuple[Group, dict[str, Any]]:
    """Apply a group-level event to the group's own schedule. Returns the new group and the
    data its history entry keeps (for ``hold_session``, the group session's ``number``; the
    caller adds ``present`` and ``absent``). Raises UnknownName, InvalidInput or Refused."""
    if event not in GROUP_EVENTS:
        raise InvalidInput(f"unknown group event '{event}' (group events: {', '.join(GROUP_EVENTS)})")
    if group.state is not GroupState.active:
        raise Refused(event, group.state.value, f"group {group.id} is {group.state.value}")
    data = dict(data or {})
    absent = data.pop("absent", None) if event == "hold_session" else None
    if absent is not None and (not isinstance(absent, list) or not all(isinstance(a, str) for a in absent)):
        raise InvalidInput(f"event '{event}' data: absent: must be a list of course ids")
    if event == "complete":
        validate_data(event, data)
        left = [s for s in group_sessions(group, protocol, policy) if s.status is SessionStatus.planned]
        if left:
            raise Refused(
                event,
                group.state.value,
                f"group session {left[0].number} ({local_text(left[0].start)}) is still planned",
            )
        entry = HistoryEntry.model_validate(
            {"event": event, "at": at, "from": CourseState.intervention, "to": CourseState.completed, "data": {}}
        )
        return group.model_copy(update={"state": GroupState.completed, "history": [*group.history, entry]}), {}
    course = schedule_course(group, protocol)
    try:
        after, _ = apply(course, event, at, group_protocol(protocol), policy, data)
    except Refused as exc:  # the group's state, not its schedule's
        raise Refused(event, group.state.value, exc.reason) from None
    entry = after.history[len(course.history)]
    note = dict(entry.data)
    if event in ("hold_session", "cancel_session") and "number" not in note:
        done = [s for s in after.sessions if s not in course.sessions]
        note["number"] = done[0].number
    history = [*group.history, entry.model_copy(update={"data": note})]
    return group.model_copy(update={"sessions": after.sessions, "history": history}), note


def with_attendance(group: Group, present: list[str], absent: list[str]) -> Group:
    """The group with its last history entry (a hold) naming who came and who did not."""
    last = group.history[-1]
    entry = last.model_copy(update={"data": {**last.data, "present": present, "absent": absent}})
    return group.model_copy(update={"history": [*group.history[:-1], entry]})


def attendance(group: Group) -> dict[int, tuple[list[str], list[str]]]:
    """(present, absent) course ids of each held group session, by number."""
    out: dict[int, tuple[list[str], list[str]]] = {}
    for h in group.history:
        if h.event == "hold_session" and "number" in h.data:
            out[int(h.data["number"])] = (list(h.data.get("present", [])), list(h.data.get("absent", [])))
    return out


def member_number(protocol: Protocol, group_number: int) -> int:
    """The member course's session number of group session ``group_number``."""
    return protocol.individual_first + group_number


def active(states: Mapping[str, CourseState]) -> int:
    return sum(1 for s in states.values() if s in ACTIVE_STATES)


def size_review(course: Course, group: Group, before: int, after: int, at: datetime) -> Reminder | None:
    """The therapist's ``group_size_review`` alert (on ``course``, the member whose change
    took the group below its minimum), or None when the count did not fall below ``min``."""
    if not (after < group.min <= before):
        return None
    rule = "group.size"
    return Reminder(
        id=reminder_id(course.id, "group_size_review", None, at.isoformat(), f"rule:{rule}"),
        course=course.id,
        kind="group_size_review",
        audience="therapist",
        due=at,
        session=None,
        rule=rule,
        detail={"group": group.id, "active": str(after), "min": str(group.min)},
    )


def free_pre_starts(
    group: Group,
    protocol: Protocol,
    policy: ClinicPolicy,
    booked: Sequence[Booking],
    now: datetime,
    count: int,
    absences: Sequence[Absence] = (),
    busy: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[datetime]:
    """The first ``count`` starts in the ``PRE_WINDOW_DAYS`` days before the group's first
    session where a pre-group session of the group's therapist fits inside working hours on
    a working day they are not away, after ``now``, clear of ``booked`` (with the clinic's
    buffer) and of each other (``busy``: the therapist's bookings as (start, end with the
    buffer), instead of ``booked``). Raises InvalidInput when there are fewer."""
    tz = zone(group.timezone)
    length = timedelta(minutes=protocol.duration_minutes)
    buffer = policy.buffer()
    if busy is None:
        busy = [(b.start, b.end) for b in booked if b.therapist == group.therapist]
    mine = sorted(busy)
    hours = policy.working_hours
    out: list[datetime] = []
    day = group.start - timedelta(days=PRE_WINDOW_DAYS)
    while day < group.start and len(out) < count:
        away = any(a.covers(group.therapist, day) for a in absences)
        if policy.is_working_day(day) and not away:
            t = local_instant(day, hours.start_time, tz)
            close = local_instant(day, hours.end_time, tz)
            while t + length <= close and len(out) < count:
                u0, u1 = t.astimezone(UTC), (t + length + buffer).astimezone(UTC)
                blocked = max((e for s, e in mine if s < u1 and u0 < e), default=None)
                if u0 > now and blocked is None:
                    out.append(t)
                    mine.append((u0, u1))
                    t += length + buffer
                elif blocked is not None:  # every step that starts before that booking ends clashes with it
                    t += PRE_STEP * max(1, -((u0 - blocked) // PRE_STEP))
                else:
                    t += PRE_STEP
        day += timedelta(days=1)
    if len(out) < count:
        raise mentioning(InvalidInput(
            f"pre: therapist {group.therapist} has no free {protocol.duration_minutes}-minute slot in working hours "
            f"in the {PRE_WINDOW_DAYS} days before the group starts ({group.start}); give pre instants"
        ), "pre")  # fmt: skip
    return out


def member_course(
    group: Group,
    protocol: Protocol,
    policy: ClinicPolicy,
    *,
    client: str,
    course_id: str,
    starts: Sequence[datetime],
    all_sessions: Sequence[Session],
    now: datetime,
) -> tuple[Course, Plan]:
    """A new member course of ``group`` (its pre-group sessions at ``starts``) and its plan."""
    course = new_course(
        protocol, policy, course_id=course_id, client=client, therapist=group.therapist,
        start=group.start, slot=group.slot, timezone=group.timezone, now=now,
    )  # fmt: skip
    created = course.history[0].model_copy(update={"data": {"group": group.id, "pre": [s.isoformat() for s in starts]}})
    gp = plan_of(group, all_sessions, protocol.individual_first)
    course = course.model_copy(update={"group": group.id, "group_plan": gp, "history": [created]})
    return course, plan(course, protocol, policy)


def regrouped(
    before: Course,
    gp: GroupPlan,
    protocol: Protocol,
    policy: ClinicPolicy,
    at: datetime,
    changed: tuple[Course, list[HistoryEntry]] | None,
) -> tuple[Course, Plan, Effects]:
    """A member after a group change: ``changed`` (the course after its own event and the
    history it wrote), or nothing but the group's new schedule ``gp``; its plan, and the
    reminders added and cancelled between the plan before and after."""
    new, history = changed if changed is not None else (before, [])
    new = new.model_copy(update={"group_plan": gp})
    old = plan(before, protocol, policy).reminders
    p = plan(new, protocol, policy)
    old_ids = {r.id for r in old}
    new_ids = {r.id for r in p.reminders}
    effects = Effects(
        added=[r for r in p.reminders if r.id not in old_ids],
        cancelled=[r.id for r in old if r.id not in new_ids and not stays(r, at, new)],
        history=history,
    )
    return new, p, effects


def members_event(
    group: Group,
    event: str,
    note: Mapping[str, Any],
    members: Sequence[Course],
    absent: Sequence[str],
    moved: Mapping[int, tuple[datetime, datetime]],
    at: datetime,
    protocol: Protocol,
    policy: ClinicPolicy,
) -> tuple[list[tuple[Course, Course | None, list[HistoryEntry]]], list[str], list[str]]:
    """What a group event does to each member (withdrawn and completed ones: nothing):
    ``(before, after or None when only the group's schedule changes for it, history)``
    each, and the course ids present and absent (for ``hold_session``). ``hold_session``:
    the present active members hold it, the absent ones miss it; ``cancel_session`` cancels
    it; ``complete`` completes members in termination; a move (``reschedule_session``,
    ``change_slot``, ``change_therapist``) is noted in each member's history and each moved
    group session told to the client (``session_moved``)."""
    out: list[tuple[Course, Course | None, list[HistoryEntry]]] = []
    present_ids: list[str] = []
    absent_ids: list[str] = []
    for m in members:
        if m.state in (CourseState.withdrawn, CourseState.completed):
            continue
        if event in ("hold_session", "cancel_session"):
            n = member_number(protocol, int(note["number"]))
            if m.state not in ACTIVE_STATES or any(s.number == n for s in m.sessions):
                out.append((m, None, []))
                continue
            ev = event
            if event == "hold_session":
                ev = "miss_session" if m.id in absent else "hold_session"
                (absent_ids if m.id in absent else present_ids).append(m.id)
            new, eff = apply(m, ev, at, protocol, policy, {"number": n})
            out.append((m, new, eff.history))
        elif event == "complete":
            if m.state is CourseState.termination:
                new, eff = apply(m, "complete", at, protocol, policy)
                out.append((m, new, eff.history))
        else:
            entry = HistoryEntry.model_validate(
                {"event": f"group_{event}", "at": at, "from": m.state, "to": m.state,
                 "data": {"group": group.id, **note}}
            )  # fmt: skip
            new = m.model_copy(update={"history": [*m.history, entry]})
            for number, (old, start) in moved.items():
                told = notice(new, event, "session_moved", member_number(protocol, number), start, at, policy, old)
                if told is not None:
                    new = new.model_copy(update={"alerts": with_notice(new.alerts, told)})
            out.append((m, new, [entry]))
    return out, present_ids, absent_ids


def moves(before: Sequence[Session], after: Sequence[Session]) -> dict[int, tuple[datetime, datetime]]:
    """The group sessions planned at another time after a change: number: (old, new start)."""
    was = {s.number: s.start for s in before}
    return {s.number: (was[s.number], s.start) for s in after
            if s.number in was and s.status is SessionStatus.planned and was[s.number] != s.start}  # fmt: skip
