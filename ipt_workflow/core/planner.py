"""The session planner: a course's recorded past plus the protocol and clinic policy give
every future session and every reminder. Pure: no clock, no I/O.

Slots are cadence steps from the course's first date at its local wall-clock time
(RFC 5545 rules across daylight saving, see ``wallclock``). A step on a holiday or closure
moves to the next working day before the next step, or is skipped, by clinic policy; a
step inside a finished pause is skipped, so the plan shifts by the pause. Missed and
cancelled sessions keep their slot and are not counted: one more slot is used at the end,
never past the protocol's maximum number of session entries. The series, single moves and
handovers come from ``calendar`` (SPEC §9), keyed by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from .calendar import Calendar, Segment, calendar_of
from .errors import InvalidInput
from .model import (
    Course,
    CourseState,
    Plan,
    Reminder,
    Session,
    SessionStatus,
)
from .policy import ClinicPolicy
from .protocol import Protocol
from .wallclock import check_year, format_duration, local_instant, parse_duration, zone

DEFAULT_LEADS = {"termination_prep": [timedelta(hours=48)]}
_PHASE_OF_STATE = {
    CourseState.intake: "intake",
    CourseState.assessment: "assessment",
    CourseState.intervention: "intervention",
    CourseState.retargeting: "intervention",
    CourseState.termination: "termination",
}
_COUNTED = (SessionStatus.held, SessionStatus.planned)
_LAST_SLOT_DAY = date(9000, 1, 1)  # far past any real plan, far enough from date.max


def phase_of_state(state: CourseState) -> str:
    """The session phase a session held in ``state`` belongs to."""
    return _PHASE_OF_STATE.get(state, "intervention")


def reminder_id(course: str, kind: str, session: int | None, start: str, lead: str) -> str:
    """The stable id (and idempotency key) of a reminder: a digest of
    (course, kind, session number, planned start, lead)."""
    digest = hashlib.sha256(f"{course}|{kind}|{session}|{start}|{lead}".encode()).hexdigest()
    return f"rem_{digest[:24]}"


@dataclass(frozen=True)
class Counts:
    """Arithmetic facts about a course's sessions, shared by the planner and the rules."""

    held: int
    missed: int
    cancelled: int
    recorded: int
    future: int
    wanted: int
    intake_held: int
    assessment_held: int
    consecutive_missed: int

    @property
    def limited(self) -> bool:
        """A session the contract wants could not be planned: the maximum was reached."""
        return self.future < self.wanted


CANCELLATION = "cancel_session"


def late_cancellations(course: Course) -> frozenset[int]:
    """Numbers of the sessions cancelled less than the clinic's late_cancel_window before
    their start (the cancellation's history entry says so)."""
    return frozenset(
        int(h.data["number"]) for h in course.history if h.event == CANCELLATION and h.data.get("late") is True
    )


def counts(course: Course, protocol: Protocol) -> Counts:
    """Session counts of ``course`` and how many future sessions the plan holds."""
    held = missed = cancelled = intake = assessment = run = 0
    late = late_cancellations(course) if course.sessions and course.history else frozenset()
    for s in course.sessions:
        if s.status is SessionStatus.held:
            held += 1
            run = 0
            intake += s.phase == "intake"
            assessment += s.phase == "assessment"
        elif s.status is SessionStatus.missed:
            missed += 1
            run += 1
        else:
            cancelled += 1
            run += s.number in late  # a late cancellation counts as a miss for attendance
    recorded = len(course.sessions)
    if course.state in (CourseState.completed, CourseState.withdrawn):
        wanted = 0
    elif protocol.reschedule_missed:
        wanted = max(0, course.planned_sessions - held)
    else:
        wanted = max(0, course.planned_sessions - recorded)
    room = max(0, protocol.sessions.max - recorded)
    future = min(wanted, room)
    if course.group_plan is not None and future:  # a member: only the group's sessions left
        future = min(future, len(member_slots(course)))
    return Counts(held, missed, cancelled, recorded, future, wanted, intake, assessment, run)


