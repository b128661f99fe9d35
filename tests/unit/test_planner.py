"""The session plan and its reminders (SPEC §5): holidays, closures, quiet hours, missed and
cancelled sessions, the maximum length, pause/resume, extend, stable reminder ids, and the
group and adolescent protocols.

Dates are in 2026, England: Easter Monday is 6 April, the Early May bank holiday 4 May, the
Spring bank holiday 25 May, the Summer bank holiday 31 August; British Summer Time runs from
29 March to 25 October, so a 10:00 session reads ``10:00:00+01:00``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ipt_workflow import (
    ClinicPolicy,
    Course,
    Effects,
    Plan,
    Protocol,
    Refused,
    Reminder,
    Session,
    SessionStatus,
    apply,
    load_rules,
    new_course,
    plan,
)

RULES = load_rules()
CLINIC: ClinicPolicy = RULES.clinic  # Europe/London, GB/ENG holidays, quiet 21:00-08:00, 72h + 24h
IPT16: Protocol = RULES.protocol("ipt-16")
IPT_G8: Protocol = RULES.protocol("ipt-g-8")
IPT_A12: Protocol = RULES.protocol("ipt-a-12")
IPT_M: Protocol = RULES.protocol("ipt-m")
LONDON = ZoneInfo("Europe/London")
CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def clinic(**changes: Any) -> ClinicPolicy:
    """The built-in clinic policy with ``changes``, validated (so the holiday calendar is rebuilt)."""
    data = CLINIC.model_dump(mode="json")
    data.update(changes)
    return ClinicPolicy.model_validate(data)


NO_HOLIDAYS = clinic(holidays=None)


def make(
    *,
    start: date,
    slot: time = time(10, 0),
    protocol: Protocol = IPT16,
    pol: ClinicPolicy = CLINIC,
    zone: str = "Europe/London",
    course_id: str = "c-1",
) -> Course:
    return new_course(
        protocol,
        pol,
        course_id=course_id,
        client="client-42",
        therapist="th-7",
        start=start,
        slot=slot,
        timezone=zone,
        now=CREATED,
    )


def starts(p: Plan) -> list[str]:
    return [s.start.isoformat() for s in p.sessions]


def by_number(p: Plan, number: int) -> Session:
    return next(s for s in p.sessions if s.number == number)


def session_reminder_ids(p: Plan, number: int) -> set[str]:
    return {r.id for r in p.reminders if r.kind == "session_reminder" and r.session == number}


def client(p: Plan, number: int, kind: str = "session_reminder") -> list[Reminder]:
    return [r for r in p.reminders if r.kind == kind and r.session == number]


def event(
    course: Course,
    name: str,
    when: datetime,
    protocol: Protocol = IPT16,
    pol: ClinicPolicy = CLINIC,
    data: dict[str, Any] | None = None,
) -> tuple[Course, Effects]:
    return apply(course, name, when, protocol, pol, data)


def london(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


# --- the basic plan --------------------------------------------------------------------------


def test_weekly_plan_of_ipt16() -> None:
    p = plan(make(start=date(2026, 6, 1)), IPT16, CLINIC)
    assert [s.number for s in p.sessions] == list(range(1, 13))
    assert starts(p) == [f"{date(2026, 6, 1) + timedelta(weeks=i)}T10:00:00+01:00" for i in range(12)]
    assert [s.phase for s in p.sessions] == ["assessment"] * 3 + ["intervention"] * 6 + ["termination"] * 3
    assert {s.status for s in p.sessions} == {SessionStatus.planned}
    assert {s.duration_minutes for s in p.sessions} == {50}
    # 72h and 24h before every session, for the client
    s1 = by_number(p, 1)
    assert sorted(r.due.isoformat() for r in client(p, 1)) == ["2026-05-29T09:00:00+00:00", "2026-05-31T09:00:00+00:00"]
    assert all(r.audience == "client" for r in client(p, 1))
    assert all(r.due < s1.start for r in client(p, 1))
    # PHQ-9 at baseline and every 4 sessions, 24h before
    assert [r.session for r in p.reminders if r.kind == "measure_due"] == [1, 5, 9]
    # termination raised 48h before the first termination-phase session, to the therapist
    prep = [r for r in p.reminders if r.kind == "termination_prep"]
    assert [(r.session, r.audience, r.due.isoformat()) for r in prep] == [
        (10, "therapist", "2026-08-01T09:00:00+00:00")
    ]
    assert [r.due for r in p.reminders] == sorted(r.due for r in p.reminders)


def test_reminder_ids_are_stable_across_releases() -> None:
    """Ids are idempotency keys the daemon and host databases already hold: a change to how
    they are derived would deliver every pending reminder a second time."""
    p = plan(make(start=date(2026, 3, 23), course_id="c1"), IPT16, CLINIC)
    r72 = next(r for r in client(p, 1) if r.due.isoformat() == "2026-03-20T10:00:00+00:00")
    assert r72.id == "rem_5d6ba62da31401834c9011d9"


# --- holidays and closures ---------------------------------------------------------------------


def test_bank_holiday_mondays_move_to_tuesday_at_the_same_local_time() -> None:
    p = plan(make(start=date(2026, 3, 23)), IPT16, CLINIC)
    assert starts(p) == [
        "2026-03-23T10:00:00+00:00",
        "2026-03-30T10:00:00+01:00",
        "2026-04-07T10:00:00+01:00",  # Easter Monday 6 April
        "2026-04-13T10:00:00+01:00",
        "2026-04-20T10:00:00+01:00",
        "2026-04-27T10:00:00+01:00",
        "2026-05-05T10:00:00+01:00",  # Early May bank holiday 4 May
        "2026-05-11T10:00:00+01:00",
        "2026-05-18T10:00:00+01:00",
        "2026-05-26T10:00:00+01:00",  # Spring bank holiday 25 May
        "2026-06-01T10:00:00+01:00",
        "2026-06-08T10:00:00+01:00",
    ]
    # the reminders follow the moved session: 24 hours before Tuesday 10:00
    assert sorted(r.due.isoformat() for r in client(p, 3)) == ["2026-04-04T09:00:00+00:00", "2026-04-06T09:00:00+00:00"]


def test_skip_policy_drops_the_holiday_slot_and_keeps_the_number_of_sessions() -> None:
    skip = clinic(holiday_policy="skip")
    moved = plan(make(start=date(2026, 3, 23)), IPT16, CLINIC)
    p = plan(make(start=date(2026, 3, 23), pol=skip), IPT16, skip)
    assert len(p.sessions) == len(moved.sessions) == IPT16.sessions.planned == 12
    assert [s.start.date().isoformat() for s in p.sessions] == [
        "2026-03-23",
        "2026-03-30",
        # 6 April (Easter Monday) skipped: the rest shifts a week
        "2026-04-13",
        "2026-04-20",
        "2026-04-27",
        # 4 May skipped
        "2026-05-11",
        "2026-05-18",
        # 25 May skipped
        "2026-06-01",
        "2026-06-08",
        "2026-06-15",
        "2026-06-22",
        "2026-06-29",
    ]
    assert {s.start.time() for s in p.sessions} == {time(10, 0)}
    assert [s.number for s in p.sessions] == list(range(1, 13))


def test_skip_policy_single_holiday_shifts_the_end_by_one_week() -> None:
    skip = clinic(holiday_policy="skip")
    # Mondays from 19 January: the twelfth would be Easter Monday
    base = plan(make(start=date(2026, 1, 19)), IPT16, CLINIC)
    p = plan(make(start=date(2026, 1, 19), pol=skip), IPT16, skip)
    assert starts(base)[-1] == "2026-04-07T10:00:00+01:00"
    assert starts(p)[-1] == "2026-04-13T10:00:00+01:00"
    assert starts(p)[:-1] == starts(base)[:-1]


def test_closure_date_moves_the_session_to_the_next_working_day() -> None:
    pol = clinic(holidays=None, closures=["2026-06-08"])
    p = plan(make(start=date(2026, 6, 1), pol=pol), IPT16, pol)
    assert starts(p)[:3] == ["2026-06-01T10:00:00+01:00", "2026-06-09T10:00:00+01:00", "2026-06-15T10:00:00+01:00"]
    assert len(p.sessions) == 12


def test_closure_after_a_holiday_moves_on_to_the_next_open_day() -> None:
    pol = clinic(closures=["2026-04-07"])  # the Tuesday after Easter Monday too
    p = plan(make(start=date(2026, 3, 30), pol=pol), IPT16, pol)
    assert by_number(p, 2).start.isoformat() == "2026-04-08T10:00:00+01:00"


def test_a_week_long_closure_skips_the_step() -> None:
    """No working day before the next slot: the slot is dropped and the plan shifts a week."""
    pol = clinic(holidays=None, closures=[f"2026-06-{d:02d}" for d in range(8, 13)])
    p = plan(make(start=date(2026, 6, 1), pol=pol), IPT16, pol)
    assert [s.start.date().isoformat() for s in p.sessions[:3]] == ["2026-06-01", "2026-06-15", "2026-06-22"]
    assert len(p.sessions) == 12
    assert starts(p)[-1] == "2026-08-24T10:00:00+01:00"


def test_only_holidays_and_closures_move_sessions() -> None:
    """A Saturday evening slot is outside working days and hours, and stays where it is."""
    p = plan(make(start=date(2026, 6, 6), slot=time(19, 30), pol=NO_HOLIDAYS), IPT16, NO_HOLIDAYS)
    assert starts(p)[:2] == ["2026-06-06T19:30:00+01:00", "2026-06-13T19:30:00+01:00"]


# --- quiet hours -------------------------------------------------------------------------------


def test_client_reminders_in_quiet_hours_move_to_21h_the_evening_before() -> None:
    pol = clinic(holidays=None, reminder_leads=["1h", "10h", "24h"])
    p = plan(make(start=date(2026, 6, 2), slot=time(8, 30), pol=pol), IPT16, pol)
    s1 = by_number(p, 1)
    assert s1.start.isoformat() == "2026-06-02T08:30:00+01:00"
    dues = sorted(r.due.astimezone(LONDON).isoformat() for r in client(p, 1))
    assert dues == [
        "2026-06-01T08:30:00+01:00",  # 24h: 08:30, not quiet
        "2026-06-01T21:00:00+01:00",  # 10h: 22:30 the evening before -> 21:00
        "2026-06-01T21:00:00+01:00",  # 1h: 07:30 the same morning -> 21:00 the evening before
    ]
    assert len({r.id for r in client(p, 1)}) == 3
    # due instants are given in UTC
    assert sorted(r.due.isoformat() for r in client(p, 1))[1] == "2026-06-01T20:00:00+00:00"


def test_quiet_hours_bounds_are_allowed_instants() -> None:
    pol = clinic(holidays=None, reminder_leads=["1h", "24h"])
    # 22:00 session: 1h before is 21:00, the last allowed instant; 24h before is 22:00 -> 21:00
    p = plan(make(start=date(2026, 6, 2), slot=time(22, 0), pol=pol), IPT16, pol)
    dues = sorted(r.due.astimezone(LONDON).isoformat() for r in client(p, 1))
    assert dues == ["2026-06-01T21:00:00+01:00", "2026-06-02T21:00:00+01:00"]
    # 08:00 session: 24h before is 08:00, the end of quiet hours: allowed
    p = plan(make(start=date(2026, 6, 2), slot=time(8, 0), pol=pol), IPT16, pol)
    dues = sorted(r.due.astimezone(LONDON).isoformat() for r in client(p, 1))
    assert dues == ["2026-06-01T08:00:00+01:00", "2026-06-01T21:00:00+01:00"]


def test_measure_reminders_are_client_reminders_and_respect_quiet_hours() -> None:
    p = plan(make(start=date(2026, 6, 2), slot=time(7, 0), pol=NO_HOLIDAYS), IPT16, NO_HOLIDAYS)
    (baseline,) = client(p, 1, "measure_due")
    assert baseline.audience == "client"
    assert baseline.due.astimezone(LONDON).isoformat() == "2026-05-31T21:00:00+01:00"


def test_therapist_reminders_are_not_moved_by_quiet_hours() -> None:
    p = plan(make(start=date(2026, 6, 2), slot=time(7, 0), pol=NO_HOLIDAYS), IPT16, NO_HOLIDAYS)
    s10 = by_number(p, 10)
    assert s10.start.isoformat() == "2026-08-04T07:00:00+01:00"
    (prep,) = [r for r in p.reminders if r.kind == "termination_prep"]
    assert prep.audience == "therapist"
    assert prep.due.astimezone(LONDON).isoformat() == "2026-08-02T07:00:00+01:00"  # 48h exactly, at 07:00
    # while the client's 24h reminder of the same session moved out of the night
    moved = [r.due.astimezone(LONDON).isoformat() for r in client(p, 10)]
    assert sorted(moved) == ["2026-07-31T21:00:00+01:00", "2026-08-02T21:00:00+01:00"]


def test_quiet_hours_without_quiet_hours_keep_exact_leads() -> None:
    pol = clinic(holidays=None, quiet_hours=None, reminder_leads=["1h", "10h"])
    p = plan(make(start=date(2026, 6, 2), slot=time(8, 30), pol=pol), IPT16, pol)
    dues = sorted(r.due.astimezone(LONDON).isoformat() for r in client(p, 1))
    assert dues == ["2026-06-01T22:30:00+01:00", "2026-06-02T07:30:00+01:00"]


def test_quiet_hours_are_read_in_the_course_zone() -> None:
    """A New York course of a London clinic: 07:30 in New York is 12:30 in London, but it is
    the client's night, so it moves to 21:00 New York time."""
    pol = clinic(holidays=None, reminder_leads=["1h"])
    ny = ZoneInfo("America/New_York")
    p = plan(make(start=date(2026, 6, 2), slot=time(8, 30), pol=pol, zone="America/New_York"), IPT16, pol)
    assert by_number(p, 1).start.isoformat() == "2026-06-02T08:30:00-04:00"
    (r,) = client(p, 1)
    assert r.due.astimezone(ny).isoformat() == "2026-06-01T21:00:00-04:00"
    assert r.due.isoformat() == "2026-06-02T01:00:00+00:00"


