"""Properties of the calendar (SPEC §9) over random histories of single moves, slot changes,
handovers, holds, misses, cancellations and pauses, on courses that run through daylight
saving changes in the five DST zones:

- sessions that take place (not cancelled) never overlap; a session cancelled ahead keeps
  its time, and a slot change may put a new session at that time;
- every planned session's client reminders sit at exact leads before its start (moved
  earlier only out of quiet hours);
- the plan never holds more session entries than the protocol's maximum;
- no reminder still to go out belongs to a start that is no longer its session's start
  (the effects of each event, applied as the store applies them, cancel every such one);
- no planned session of the series falls on a day its therapist is absent (absences added
  and removed at random, for the course's therapists); only a single move the user chose
  explicitly may.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipt_workflow import (
    ClinicPolicy,
    Course,
    InvalidInput,
    Plan,
    Protocol,
    Refused,
    SessionStatus,
    apply,
    new_course,
    plan,
)
from ipt_workflow.core.absences import change_absences
from ipt_workflow.core.calendar import calendar_of
from ipt_workflow.core.model import Absence
from ipt_workflow.core.planner import out_of_quiet_hours

from .test_planner_properties import DST_ZONES, POLICIES, PROTOCOLS
from .zones import changes

KINDS = ["hold", "miss", "cancel", "reschedule", "change_slot", "change_therapist", "pause", "absence"]
SHIFTS = [timedelta(hours=h) for h in (-30, -3, -1, 1, 2, 5, 26, 49, 75, 169, -170)] + [
    timedelta(minutes=m) for m in (-45, 30, 61, 7 * 24 * 60 - 20, -7 * 24 * 60 + 20)
]


@dataclass(frozen=True)
class Case:
    zone: str
    start: date
    slot: time
    protocol: Protocol
    policy: ClinicPolicy
    events: list[tuple[str, int, int]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    zone = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(changes(zone, draw(st.integers(2026, 2029)))))
    start = change.local_day - timedelta(weeks=draw(st.integers(0, 6)), days=draw(st.integers(0, 6)))
    slot = draw(st.sampled_from([change.wall_from, time(1, 30), time(10, 0), time(23, 30), time(0, 15)]))
    events = draw(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 30), st.integers(0, 99)), max_size=14))
    return Case(zone, start, slot, draw(st.sampled_from(PROTOCOLS)), draw(st.sampled_from(POLICIES)), events)


def event_for(kind: str, n: int, k: int, current: Plan, tz: ZoneInfo) -> tuple[str, dict[str, Any] | None, bool]:
    """(event, data, record at the session's start) for one drawn step."""
    planned = [s for s in current.sessions if s.status is SessionStatus.planned]
    target = planned[n % len(planned)] if planned else None
    if kind in ("hold", "miss"):
        return f"{kind}_session", None, True
    if kind == "cancel":
        return "cancel_session", ({"number": target.number} if target and k % 2 else None), False
    if kind == "reschedule" and target is not None:
        wall = target.start.astimezone(tz).replace(tzinfo=None) + SHIFTS[k % len(SHIFTS)]
        return (
            "reschedule_session",
            {"number": target.number, "start": f"{wall:%Y-%m-%dT%H:%M}", "force": k % 3 == 0},
            False,
        )
    if kind == "change_slot" and target is not None:
        weekday = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][k % 7]
        slot = [time(9), time(1, 30), time(2, 15), time(18, 45), time(23, 59)][k % 5]
        return "change_slot", {"from": target.number, "weekday": weekday, "time": f"{slot:%H:%M}"}, False
    if kind == "absence" and target is not None:
        day = target.start.astimezone(tz).date() - timedelta(days=k % 3)
        return "absence", {"therapist": target.therapist, "from": day, "until": day + timedelta(days=k % 12)}, False
    if kind == "change_therapist":
        data: dict[str, Any] = {"therapist": f"th-{k % 4}"}
        if target is not None and k % 2:
            data["from"] = target.number
        return "change_therapist", data, False
    return "pause", None, False