MemberSlot = tuple[int, int, datetime, str, datetime | None]


def pre_starts(course: Course) -> list[datetime]:
    """The starts of a group member's individual pre-group sessions (its ``create`` entry keeps them)."""
    for h in course.history[:1]:
        return [datetime.fromisoformat(str(x)) for x in h.data.get("pre", ())]
    return []


def member_slots(course: Course) -> list[MemberSlot]:
    """(number, step, local start, therapist, original start) of each session a group member
    can still have: its own pre-group sessions not yet recorded, then every group session the
    group has not yet recorded (held or cancelled) and the member has not. A group session the
    group held while the member was paused is gone for the member: they rejoin the rest."""
    gp = course.group_plan
    assert gp is not None
    tz = zone(course.timezone)
    recorded = {s.number for s in course.sessions}
    out: list[MemberSlot] = []
    for i, start in enumerate(pre_starts(course)[: gp.individual_first], 1):
        if i not in recorded:
            out.append((i, i - 1 - gp.individual_first, start.astimezone(tz), course.therapist, None))
    for g in gp.sessions:
        n = gp.individual_first + g.number
        if g.status is SessionStatus.planned and n not in recorded:
            out.append((n, g.step, g.start.astimezone(tz), g.therapist or course.therapist, g.original_start))
    return out


def sessions(course: Course, protocol: Protocol, policy: ClinicPolicy) -> list[Session]:
    """Every session of the course: the recorded ones, then the projected ones, in order."""
    c = counts(course, protocol)
    tz = zone(course.timezone)
    cal = calendar_of(course)
    cadence = timedelta(weeks=protocol.cadence_weeks)
    away = _away_by_therapist(course)
    recorded = sorted((_recorded(s, cal, policy, tz, cadence, away) for s in course.sessions), key=_in_time_order)
    member = None
    if course.group_plan is not None:
        recorded = _member_recorded(course, recorded)
        member = member_slots(course)
    if c.future == 0:
        return recorded
    occupied = {s.step for s in recorded}
    happened = [s.step for s in recorded if s.status is not SessionStatus.cancelled]
    first_step = max(happened) + 1 if happened else 0
    used_numbers = {s.number for s in recorded}
    floor = max((s.number for s in recorded if s.status is not SessionStatus.cancelled), default=0)
    numbers = (n for n in _count_from(floor + 1) if n not in used_numbers)

    state = course.state
    if state is CourseState.paused and course.pauses:
        state = course.pauses[-1].resume_to
    # Position k of a session in the course: held sessions count, and where missed ones are
    # not made up (a group meets anyway) every entry holds its position.
    base = c.held if protocol.reschedule_missed else c.recorded
    total = base + c.future
    window_start = total - protocol.phases.termination  # positions after this: termination
    engagement, assess_max = protocol.phases.engagement, protocol.phases.assessment.max
    rem_intake = rem_assess = 0
    if protocol.reschedule_missed:
        if state is CourseState.intake:
            rem_intake = max(0, engagement - c.intake_held)
        if state in (CourseState.intake, CourseState.assessment):
            rem_assess = max(0, assess_max - c.assessment_held)
    elif state in (CourseState.intake, CourseState.assessment):
        if state is CourseState.intake:
            rem_intake = max(0, engagement - base)
        rem_assess = max(0, engagement + assess_max - max(base, engagement))
    middle = (total + 1) // 2

    out = list(recorded)
    # Where the series may not put a session: the times of recorded sessions and of sessions
    # moved one by one (a series slot on one of them is passed over, as a closed day is).
    length = timedelta(minutes=protocol.duration_minutes)
    held = [(s.start, s.end) for s in recorded if s.status is not SessionStatus.cancelled]
    busy = held + [(m, m + length) for step, m in cal.moves.items() if step not in occupied]
    slots = _slots(course, cal, protocol, policy, tz, first_step, occupied, away, busy)
    for j in range(c.future):
        if member is not None:
            number, step, start, therapist, original = member[j]
        else:
            step, start, original = next(slots)
            number, therapist = next(numbers), cal.therapist(step)
        k = base + j + 1
        if k > window_start or state is CourseState.termination:
            phase = "termination"
        elif j < rem_intake:
            phase = "intake"
        elif j < rem_intake + rem_assess:
            phase = "assessment"
        else:
            phase = "intervention"
        if member is not None:  # a member's session is individual by its number, not its position
            k = number if number <= protocol.individual_first else max(k, protocol.individual_first + 1)
        session = _session(protocol, number, phase, start, step, k, total, middle, therapist)
        if original is not None:
            session = session.model_copy(update={"original_start": original})
        out.append(session)
    out.sort(key=_in_time_order)
    return out