# --- missed and cancelled sessions, the maximum -----------------------------------------------


def test_missed_session_keeps_its_number_and_date_and_one_more_is_added_at_the_end() -> None:
    course = make(start=date(2026, 6, 1))
    before = plan(course, IPT16, CLINIC)
    course, effects = event(course, "miss_session", london(2026, 6, 1, 11))
    after = plan(course, IPT16, CLINIC)

    s1 = by_number(after, 1)
    assert (s1.status, s1.start.isoformat()) == (SessionStatus.missed, "2026-06-01T10:00:00+01:00")
    assert len(after.sessions) == 13
    assert starts(after)[:12] == starts(before)
    assert by_number(after, 13).start.isoformat() == "2026-08-24T10:00:00+01:00"
    assert by_number(after, 13).start - by_number(after, 12).start == timedelta(weeks=1)
    assert [s.status for s in after.sessions[1:]] == [SessionStatus.planned] * 12
    # the missed session's reminders are cancelled, the new session's added, the others kept
    assert session_reminder_ids(before, 1) <= set(effects.cancelled)
    assert session_reminder_ids(after, 13) <= {r.id for r in effects.added}
    for n in range(2, 13):
        assert session_reminder_ids(after, n) == session_reminder_ids(before, n)
        assert not session_reminder_ids(before, n) & set(effects.cancelled)
    # the baseline PHQ-9 moves to the first session the client may attend
    assert [r.session for r in after.reminders if r.kind == "measure_due"] == [2, 6, 10]