def check(
    course: Course, p: Plan, case: Case, pending: dict[str, tuple[int, datetime, datetime]], clock: datetime
) -> None:
    sessions = p.sessions
    assert len(sessions) <= case.protocol.sessions.max
    taking_place = sorted((s for s in sessions if s.status is not SessionStatus.cancelled), key=lambda s: s.start)
    for a, b in itertools.pairwise(taking_place):
        assert a.end <= b.start, (a.number, a.start, b.number, b.start)
    by_number = {s.number: s for s in sessions}
    tz = ZoneInfo(case.zone)
    leads = case.protocol.leads("session_reminder") or case.policy.lead_times
    quiet = case.policy.quiet_hours
    if course.state.value != "paused":
        for s in sessions:
            if s.status is not SessionStatus.planned:
                continue
            want = set()
            for lead in leads:
                due = s.start.astimezone(UTC) - lead
                if quiet is not None:
                    due = out_of_quiet_hours(due, quiet.start_time, quiet.end_time, tz)
                want.add(due)
            got = {r.due for r in p.reminders if r.session == s.number and r.kind == "session_reminder"}
            assert got == want, (s.number, s.start)
    for rid, (number, start, due) in pending.items():
        if due <= clock:
            continue  # gone out already
        s = by_number.get(number)
        assert s is not None and s.start == start, (rid, number, start, s)
    chosen = calendar_of(course).moves
    for s in sessions:
        if s.status is SessionStatus.planned and s.step not in chosen:
            day = s.start.astimezone(tz).date()
            assert not any(a.covers(s.therapist or "", day) for a in course.absences), (s.number, s.start, s.therapist)


def toggle_absence(course: Course, data: dict[str, Any], k: int) -> tuple[list[Absence], dict[str, str]]:
    """Every fifth drawn absence removes the oldest one instead, when there is one."""
    if k % 5 == 0 and course.absences:
        gone = course.absences[0]
        return course.absences[1:], {"absence": gone.id, "therapist": gone.therapist, "change": "removed"}
    absence = Absence.model_validate({"id": f"abs-{len(course.history)}", **data})
    note = {"absence": absence.id, "therapist": absence.therapist, "change": "added"}
    return [*course.absences, absence], note


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_calendar_properties_over_random_histories(case: Case) -> None:
    pro, pol, tz = case.protocol, case.policy, ZoneInfo(case.zone)
    clock = datetime.combine(case.start - timedelta(days=3), time(12), UTC)
    course = new_course(
        pro, pol, course_id="cal-1", client="client-1", therapist="th-0",
        start=case.start, slot=case.slot, timezone=case.zone, now=clock,
    )  # fmt: skip
    current = plan(course, pro, pol)
    pending: dict[str, tuple[int, datetime, datetime]] = {}

    def track(p: Plan, ids: set[str]) -> None:
        starts = {s.number: s.start for s in p.sessions}
        for r in p.reminders:
            if r.id in ids and r.session is not None and r.rule is None and r.session in starts:
                pending[r.id] = (r.session, starts[r.session], r.due)

    track(current, {r.id for r in current.reminders})
    check(course, current, case, pending, clock)
    for kind, n, k in case.events:
        name, data, at_start = event_for(kind, n, k, current, tz)
        steps = [(name, data)] + ([("resume", None)] if name == "pause" else [])
        for event, payload in steps:
            clock += timedelta(hours=1 + n)
            planned = [s for s in current.sessions if s.status is SessionStatus.planned]
            if at_start and planned:
                clock = max(clock, planned[0].start.astimezone(UTC) + timedelta(minutes=k % 50))
            if event == "absence":
                assert payload is not None
                absences, note = toggle_absence(course, payload, k)
                new, after, effects, _ = change_absences(course, pro, pol, absences, clock, note)
                for rid in effects.cancelled:
                    pending.pop(rid, None)
                track(after, {r.id for r in effects.added})
                check(new, after, case, pending, clock)
                course, current = new, after
                continue
            try:
                new, effects = apply(course, event, clock, pro, pol, payload)
            except (Refused, InvalidInput):
                break
            after = plan(new, pro, pol)
            for rid in effects.cancelled:
                pending.pop(rid, None)
            track(after, {r.id for r in effects.added})
            check(new, after, case, pending, clock)
            course, current = new, after