def _member_recorded(course: Course, recorded: list[Session]) -> list[Session]:
    """A member's recorded group sessions with the group's therapist for them."""
    gp = course.group_plan
    assert gp is not None
    who = {gp.individual_first + g.number: g.therapist for g in gp.sessions if g.therapist}
    return [s.model_copy(update={"therapist": who[s.number]}) if s.number in who else s for s in recorded]


def _away_by_therapist(course: Course) -> Callable[[str], Away | None]:
    """``away_of`` for each therapist of the course, computed once each."""
    if not course.absences:
        return lambda therapist: None
    known: dict[str, Away | None] = {}

    def of(therapist: str) -> Away | None:
        if therapist not in known:
            known[therapist] = away_of(course, therapist)
        return known[therapist]

    return of


def _in_time_order(s: Session) -> tuple[datetime, int]:
    return (s.start, s.number)


def _count_from(n: int) -> Iterator[int]:
    while True:
        yield n
        n += 1


def _recorded(
    s: Session,
    cal: Calendar,
    policy: ClinicPolicy,
    tz: ZoneInfo,
    cadence: timedelta,
    away: Callable[[str], Away | None],
) -> Session:
    """A recorded session with the calendar's facts about it: its therapist, and where the
    series had it when it was moved."""
    update: dict[str, Any] = {}
    therapist = cal.therapist(s.step)
    if s.therapist != therapist:
        update["therapist"] = therapist
    moved = cal.moves.get(s.step)
    if moved is not None and moved == s.start and s.original_start is None:
        update["original_start"] = step_start(cal.segment(s.step), s.step, cadence, policy, tz, away(therapist))
    return s.model_copy(update=update) if update else s


def _session(
    protocol: Protocol,
    number: int,
    phase: str,
    start: datetime,
    step: int,
    k: int,
    total: int,
    middle: int,
    therapist: str,
) -> Session:
    fmt = protocol.format
    if fmt == "group" and k <= protocol.individual_first:
        fmt = "individual"
    participants = ["client"]
    optional: list[str] = []
    joint = protocol.joint
    if joint is not None:
        where = {"first": k == 1, "last": k == total, "middle": k == middle}
        if any(where[w] for w in joint.sessions):
            participants.append(joint.who)
        elif any(where[w] for w in joint.optional):
            optional.append(joint.who)
    return _validate_session(
        {
            "number": number,
            "phase": phase,
            "start": start,
            "status": SessionStatus.planned,
            "step": step,
            "duration_minutes": protocol.duration_minutes,
            "format": fmt,
            "participants": participants,
            "optional_participants": optional,
            "therapist": therapist,
        }
    )