def test_missed_session_of_a_monthly_protocol_adds_one_cadence_step() -> None:
    course = make(start=date(2026, 6, 1), protocol=IPT_M, pol=NO_HOLIDAYS)
    before = plan(course, IPT_M, NO_HOLIDAYS)
    course, _ = event(course, "miss_session", london(2026, 6, 1, 11), IPT_M, NO_HOLIDAYS)
    after = plan(course, IPT_M, NO_HOLIDAYS)
    assert len(after.sessions) == len(before.sessions) + 1 == 13
    assert after.sessions[-1].start - before.sessions[-1].start == timedelta(weeks=4)
    assert after.sessions[-1].start.isoformat() == "2027-05-03T10:00:00+01:00"


def test_cancelled_session_keeps_its_slot_and_only_its_reminders_are_cancelled() -> None:
    course = make(start=date(2026, 6, 1))
    before = plan(course, IPT16, CLINIC)
    course, effects = event(course, "cancel_session", london(2026, 6, 1, 8), data={"number": 5})
    after = plan(course, IPT16, CLINIC)

    s5 = by_number(after, 5)
    assert (s5.status, s5.start.isoformat()) == (SessionStatus.cancelled, "2026-06-29T10:00:00+01:00")
    assert by_number(after, 13).start.isoformat() == "2026-08-24T10:00:00+01:00"
    cancelled_sessions = {
        r.session for r in before.reminders if r.id in effects.cancelled and r.kind == "session_reminder"
    }
    assert cancelled_sessions == {5}
    for n in [*range(1, 5), *range(6, 13)]:
        assert session_reminder_ids(after, n) == session_reminder_ids(before, n)
    # every id in the effects is accounted for
    assert set(effects.cancelled) == {r.id for r in before.reminders} - {r.id for r in after.reminders}
    assert {r.id for r in effects.added} == {r.id for r in after.reminders} - {r.id for r in before.reminders}


