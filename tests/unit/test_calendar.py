"""Sessions on a calendar (SPEC §9): attendance recorded when it can be true, late
cancellations, one session moved, the slot changed from one session on, a handover."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from ipt_workflow import (
    Course,
    InvalidInput,
    Refused,
    SessionStatus,
    apply,
    load_rules,
    new_course,
    plan,
    session_json,
)

RULES = load_rules()
IPT16 = RULES.protocol("ipt-16")
CLINIC = RULES.clinic
T0 = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


class Run:
    """One ipt-16 course, Mondays 10:00 from 2027-01-04 (London), intake completed."""

    def __init__(self, tz: str = "Europe/London", start: date = date(2027, 1, 4), slot: time = time(10)) -> None:
        self.course: Course = new_course(
            IPT16, CLINIC, course_id="c1", client="CL-1", therapist="T-1",
            start=start, slot=slot, timezone=tz, now=T0,
        )  # fmt: skip
        self("complete_intake", T0)

    def __call__(self, event: str, at: datetime, data: dict[str, Any] | None = None) -> Any:
        self.course, effects = apply(self.course, event, at, IPT16, CLINIC, data)
        return effects

    def sessions(self) -> dict[int, Any]:
        return {s.number: s for s in plan(self.course, IPT16, CLINIC).sessions}

    def reminder_ids(self, number: int) -> set[str]:
        return {r.id for r in plan(self.course, IPT16, CLINIC).reminders if r.session == number}


# ---------------------------------------------------------------- attendance when it can be true


def therapist_alerts(run: Run) -> list[str]:
    return [a.kind for a in run.course.alerts if a.audience == "therapist"]


def test_holding_a_session_before_it_starts_is_refused_naming_it() -> None:
    run = Run()
    with pytest.raises(Refused, match=r"session 1 starts Mon 2027-01-04 10:00 GMT") as info:
        run("hold_session", utc(2027, 1, 1, 12))
    assert "Fri 2027-01-01 12:00 GMT" in str(info.value)
    with pytest.raises(Refused, match=r"session 1 starts Mon 2027-01-04 10:00 GMT"):
        run("miss_session", utc(2027, 1, 4, 9, 59))
    run("hold_session", utc(2027, 1, 4, 10))  # at the start itself
    assert run.sessions()[1].status is SessionStatus.held


def test_hold_and_miss_name_a_session_and_refuse_one_not_yet_started() -> None:
    run = Run()
    with pytest.raises(Refused, match=r"session 3 starts Mon 2027-01-18 10:00 GMT"):
        run("hold_session", utc(2027, 1, 12), {"number": 3})
    run("miss_session", utc(2027, 1, 11, 11), {"number": 2})
    assert run.sessions()[2].status is SessionStatus.missed
    with pytest.raises(Refused, match="session 2 is not a planned session"):
        run("hold_session", utc(2027, 1, 11, 12), {"number": 2})


def test_a_late_cancellation_counts_as_a_miss_for_the_attendance_rules() -> None:
    run = Run()
    run("miss_session", utc(2027, 1, 4, 10, 30))
    run("cancel_session", utc(2027, 1, 10, 12))  # session 2 starts in 22 h: inside the 24 h window
    assert run.course.history[-1].data == {"number": 2, "late": True}
    assert therapist_alerts(run) == ["attendance_review"]


def test_a_cancellation_in_good_time_is_not_a_miss() -> None:
    run = Run()
    run("miss_session", utc(2027, 1, 4, 10, 30))
    run("cancel_session", utc(2027, 1, 9, 12))  # 46 h ahead
    assert run.course.history[-1].data == {}
    assert therapist_alerts(run) == []
    run("miss_session", utc(2027, 1, 18, 10, 30))  # a cancellation does not break the run
    assert therapist_alerts(run) == ["attendance_review"]


# ---------------------------------------------------------------- reschedule_session


def test_rescheduling_moves_one_session_and_only_its_reminders() -> None:
    run = Run()
    before = {n: run.reminder_ids(n) for n in (2, 3, 4)}
    effects = run("reschedule_session", utc(2027, 1, 5, 9), {"number": 3, "start": "2027-01-20T14:00"})
    s = run.sessions()
    assert s[3].start == datetime(2027, 1, 20, 14, tzinfo=s[3].start.tzinfo)
    assert s[3].original_start is not None and s[3].original_start.isoformat() == "2027-01-18T10:00:00+00:00"
    assert s[4].start.isoformat() == "2027-01-25T10:00:00+00:00" and s[4].original_start is None
    assert run.reminder_ids(2) == before[2] and run.reminder_ids(4) == before[4]
    assert set(effects.cancelled) == before[3]
    assert {r.id for r in effects.added} == run.reminder_ids(3)
    for r in plan(run.course, IPT16, CLINIC).reminders:
        if r.session == 3 and r.kind == "session_reminder":
            assert s[3].start - r.due in (timedelta(hours=72), timedelta(hours=24))
    view = session_json(s[3])
    assert view["original_start"] == "2027-01-18T10:00:00+00:00"
    assert view["end"] == "2027-01-20T14:50:00+00:00"
    assert view["therapist"] == "T-1"
    assert session_json(s[4])["original_start"] is None


def test_a_moved_session_keeps_its_slot_when_an_earlier_one_is_missed() -> None:
    run = Run()
    run("hold_session", utc(2027, 1, 4, 10, 50))
    run("reschedule_session", utc(2027, 1, 5, 9), {"number": 4, "start": "2027-01-27T09:00"})
    run("miss_session", utc(2027, 1, 11, 10, 50))
    s = run.sessions()
    assert s[4].start.isoformat() == "2027-01-27T09:00:00+00:00"
    run("hold_session", utc(2027, 1, 18, 11))
    run("hold_session", utc(2027, 1, 27, 9, 50))
    held = run.sessions()[4]
    assert held.status is SessionStatus.held and held.original_start is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"number": 3, "start": "2027-01-26T14:00"}, r"past session 4 \(Mon 2027-01-25 10:00 GMT\); use change_slot"),
        ({"number": 3, "start": "2027-01-11T10:30"}, r"onto session 2 \(planned, Mon 2027-01-11 10:00 GMT\)"),
        ({"number": 3, "start": "2027-01-11T09:00"}, r"past session 2 .*use change_slot"),
        ({"number": 2, "start": "2027-01-03T10:00"}, r"before the event's time \(Tue 2027-01-05 09:00 GMT\)"),
        ({"number": 1, "start": "2027-01-06T10:00"}, r"session 1 is not a planned session \(held"),
        ({"number": 99, "start": "2027-01-06T10:00"}, r"session 99 is not in the plan"),
        ({"number": 3, "start": "2027-01-18T10:00"}, r"session 3 already starts Mon 2027-01-18 10:00 GMT"),
    ],
)
def test_refused_moves_name_the_session_and_times(data: dict[str, Any], message: str) -> None:
    run = Run()
    run("hold_session", utc(2027, 1, 4, 10, 50))
    before = run.course
    with pytest.raises(Refused, match=message):
        run("reschedule_session", utc(2027, 1, 5, 9), data)
    assert run.course is before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"number": 3, "start": "2027-01-20 14:00"}, r"start: '2027-01-20 14:00' is not a local start"),
        ({"number": 3, "start": "2027-01-20T24:00"}, r"start: '24:00' is not a time"),
        ({"number": 3, "start": "2027-02-30T10:00"}, r"start: '2027-02-30' is not a date"),
        ({"number": 3}, r"start: Field required"),
        ({"number": "3", "start": "2027-01-20T14:00"}, r"number: Input should be a valid integer"),
        ({"number": 3, "start": "2027-01-20T14:00", "force": "yes"}, r"force: Input should be a valid boolean"),
    ],
)
def test_bad_reschedule_data_is_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Run()("reschedule_session", utc(2027, 1, 5, 9), data)


@pytest.mark.parametrize(
    ("tz", "start", "gap"),
    [
        ("Europe/London", "2027-03-28T01:30", "from 01:00 to 02:00 that day (GMT to BST)"),
        ("America/New_York", "2027-03-14T02:15", "from 02:00 to 03:00 that day (EST to EDT)"),
        ("Australia/Lord_Howe", "2027-10-03T02:10", "from 02:00 to 02:30 that day"),
        ("Pacific/Chatham", "2027-09-26T02:50", "from 02:45 to 03:45 that day"),
        ("Antarctica/Troll", "2027-03-28T01:30", "from 01:00 to 03:00 that day"),
    ],
)
def test_a_new_start_in_a_daylight_saving_gap_is_refused_naming_the_gap(tz: str, start: str, gap: str) -> None:
    day = date.fromisoformat(start[:10])
    run = Run(tz, start=day - timedelta(weeks=2) - timedelta(days=day.weekday()), slot=time(12))
    expected = f"start: {start[:10]} {start[11:]} does not exist in {tz}: the clocks go forward {gap}"
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        run("reschedule_session", utc(day.year, day.month, 1), {"number": 3, "start": start})


def test_an_ambiguous_new_start_is_its_first_occurrence() -> None:
    run = Run(start=date(2027, 10, 18), slot=time(12))
    run("reschedule_session", utc(2027, 10, 1), {"number": 3, "start": "2027-10-31T01:30", "force": True})
    moved = run.sessions()[3]
    assert moved.start.isoformat() == "2027-10-31T01:30:00+01:00"
    assert run.course.history[-1].data["force"] is True


# ---------------------------------------------------------------- change_slot


def test_change_slot_moves_this_and_the_following_sessions() -> None:
    run = Run()
    run("record_measure", utc(2027, 1, 4, 10, 5), {"instrument": "phq9", "score": 18, "item9": 0})
    run("hold_session", utc(2027, 1, 4, 10, 50))
    run("extend", utc(2027, 1, 4, 11), {"sessions": 1})
    run("change_slot", utc(2027, 1, 5, 9), {"from": 3, "weekday": "thu", "time": "16:30"})
    s = run.sessions()
    assert s[2].start.isoformat() == "2027-01-11T10:00:00+00:00"
    assert s[3].start.isoformat() == "2027-01-21T16:30:00+00:00"  # first Thursday on or after Mon 18th
    assert s[4].start.isoformat() == "2027-01-28T16:30:00+00:00"
    assert s[12].start.isoformat() == "2027-03-25T16:30:00+00:00"
    assert s[13].start.isoformat() == "2027-04-01T16:30:00+01:00"  # wall clock across the change
    assert all(x.original_start is None for x in s.values())
    assert run.course.id == "c1" and run.course.measurements[0].score == 18  # the baseline is kept
    assert [h.event for h in run.course.history][-1] == "change_slot"
    # a later change replaces it from its own session on
    run("change_slot", utc(2027, 1, 6, 9), {"from": 6, "weekday": "mon", "time": "09:00"})
    assert run.sessions()[5].start.isoformat() == "2027-02-04T16:30:00+00:00"
    assert run.sessions()[6].start.isoformat() == "2027-02-15T09:00:00+00:00"


def test_change_slot_drops_single_moves_from_that_session_on() -> None:
    run = Run()
    run("reschedule_session", utc(2027, 1, 2), {"number": 2, "start": "2027-01-12T10:00"})
    run("reschedule_session", utc(2027, 1, 2), {"number": 4, "start": "2027-01-26T10:00"})
    run("change_slot", utc(2027, 1, 3), {"from": 3, "weekday": "wed", "time": "10:00"})
    s = run.sessions()
    assert s[2].start.isoformat() == "2027-01-12T10:00:00+00:00"  # before: kept
    assert s[4].start.isoformat() == "2027-01-27T10:00:00+00:00" and s[4].original_start is None


@pytest.mark.parametrize(
    ("data", "message", "error"),
    [
        ({"from": 3, "weekday": "Thurs", "time": "16:30"}, r"weekday: 'Thurs' is not one of mon, tue", InvalidInput),
        ({"from": 3, "weekday": "thu", "time": "24:00"}, r"time: '24:00' is not a time", InvalidInput),
        ({"from": 1, "weekday": "thu", "time": "16:30"}, r"session 1 is not a planned session", Refused),
        ({"from": 3, "weekday": "mon", "time": "10:00"}, r"session 3 is already on mon at 10:00", Refused),
        ({"weekday": "thu", "time": "16:30"}, r"from: Field required", InvalidInput),
    ],
)
def test_bad_slot_changes_are_refused(data: dict[str, Any], message: str, error: type[Exception]) -> None:
    run = Run()
    run("hold_session", utc(2027, 1, 4, 10, 50))
    with pytest.raises(error, match=message):
        run("change_slot", utc(2027, 1, 5, 9), data)


def test_change_slot_never_starts_before_the_previous_session_ends() -> None:
    run = Run()
    run("reschedule_session", utc(2027, 1, 2), {"number": 2, "start": "2027-01-18T07:30"})
    with pytest.raises(
        Refused,
        match=r"cannot move to Mon 2027-01-18 08:00 GMT: session 2 \(Mon 2027-01-18 07:30 GMT\) ends after it",
    ):
        run("change_slot", utc(2027, 1, 3), {"from": 3, "weekday": "mon", "time": "08:00"})


def test_a_slot_change_into_a_gap_is_refused() -> None:
    run = Run(start=date(2027, 3, 1))
    with pytest.raises(InvalidInput, match=r"2027-03-28 01:30 does not exist in Europe/London"):
        run("change_slot", utc(2027, 3, 2), {"from": 4, "weekday": "sun", "time": "01:30"})


# ---------------------------------------------------------------- change_therapist


def test_change_therapist_hands_the_course_over_from_a_session() -> None:
    run = Run()
    run("hold_session", utc(2027, 1, 4, 10, 50))
    run("change_therapist", utc(2027, 1, 5), {"therapist": "T-2", "from": 4, "force": True})
    s = run.sessions()
    assert [s[n].therapist for n in (1, 2, 3, 4, 12)] == ["T-1", "T-1", "T-1", "T-2", "T-2"]
    assert run.course.therapist == "T-2"
    assert run.course.history[-1].data["force"] is True
    run("change_therapist", utc(2027, 1, 6), {"therapist": "T-3"})  # default: the next planned session
    s = run.sessions()
    assert [s[n].therapist for n in (1, 2, 3, 4)] == ["T-1", "T-3", "T-3", "T-3"]
    assert session_json(s[1])["therapist"] == "T-1"


@pytest.mark.parametrize(
    ("data", "message", "error"),
    [
        ({"therapist": "T 2"}, r"therapist: 'T 2' is not an id", InvalidInput),
        ({"therapist": "T-1"}, r"session 2 is already with therapist T-1", Refused),
        ({"therapist": "T-2", "from": 1}, r"session 1 is not a planned session", Refused),
        ({"therapist": 7}, r"therapist: Input should be a valid string", InvalidInput),
    ],
)
def test_bad_handovers_are_refused(data: dict[str, Any], message: str, error: type[Exception]) -> None:
    run = Run()
    run("hold_session", utc(2027, 1, 4, 10, 50))
    with pytest.raises(error, match=message):
        run("change_therapist", utc(2027, 1, 5), data)


def test_calendar_events_are_refused_when_not_active() -> None:
    run = Run()
    run("pause", utc(2027, 1, 2))
    with pytest.raises(Refused, match="not allowed in this state"):
        run("reschedule_session", utc(2027, 1, 2, 1), {"number": 2, "start": "2027-01-12T10:00"})


# ---------------------------------------------------------------- client notices


def notices(effects: Any) -> list[Any]:
    return [r for r in effects.added if r.kind in ("session_moved", "session_cancelled")]


def test_a_move_sends_the_client_a_notice_at_once() -> None:
    run = Run()
    at = utc(2027, 1, 5, 9)
    (told,) = notices(run("reschedule_session", at, {"number": 3, "start": "2027-01-20T14:00"}))
    assert (told.kind, told.audience, told.due, told.session, told.rule) == (
        "session_moved", "client", at, 3, "reschedule_session"
    )  # fmt: skip
    assert told in plan(run.course, IPT16, CLINIC).reminders  # kept with the course, as alerts are
    (slot,) = notices(run("change_slot", at, {"from": 5, "weekday": "wed", "time": "11:00"}))
    assert (slot.kind, slot.session, slot.rule) == ("session_moved", 5, "change_slot")
    assert not notices(run("change_therapist", at, {"therapist": "T-2"}))


def test_a_notice_recorded_in_quiet_hours_waits_for_their_end() -> None:
    run = Run()
    (told,) = notices(run("reschedule_session", utc(2027, 1, 5, 23, 30), {"number": 3, "start": "2027-01-20T14:00"}))
    assert told.due == utc(2027, 1, 6, 8, 0)  # quiet hours 21:00-08:00, London = UTC in January


def test_a_cancellation_notice_only_for_a_session_still_to_come() -> None:
    run = Run()
    (told,) = notices(run("cancel_session", utc(2027, 1, 2, 12), {"number": 3}))
    assert (told.kind, told.session, told.due) == ("session_cancelled", 3, utc(2027, 1, 2, 12))
    assert not notices(run("cancel_session", utc(2027, 1, 4, 10, 30)))  # session 1 has started


def test_a_withdrawal_cancels_a_pending_notice() -> None:
    run = Run()
    (told,) = notices(run("reschedule_session", utc(2027, 1, 2, 12), {"number": 3, "start": "2027-01-20T14:00"}))
    assert told.id in run("withdraw", utc(2027, 1, 2, 12, 1)).cancelled