def _slots(
    course: Course,
    cal: Calendar,
    protocol: Protocol,
    policy: ClinicPolicy,
    tz: ZoneInfo,
    first_step: int,
    occupied: set[int],
    away: Callable[[str], Away | None],
    busy: Sequence[tuple[datetime, datetime]] = (),
) -> Iterator[tuple[int, datetime, datetime | None]]:
    """(step, local start, start the series gave when moved) of each usable slot from
    ``first_step`` on; a session that its therapist's absence moved gives the start it had
    without the absence as the third. Raises InvalidInput rather than run past the year 9000 (a course or
    protocol built by hand, unchecked)."""
    check_year(course.start, "start")
    cadence = timedelta(weeks=protocol.cadence_weeks)
    pauses = [(p.start, p.end) for p in course.pauses if p.end is not None]
    step = first_step
    misses = 0
    while True:
        seg = cal.segment(step)
        if (_LAST_SLOT_DAY - seg.anchor) // cadence < step - seg.step:
            raise InvalidInput("plan: no open session slot found before the year 9000; check cadence_weeks")
        if misses > 10_000:  # every day closed for ~200 years: a policy no clinic has
            raise InvalidInput("plan: 10,000 slots in a row are closed; check closures and working days")
        this_step = step
        step += 1
        if this_step in occupied:
            continue
        gone = away(cal.therapist(this_step))
        series = step_start(seg, this_step, cadence, policy, tz, gone)
        moved = cal.moves.get(this_step)
        if moved is None and series is None:
            misses += 1
            continue
        start = moved if moved is not None else series
        assert start is not None
        if moved is None and busy:
            end = start + timedelta(minutes=protocol.duration_minutes)
            if any(b0 < end and start < b1 for b0, b1 in busy):
                continue  # a session the user moved (or one held) is there already
        pause_end = next((p1 for p0, p1 in pauses if p0 <= start < p1), None) if pauses else None
        if pause_end is not None:  # the session would really start inside a finished pause
            # Skip to the last steps before the pause ends: every step whose day (moved by up
            # to a cadence for a holiday) is before the end's local date lies in the pause;
            # never past a change of the series or a moved session, which are checked one by one.
            days = (pause_end.astimezone(tz).date() - seg.anchor).days
            jump = seg.step + days // cadence.days - 1
            later = cal.next_change(this_step)
            step = max(step, jump if later is None else min(jump, later))
            continue
        if moved is not None:
            yield this_step, start, (series if gone is None else step_start(seg, this_step, cadence, policy, tz))
        elif gone is not None and (plain := step_start(seg, this_step, cadence, policy, tz)) != series:
            yield this_step, start, plain
        else:
            yield this_step, start, None


Away = Callable[[date], bool]


def step_start(
    seg: Segment, step: int, cadence: timedelta, policy: ClinicPolicy, tz: ZoneInfo, away: Away | None = None
) -> datetime | None:
    """Where the series puts ``step`` (a day closed, or one the therapist is ``away``, moved
    by policy to the next working day they are in), or None when skipped."""
    day = seg.anchor + cadence * (step - seg.step)
    if policy.is_closed(day) or (away is not None and away(day)):
        moved = None
        if policy.holiday_policy == "next_working_day":
            moved = _next_working_day(policy, day, day + cadence, away)
        if moved is None:
            return None
        day = moved
    return local_instant(day, seg.slot, tz)


def _next_working_day(policy: ClinicPolicy, day: date, before: date, away: Away | None = None) -> date | None:
    d = day + timedelta(days=1)
    while d < before:
        if policy.is_working_day(d) and (away is None or not away(d)):
            return d
        d += timedelta(days=1)
    return None


def away_of(course: Course, therapist: str) -> Away | None:
    """Whether ``therapist`` is absent on a day, by the course's absences (None: never)."""
    spans = [(a.start, a.until) for a in course.absences if a.therapist == therapist]
    if not spans:
        return None
    return lambda day: any(lo <= day <= hi for lo, hi in spans)