def test_plan_never_exceeds_the_maximum_and_a_miss_at_the_bound_raises_plan_limit() -> None:
    course = make(start=date(2026, 6, 1))
    for i in range(4):
        course, effects = event(course, "miss_session", london(2026, 6, 1, 11) + timedelta(weeks=i))
        assert not [r for r in effects.added if r.kind == "plan_limit"]
    p = plan(course, IPT16, CLINIC)
    assert len(p.sessions) == IPT16.sessions.max == 16  # 4 missed + the 12 contracted
    last = p.sessions[-1].start.isoformat()

    course, effects = event(course, "miss_session", london(2026, 7, 1, 11))
    p = plan(course, IPT16, CLINIC)
    assert len(p.sessions) == 16  # never past the maximum without an extend
    assert p.sessions[-1].start.isoformat() == last
    assert sum(s.status is SessionStatus.planned for s in p.sessions) == 11
    limit = [r for r in effects.added if r.kind == "plan_limit"]
    assert len(limit) == 1
    assert (limit[0].audience, limit[0].rule, limit[0].session) == ("therapist", "plan.limit", 5)
    assert limit[0] in p.reminders
    # and the plan is still at the bound after another miss, with another alert
    course, effects = event(course, "miss_session", london(2026, 7, 8, 11))
    assert len(plan(course, IPT16, CLINIC).sessions) == 16
    assert [r.session for r in effects.added if r.kind == "plan_limit"] == [6]