def dropped_sessions(course: Course, protocol: Protocol, policy: ClinicPolicy) -> tuple[list[Session], datetime | None]:
    """The sessions a withdrawal or completion took out of the plan (planned then, starting
    after it), as cancelled sessions, and when: what a calendar that holds an earlier export
    must be told is off. ``([], None)`` for a running course."""
    if course.state not in (CourseState.withdrawn, CourseState.completed):
        return [], None
    finish = next((h for h in reversed(course.history) if h.to is course.state and h.from_ is not course.state), None)
    if finish is None or finish.from_ is None:
        return [], None
    ghost = course.model_copy(update={"state": finish.from_, "completed_at": None})
    kept = {s.number for s in sessions(course, protocol, policy)}
    out = [
        s.model_copy(update={"status": SessionStatus.cancelled})
        for s in sessions(ghost, protocol, policy)
        if s.status is SessionStatus.planned and s.number not in kept and s.start > finish.at
    ]
    return out, finish.at


def plan(course: Course, protocol: Protocol, policy: ClinicPolicy) -> Plan:
    """The course's sessions and all its reminders, each list in time order.

    A withdrawn course keeps only the therapist alerts already raised; a paused one has no
    reminders for planned sessions; a completed one gets its follow-ups.
    """
    all_sessions = sessions(course, protocol, policy)
    if course.state is CourseState.withdrawn:
        kept = [a for a in course.alerts if a.audience == "therapist"]
        return Plan(sessions=all_sessions, reminders=kept, fingerprint=rules_fingerprint(protocol, policy))
    cid = course.id
    reminders: list[Reminder] = [
        _validate_reminder({"id": rid, "course": cid, "kind": kind, "audience": audience, "due": due, "session": n})
        for rid, kind, audience, due, n in session_reminders(course, protocol, policy, all_sessions)
    ]
    for rid, kind, audience, due, n in _follow_ups(course, protocol):
        reminders.append(
            _validate_reminder({"id": rid, "course": cid, "kind": kind, "audience": audience, "due": due, "session": n})
        )
    reminders.extend(course.alerts)
    reminders.sort(key=_by_due)
    return Plan(sessions=all_sessions, reminders=reminders, fingerprint=rules_fingerprint(protocol, policy))


#: A planned reminder as plain values: (id, kind, audience, due, session, rule).
PlannedRow = tuple[str, str, str, datetime, "int | None", "str | None"]


def plan_rows(course: Course, protocol: Protocol, policy: ClinicPolicy) -> tuple[list[Session], list[PlannedRow]]:
    """``plan`` with its reminders as plain values (no model built per reminder), in the same
    order: what a replan of many courses compares with the stored reminders."""
    all_sessions = sessions(course, protocol, policy)
    if course.state is CourseState.withdrawn:
        kept = [a for a in course.alerts if a.audience == "therapist"]
        return all_sessions, [(a.id, a.kind, a.audience, a.due, a.session, a.rule) for a in kept]
    rows: list[PlannedRow] = [
        (rid, kind, audience, due, n, None)
        for rid, kind, audience, due, n in session_reminders(course, protocol, policy, all_sessions)
    ]
    rows += [(rid, kind, audience, due, n, None) for rid, kind, audience, due, n in _follow_ups(course, protocol)]
    rows += [(a.id, a.kind, a.audience, a.due, a.session, a.rule) for a in course.alerts]
    rows.sort(key=_row_by_due)
    return all_sessions, rows


def _row_by_due(row: PlannedRow) -> tuple[datetime, str]:
    return row[3], row[0]


def _follow_ups(course: Course, protocol: Protocol) -> list[RawReminder]:
    """A completed course's follow-up reminders (to the therapist, at its slot)."""
    if course.state is not CourseState.completed or course.completed_at is None:
        return []
    tz = zone(course.timezone)
    done = course.completed_at.astimezone(tz)
    out: list[RawReminder] = []
    for text in protocol.follow_ups:
        offset = parse_duration(text)
        due = local_instant(done.date() + offset, course.slot, tz).astimezone(UTC)
        rid = reminder_id(course.id, "follow_up", None, course.completed_at.isoformat(), text)
        out.append((rid, "follow_up", "therapist", due, None))
    return out


_FINGERPRINTS: dict[tuple[int, int], tuple[Protocol, ClinicPolicy, str]] = {}