def test_cancelled_sessions_count_toward_the_maximum_too() -> None:
    course = make(start=date(2026, 6, 1))
    for i in range(5):
        course, _ = event(course, "cancel_session", london(2026, 5, 1) + timedelta(hours=i))
    p = plan(course, IPT16, CLINIC)
    assert len(p.sessions) == 16
    assert [r.kind for r in course.alerts if r.audience == "therapist"] == ["plan_limit"]


# --- pause and resume --------------------------------------------------------------------------


def test_pause_then_resume_shifts_the_remaining_sessions_by_the_pause() -> None:
    course = make(start=date(2026, 6, 1), pol=NO_HOLIDAYS)
    course, _ = event(course, "hold_session", london(2026, 6, 1, 11), pol=NO_HOLIDAYS)
    before = plan(course, IPT16, NO_HOLIDAYS)
    course, paused = event(course, "pause", london(2026, 6, 2, 9), pol=NO_HOLIDAYS)
    during = plan(course, IPT16, NO_HOLIDAYS)
    course, resumed = event(course, "resume", london(2026, 6, 16, 9), pol=NO_HOLIDAYS)
    after = plan(course, IPT16, NO_HOLIDAYS)

    # the sessions of 8 and 15 June fell in the pause: the rest moves two weeks on
    assert starts(after) == [
        "2026-06-01T10:00:00+01:00",
        *[f"{date(2026, 6, 22) + timedelta(weeks=i)}T10:00:00+01:00" for i in range(11)],
    ]
    assert [s.number for s in after.sessions] == list(range(1, 13))
    assert by_number(after, 1).status is SessionStatus.held
    # while paused, no reminder for a planned session is pending (and a held session has none)
    assert {r.session for r in during.reminders if r.kind == "session_reminder"} == set()
    assert session_reminder_ids(before, 1) == session_reminder_ids(after, 1) == set()
    # every moved session's reminders were cancelled and new ones added for the new starts
    for n in range(2, 13):
        old, new = session_reminder_ids(before, n), session_reminder_ids(after, n)
        assert old <= set(paused.cancelled + resumed.cancelled)
        assert not old & new
        assert new <= {r.id for r in resumed.added}