#: Clinic policy settings no course plan depends on: a change to them replans nothing.
_NOT_PLANNING = {"digest", "site", "fhir"}


def rules_fingerprint(protocol: Protocol, policy: ClinicPolicy) -> str:
    """A short hash of the rules a plan is made under: the protocol version's content and the
    clinic policy's settings that plans depend on (not the digest cron, site or FHIR systems).
    Stored with every plan; a plan whose fingerprint differs from the rules in force was made
    under other rules (``ipt replan``, and the daemon, replan it first)."""
    cached = _FINGERPRINTS.get((id(protocol), id(policy)))
    if cached is not None and cached[0] is protocol and cached[1] is policy:
        return cached[2]
    digest = hashlib.sha256()
    planning = policy.model_dump_json(exclude=_NOT_PLANNING)
    for part in (protocol.id, protocol.version, protocol.model_dump_json(), planning):
        digest.update(part.encode())
        digest.update(b"\0")
    found = digest.hexdigest()[:20]
    _FINGERPRINTS[(id(protocol), id(policy))] = (protocol, policy, found)
    return found


RawReminder = tuple[str, str, str, datetime, "int | None"]


def session_reminders(
    course: Course, protocol: Protocol, policy: ClinicPolicy, all_sessions: list[Session]
) -> list[RawReminder]:
    """(id, kind, audience, due, session) of every reminder scheduled around a session (before
    it; and for a planned one, the therapist's ``attendance_unrecorded`` alert due
    ``attendance.no_show_after`` after its end), as plain tuples (``plan`` validates them; a
    bulk import writes them as they are). A session already held keeps only its therapist
    reminders: the client's are for nothing now."""
    tz = zone(course.timezone)
    leads = _leads_of(protocol, policy)
    quiet = leads.quiet
    positions = _COUNTED if protocol.reschedule_missed else tuple(SessionStatus)
    total = sum(1 for s in all_sessions if s.status in positions)
    prep_k = total - protocol.phases.termination + 1
    paused = course.state is CourseState.paused
    cid = course.id
    out: list[RawReminder] = []
    add = out.append
    k = 0
    for s in all_sessions:
        if s.status not in positions:
            continue
        k += 1
        if s.status not in _COUNTED or (paused and s.status is SessionStatus.planned):
            continue
        if s.status is SessionStatus.planned:
            items = leads.session
            for item, (baseline, every) in zip(leads.measure, leads.measure_every, strict=True):
                if (baseline and k == 1) or (k > 1 and (k - 1) % every == 0):
                    items = (*items, item)
        else:
            items = ()
        if k == prep_k:
            items = items + leads.prep
        start_utc, start_key, number = s.start.astimezone(UTC), s.start.isoformat(), s.number
        for kind, audience, lead, lead_key, moves in items:
            due = start_utc - lead  # exact duration: subtract in UTC, never in wall-clock time
            if moves and quiet is not None:
                due = out_of_quiet_hours(due, quiet[0], quiet[1], tz)
            add((reminder_id(cid, kind, number, start_key, lead_key), kind, audience, due, number))
        if s.status is SessionStatus.planned:  # gone once a hold, miss or cancellation is recorded
            after, after_key = leads.unrecorded
            due = start_utc + timedelta(minutes=s.duration_minutes) + after
            rid = reminder_id(cid, "attendance_unrecorded", number, start_key, after_key)
            add((rid, "attendance_unrecorded", "therapist", due, number))
    return out


_by_due = attrgetter("due", "id")
# The validators themselves: the same checks as Model(**kw) at half the cost on this hot path.
_validate_reminder: Callable[[dict[str, Any]], Reminder] = Reminder.__pydantic_validator__.validate_python
_validate_session: Callable[[dict[str, Any]], Session] = Session.__pydantic_validator__.validate_python