def test_a_pause_between_sessions_moves_nothing() -> None:
    course = make(start=date(2026, 6, 1), pol=NO_HOLIDAYS)
    before = plan(course, IPT16, NO_HOLIDAYS)
    course, _ = event(course, "pause", london(2026, 6, 2, 9), pol=NO_HOLIDAYS)
    course, _ = event(course, "resume", london(2026, 6, 5, 9), pol=NO_HOLIDAYS)
    after = plan(course, IPT16, NO_HOLIDAYS)
    assert starts(after) == starts(before)
    assert [r.id for r in after.reminders] == [r.id for r in before.reminders]


def test_a_session_moved_by_a_holiday_into_a_pause_is_skipped() -> None:
    course = make(start=date(2026, 3, 23))
    course, _ = event(course, "pause", london(2026, 4, 6, 12))  # Easter Monday noon
    course, _ = event(course, "resume", london(2026, 4, 7, 12))  # to Tuesday noon
    p = plan(course, IPT16, CLINIC)
    paused_from, paused_to = course.pauses[-1].start, course.pauses[-1].end
    assert paused_to is not None
    assert not [s.start.isoformat() for s in p.sessions if paused_from <= s.start < paused_to]
    assert by_number(p, 3).start.isoformat() == "2026-04-13T10:00:00+01:00"


def test_a_pause_on_a_holiday_morning_keeps_the_moved_session() -> None:
    course = make(start=date(2026, 3, 23))
    course, _ = event(course, "pause", london(2026, 4, 6, 9))  # Easter Monday 09:00
    course, _ = event(course, "resume", london(2026, 4, 6, 12))  # to 12:00 the same day
    p = plan(course, IPT16, CLINIC)
    assert by_number(p, 3).start.isoformat() == "2026-04-07T10:00:00+01:00"


def test_plan_of_a_withdrawn_course_lists_sessions_in_time_order() -> None:
    course = make(start=date(2026, 6, 1), pol=NO_HOLIDAYS)
    course, _ = event(course, "cancel_session", london(2026, 5, 30), pol=NO_HOLIDAYS, data={"number": 3})
    course, _ = event(course, "hold_session", london(2026, 6, 1, 11), pol=NO_HOLIDAYS)
    course, _ = event(course, "pause", london(2026, 6, 1, 12), pol=NO_HOLIDAYS)
    course, _ = event(course, "resume", london(2026, 6, 9, 12), pol=NO_HOLIDAYS)
    # the pause took 8 June: session 2 moved to 22 June, after cancelled session 3 (15 June)
    p = plan(course, IPT16, NO_HOLIDAYS)
    assert [(s.number, s.start.date().isoformat()) for s in p.sessions[:3]] == [
        (1, "2026-06-01"),
        (3, "2026-06-15"),
        (2, "2026-06-22"),
    ]
    course, _ = event(course, "hold_session", london(2026, 6, 22, 11), pol=NO_HOLIDAYS)
    course, _ = event(course, "withdraw", london(2026, 6, 23), pol=NO_HOLIDAYS)
    p = plan(course, IPT16, NO_HOLIDAYS)
    assert [s.start.date().isoformat() for s in p.sessions] == ["2026-06-01", "2026-06-15", "2026-06-22"]


# --- extend ------------------------------------------------------------------------------------


def test_extend_adds_sessions_at_the_end() -> None:
    course = make(start=date(2026, 6, 1))
    before = plan(course, IPT16, CLINIC)
    course, effects = event(course, "extend", london(2026, 6, 1, 8), data={"sessions": 4})
    after = plan(course, IPT16, CLINIC)
    assert course.planned_sessions == 16
    assert len(after.sessions) == 16
    assert starts(after)[:12] == starts(before)
    assert starts(after)[12:] == [
        "2026-08-24T10:00:00+01:00",
        "2026-09-01T10:00:00+01:00",  # Summer bank holiday 31 August
        "2026-09-07T10:00:00+01:00",
        "2026-09-14T10:00:00+01:00",
    ]
    assert {r.session for r in effects.added if r.kind == "session_reminder"} == {13, 14, 15, 16}
    # the termination phase moves to the new end
    assert [s.phase for s in after.sessions][-4:] == ["intervention", "termination", "termination", "termination"]


def test_extend_is_refused_past_the_maximum_and_nothing_changes() -> None:
    course = make(start=date(2026, 6, 1))
    with pytest.raises(Refused) as info:
        event(course, "extend", london(2026, 6, 1, 8), data={"sessions": 5})
    assert info.value.event == "extend"
    assert "16" in str(info.value)
    course, _ = event(course, "extend", london(2026, 6, 1, 8), data={"sessions": 3})
    course, _ = event(course, "extend", london(2026, 6, 1, 8), data={"sessions": 1})
    assert len(plan(course, IPT16, CLINIC).sessions) == 16
    with pytest.raises(Refused):
        event(course, "extend", london(2026, 6, 1, 9), data={"sessions": 1})
    assert course.planned_sessions == 16


def test_extend_counts_missed_sessions_as_entries() -> None:
    course = make(start=date(2026, 6, 1))
    course, _ = event(course, "miss_session", london(2026, 6, 1, 11))
    course, _ = event(course, "miss_session", london(2026, 6, 8, 11))
    with pytest.raises(Refused):
        event(course, "extend", london(2026, 6, 9), data={"sessions": 3})  # 2 + 12 + 3 = 17
    course, _ = event(course, "extend", london(2026, 6, 9), data={"sessions": 2})
    assert len(plan(course, IPT16, CLINIC).sessions) == 16


# --- withdraw ----------------------------------------------------------------------------------


def test_withdraw_cancels_every_pending_reminder() -> None:
    course = make(start=date(2026, 6, 1))
    before = plan(course, IPT16, CLINIC)
    course, effects = event(course, "withdraw", london(2026, 6, 3))
    assert plan(course, IPT16, CLINIC).reminders == []
    # all but a therapist alert already due: session 1 (1 June) ended unrecorded, and still is
    [due] = [r for r in before.reminders if r.audience == "therapist" and r.due <= london(2026, 6, 3)]
    assert (due.kind, due.session) == ("attendance_unrecorded", 1)
    assert sorted(effects.cancelled) == sorted(r.id for r in before.reminders if r is not due)


# --- group and adolescent protocols ------------------------------------------------------------


def test_group_protocol_has_one_individual_session_then_group_sessions() -> None:
    p = plan(make(start=date(2026, 6, 1), protocol=IPT_G8), IPT_G8, CLINIC)
    assert len(p.sessions) == 9
    assert [s.format for s in p.sessions] == ["individual"] + ["group"] * 8
    assert {s.duration_minutes for s in p.sessions} == {90}
    assert p.sessions[-1].phase == "termination"


def test_group_protocol_does_not_make_up_a_missed_session() -> None:
    course = make(start=date(2026, 6, 1), protocol=IPT_G8)
    before = plan(course, IPT_G8, CLINIC)
    course, _ = event(course, "miss_session", london(2026, 6, 1, 11), IPT_G8)
    after = plan(course, IPT_G8, CLINIC)
    assert starts(after) == starts(before)
    assert by_number(after, 1).status is SessionStatus.missed


def test_group_sessions_stay_group_sessions_after_a_missed_pre_group_session() -> None:
    course = make(start=date(2026, 6, 1), protocol=IPT_G8)
    course, _ = event(course, "miss_session", london(2026, 6, 1, 11), IPT_G8)
    after = plan(course, IPT_G8, CLINIC)
    assert [s.format for s in after.sessions] == ["individual"] + ["group"] * 8


def test_adolescent_protocol_brings_the_parent_to_the_first_middle_and_last_sessions() -> None:
    p = plan(make(start=date(2026, 6, 1), protocol=IPT_A12), IPT_A12, CLINIC)
    assert len(p.sessions) == 12
    with_parent = [s.number for s in p.sessions if "parent" in s.participants]
    optional = [s.number for s in p.sessions if "parent" in s.optional_participants]
    assert with_parent == [1, 12]
    assert optional == [6]
    assert all("client" in s.participants for s in p.sessions)
    assert all(s.optional_participants == [] for s in p.sessions if s.number != 6)