@dataclass(frozen=True)
class _Leads:
    """What a (protocol, clinic) pair schedules before a session, worked out once:
    (kind, audience, lead, lead key, kept out of quiet hours) for each reminder."""

    session: tuple[tuple[str, str, timedelta, str, bool], ...]
    measure: tuple[tuple[str, str, timedelta, str, bool], ...]
    measure_every: tuple[tuple[bool, int], ...]
    prep: tuple[tuple[str, str, timedelta, str, bool], ...]
    quiet: tuple[time, time] | None
    unrecorded: tuple[timedelta, str]  # attendance_unrecorded: after a session's end, and its key


_LEADS: dict[tuple[int, int], tuple[Protocol, ClinicPolicy, _Leads]] = {}


def _leads_of(protocol: Protocol, policy: ClinicPolicy) -> _Leads:
    cached = _LEADS.get((id(protocol), id(policy)))
    if cached is not None and cached[0] is protocol and cached[1] is policy:
        return cached[2]
    quiet = (policy.quiet_hours.start_time, policy.quiet_hours.end_time) if policy.quiet_hours else None
    session = protocol.leads("session_reminder") or policy.lead_times
    prep = protocol.leads("termination_prep") or DEFAULT_LEADS["termination_prep"]
    no_show = parse_duration(policy.attendance.no_show_after, "no_show_after")
    leads = _Leads(
        session=tuple(("session_reminder", "client", d, format_duration(d), True) for d in session),
        measure=tuple(
            ("measure_due", "client", parse_duration(m.lead), format_duration(parse_duration(m.lead)), True)
            for m in protocol.measures
        ),
        measure_every=tuple((m.baseline, m.every) for m in protocol.measures),
        prep=tuple(("termination_prep", "therapist", d, format_duration(d), False) for d in prep),
        quiet=quiet,
        unrecorded=(no_show, format_duration(no_show)),
    )
    _LEADS[(id(protocol), id(policy))] = (protocol, policy, leads)
    return leads


def _quiet_start_day(local: datetime, start: time, end: time) -> date | None:
    """The local date on which the quiet period holding ``local`` began, or None when ``local``
    is outside quiet hours. Quiet hours run from just after ``start`` to just before ``end`` and
    may span midnight."""
    t = local.time()
    if start > end:  # overnight, e.g. 21:00 to 08:00
        if t > start:
            return local.date()
        if t < end:
            return local.date() - timedelta(days=1)
        return None
    return local.date() if start < t < end else None


def out_of_quiet_hours(due: datetime, start: time, end: time, tz: ZoneInfo) -> datetime:
    """Move ``due`` (UTC) earlier to the start of the quiet period it falls in (local time);
    returns UTC."""
    day = _quiet_start_day(due.astimezone(tz), start, end)
    return due if day is None else local_instant(day, start, tz).astimezone(UTC)


def after_quiet_hours(due: datetime, start: time, end: time, tz: ZoneInfo) -> datetime:
    """Move ``due`` (UTC) later to the end of the quiet period it falls in (local time), for
    a notice due at once: moving it earlier would still send it at once, in the quiet hours."""
    day = _quiet_start_day(due.astimezone(tz), start, end)
    if day is None:
        return due
    if start > end:  # the period that began that evening ends the next morning
        day += timedelta(days=1)
    return local_instant(day, end, tz).astimezone(UTC)


def slot_warnings(course: Course, policy: ClinicPolicy) -> list[str]:
    """Warnings (not errors) for a weekly slot outside the clinic's working days or hours."""
    return slot_warnings_at(course.start, course.slot, policy)


def slot_warnings_at(day: date, slot: time, policy: ClinicPolicy) -> list[str]:
    """``slot_warnings`` of a course starting on ``day`` at ``slot``."""
    out = []
    if day.weekday() not in policy.working_weekdays:
        out.append(f"slot: {day:%A} is not one of the clinic's working days ({', '.join(policy.working_days)})")
    wh = policy.working_hours
    if not wh.start_time <= slot < wh.end_time:
        out.append(f"slot: {slot:%H:%M} is outside the clinic's working hours ({wh.start}-{wh.end})")
    return out
