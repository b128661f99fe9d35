"""Sessions and reminders across daylight saving changes (SPEC §5).

Sessions sit at the course's local wall-clock time in its zone; as in RFC 5545 a time in a
spring-forward gap is read with the offset in force before the gap and an ambiguous time in
a fall-back overlap is its first occurrence. Reminder due instants are the session start
minus the lead as an exact duration, so across a change they land an hour (or 30 minutes,
or two hours) off the session's wall-clock time.

The five zones cover a one-hour shift in each hemisphere (Europe/London, America/New_York),
a 30-minute shift (Australia/Lord_Howe), a quarter-hour base offset (Pacific/Chatham,
UTC+12:45/+13:45) and a two-hour shift (Antarctica/Troll, UTC+0/+2). The change instants are
found with zoneinfo and checked against the table below, so the table is not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ipt_workflow import (
    ClinicPolicy,
    Course,
    Plan,
    Protocol,
    Reminder,
    Session,
    apply,
    load_rules,
    new_course,
    plan,
)
from ipt_workflow.core.planner import reminder_id
from ipt_workflow.core.wallclock import format_duration

from .zones import Change, changes

RULES = load_rules()
IPT16: Protocol = RULES.protocol("ipt-16")
CREATED = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


def policy(zone: str, *, quiet: bool = True, leads: tuple[str, ...] = ("72h", "24h")) -> ClinicPolicy:
    """A clinic in ``zone`` with no public holidays (so only DST moves anything)."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "timezone": zone,
        "working_days": ["mon", "tue", "wed", "thu", "fri"],
        "working_hours": {"start": "08:00", "end": "18:00"},
        "holidays": None,
        "closures": [],
        "holiday_policy": "next_working_day",
        "quiet_hours": {"start": "21:00", "end": "08:00"} if quiet else None,
        "reminder_leads": list(leads),
    }
    return ClinicPolicy.model_validate(data)


def spring(zone: str) -> Change:
    return next(c for c in changes(zone) if c.forward)


def fall(zone: str) -> Change:
    return next(c for c in changes(zone) if not c.forward)


@dataclass(frozen=True)
class Expected:
    """What a user of each zone sees in 2026 (checked against zoneinfo by the first test)."""

    zone: str
    spring_day: str
    gap: str  # local wall-clock times that do not exist, "from-to" (to exclusive)
    standard: str  # UTC offset before spring forward
    summer: str  # UTC offset after it
    fall_day: str
    overlap: str  # local wall-clock times that happen twice, "from-to" (to exclusive)


EXPECTED = [
    # zone, spring-forward day, gap, standard offset, summer offset, fall-back day, overlap
    Expected("Europe/London", "2026-03-29", "01:00-02:00", "+00:00", "+01:00", "2026-10-25", "01:00-02:00"),
    Expected("America/New_York", "2026-03-08", "02:00-03:00", "-05:00", "-04:00", "2026-11-01", "01:00-02:00"),
    Expected("Australia/Lord_Howe", "2026-10-04", "02:00-02:30", "+10:30", "+11:00", "2026-04-05", "01:30-02:00"),
    Expected("Pacific/Chatham", "2026-09-27", "02:45-03:45", "+12:45", "+13:45", "2026-04-05", "02:45-03:45"),
    Expected("Antarctica/Troll", "2026-03-29", "01:00-03:00", "+00:00", "+02:00", "2026-10-25", "01:00-03:00"),
]
ZONES = [e.zone for e in EXPECTED]
BY_ZONE = {e.zone: e for e in EXPECTED}


def offset_text(value: timedelta) -> str:
    sign = "-" if value < timedelta(0) else "+"
    minutes = abs(int(value.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def make(zone: str, start: date, slot: time, *, pol: ClinicPolicy | None = None) -> tuple[Course, Plan, ClinicPolicy]:
    pol = pol or policy(zone)
    course = new_course(
        IPT16,
        pol,
        course_id="dst-1",
        client="client-7",
        therapist="th-1",
        start=start,
        slot=slot,
        timezone=zone,
        now=CREATED,
    )
    return course, plan(course, IPT16, pol), pol


def session(p: Plan, number: int) -> Session:
    return next(s for s in p.sessions if s.number == number)


def reminder(p: Plan, number: int, lead: timedelta, kind: str = "session_reminder") -> Reminder:
    """The ``kind`` reminder of session ``number`` due ``lead`` before it (unmoved by quiet hours)."""
    s = session(p, number)
    found = [r for r in p.reminders if r.kind == kind and r.session == number]
    exact = [r for r in found if s.start.astimezone(UTC) - r.due.astimezone(UTC) == lead]
    assert len(exact) == 1, f"no {kind} {lead} before session {number}: {[r.due for r in found]}"
    return exact[0]


def plus(wall: time, delta: timedelta) -> time:
    return (datetime.combine(date(2000, 1, 1), wall) + delta).time()


# --- the table agrees with zoneinfo --------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_change_table_agrees_with_zoneinfo(zone: str) -> None:
    exp = BY_ZONE[zone]
    found = changes(zone)
    assert len(found) == 2, f"{zone}: expected two offset changes in 2026, got {found}"
    sp, fa = spring(zone), fall(zone)
    assert sp.local_day.isoformat() == exp.spring_day
    assert f"{sp.wall_from:%H:%M}-{sp.wall_to:%H:%M}" == exp.gap
    assert (offset_text(sp.before), offset_text(sp.after)) == (exp.standard, exp.summer)
    assert fa.local_day.isoformat() == exp.fall_day
    assert f"{fa.wall_from:%H:%M}-{fa.wall_to:%H:%M}" == exp.overlap
    assert (offset_text(fa.before), offset_text(fa.after)) == (exp.summer, exp.standard)
    # every change is on a Sunday in these zones; the tests below rely on it
    assert sp.local_day.weekday() == fa.local_day.weekday() == 6


# --- a weekly slot straddling a change keeps its wall-clock time ----------------------------


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("which", ["spring", "fall"])
def test_weekly_slot_keeps_wall_clock_time_across_the_change(zone: str, which: str) -> None:
    exp = BY_ZONE[zone]
    change = spring(zone) if which == "spring" else fall(zone)
    before, after = (exp.standard, exp.summer) if which == "spring" else (exp.summer, exp.standard)
    monday_before = change.local_day - timedelta(days=6)
    monday_after = change.local_day + timedelta(days=1)
    _, p, _ = make(zone, monday_before, time(10, 0))

    s1, s2, s3 = session(p, 1), session(p, 2), session(p, 3)
    assert s1.start.isoformat() == f"{monday_before}T10:00:00{before}"
    assert s2.start.isoformat() == f"{monday_after}T10:00:00{after}"
    assert s3.start.isoformat() == f"{monday_after + timedelta(days=7)}T10:00:00{after}"
    # the sessions carry the course's zone, not a fixed offset
    assert all(getattr(s.start.tzinfo, "key", None) == zone for s in p.sessions)
    # a week apart on the wall clock, a week +/- the shift apart in real time
    real = s2.start.astimezone(UTC) - s1.start.astimezone(UTC)
    assert real == timedelta(weeks=1) - (change.after - change.before)
    assert [s.start.astimezone(ZoneInfo(zone)).time() for s in p.sessions] == [time(10, 0)] * 12


# --- a slot in the spring-forward gap --------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("where", ["gap start", "mid gap", "last minute of gap"])
def test_slot_in_the_gap_is_read_with_the_offset_before_it(zone: str, where: str) -> None:
    exp = BY_ZONE[zone]
    change = spring(zone)
    gap = change.after - change.before
    slot = {
        "gap start": change.wall_from,
        "mid gap": plus(change.wall_from, gap / 2),
        "last minute of gap": plus(change.wall_to, -timedelta(minutes=1)),
    }[where]
    sunday_before = change.local_day - timedelta(days=7)
    _, p, _ = make(zone, sunday_before, slot)

    moved = plus(slot, gap)  # RFC 5545: 02:30 in a one-hour gap becomes 03:30
    assert session(p, 1).start.isoformat() == f"{sunday_before}T{slot:%H:%M}:00{exp.standard}"
    assert session(p, 2).start.isoformat() == f"{change.local_day}T{moved:%H:%M}:00{exp.summer}"
    assert session(p, 3).start.isoformat() == f"{change.local_day + timedelta(days=7)}T{slot:%H:%M}:00{exp.summer}"
    # the instant is the wall time read with the offset in force before the gap
    naive = datetime.combine(change.local_day, slot)
    assert session(p, 2).start.astimezone(UTC) == (naive - change.before).replace(tzinfo=UTC)


def test_london_gap_example_from_the_brief() -> None:
    _, p, _ = make("Europe/London", date(2026, 3, 22), time(1, 30))
    assert [s.start.isoformat() for s in p.sessions[:3]] == [
        "2026-03-22T01:30:00+00:00",
        "2026-03-29T02:30:00+01:00",
        "2026-04-05T01:30:00+01:00",
    ]


@pytest.mark.parametrize("zone", ZONES)
def test_wall_times_next_to_the_gap_are_not_moved(zone: str) -> None:
    exp = BY_ZONE[zone]
    change = spring(zone)
    sunday_before = change.local_day - timedelta(days=7)
    just_before = plus(change.wall_from, -timedelta(minutes=1))
    _, p, _ = make(zone, sunday_before, just_before)
    assert session(p, 2).start.isoformat() == f"{change.local_day}T{just_before:%H:%M}:00{exp.standard}"
    _, p, _ = make(zone, sunday_before, change.wall_to)
    assert session(p, 2).start.isoformat() == f"{change.local_day}T{change.wall_to:%H:%M}:00{exp.summer}"


@pytest.mark.parametrize("zone", ZONES)
def test_reminders_of_a_gap_session_are_keyed_by_the_moved_start(zone: str) -> None:
    change = spring(zone)
    slot = plus(change.wall_from, (change.after - change.before) / 2)
    _, p, _ = make(zone, change.local_day - timedelta(days=7), slot, pol=policy(zone, quiet=False))
    s2 = session(p, 2)
    r = reminder(p, 2, timedelta(hours=24))
    # the id is derived from the moved start as users see it, with its offset
    assert s2.start.isoformat().endswith(f"T{plus(slot, change.shift):%H:%M}:00{offset_text(change.after)}")
    lead_key = format_duration(timedelta(hours=24))
    assert r.id == reminder_id("dst-1", "session_reminder", 2, s2.start.isoformat(), lead_key)
    assert r.due == s2.start.astimezone(UTC) - timedelta(hours=24)


# --- a slot in the fall-back overlap ---------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("where", ["overlap start", "mid overlap", "last minute of overlap"])
def test_slot_in_the_overlap_is_its_first_occurrence(zone: str, where: str) -> None:
    exp = BY_ZONE[zone]
    change = fall(zone)
    length = change.before - change.after
    slot = {
        "overlap start": change.wall_from,
        "mid overlap": plus(change.wall_from, length / 2),
        "last minute of overlap": plus(change.wall_to, -timedelta(minutes=1)),
    }[where]
    sunday_before = change.local_day - timedelta(days=7)
    _, p, _ = make(zone, sunday_before, slot)

    s2 = session(p, 2)
    assert s2.start.isoformat() == f"{change.local_day}T{slot:%H:%M}:00{exp.summer}"
    assert s2.start.fold == 0
    assert s2.start.utcoffset() == change.before  # the earlier offset: first occurrence
    first = (datetime.combine(change.local_day, slot) - change.before).replace(tzinfo=UTC)
    second = (datetime.combine(change.local_day, slot) - change.after).replace(tzinfo=UTC)
    assert s2.start.astimezone(UTC) == first == min(first, second)
    assert second - first == length
    assert session(p, 3).start.isoformat() == f"{change.local_day + timedelta(days=7)}T{slot:%H:%M}:00{exp.standard}"


def test_london_overlap_first_occurrence_instant() -> None:
    _, p, _ = make("Europe/London", date(2026, 10, 18), time(1, 30))
    s2 = session(p, 2)
    assert s2.start.isoformat() == "2026-10-25T01:30:00+01:00"
    assert s2.start.astimezone(UTC).isoformat() == "2026-10-25T00:30:00+00:00"


# --- reminder due instants are exact durations -----------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("which", ["spring", "fall"])
def test_72h_reminder_of_the_monday_after_a_change_is_72_real_hours_earlier(zone: str, which: str) -> None:
    change = spring(zone) if which == "spring" else fall(zone)
    monday_after = change.local_day + timedelta(days=1)
    tz = ZoneInfo(zone)
    _, p, _ = make(zone, monday_after - timedelta(days=7), time(10, 0))

    s2 = session(p, 2)
    assert s2.start.date() == monday_after
    r72 = reminder(p, 2, timedelta(hours=72))
    assert r72.due.astimezone(UTC) == s2.start.astimezone(UTC) - timedelta(hours=72)
    due_local = r72.due.astimezone(tz)
    # the Friday before the change, off the session's 10:00 by the shift: 09:00 after a
    # one-hour spring forward, 11:00 after a fall back, 09:30 on Lord Howe, 08:00 on Troll
    assert due_local.date() == monday_after - timedelta(days=3)
    assert due_local.time() == plus(time(10, 0), -change.shift)
    assert due_local.utcoffset() == change.before
    # the 24h reminder does not cross the change (it is in the early hours of Sunday):
    # it stays at 10:00 on Sunday, with the new offset
    r24 = reminder(p, 2, timedelta(hours=24))
    assert r24.due.astimezone(tz).isoformat() == f"{change.local_day}T10:00:00{offset_text(change.after)}"


@pytest.mark.parametrize(
    ("zone", "which", "due_local"),
    [
        ("Europe/London", "spring", "2026-03-28T09:00:00+00:00"),
        ("Europe/London", "fall", "2026-10-24T11:00:00+01:00"),
        ("America/New_York", "spring", "2026-03-07T09:00:00-05:00"),
        ("America/New_York", "fall", "2026-10-31T11:00:00-04:00"),
        ("Australia/Lord_Howe", "spring", "2026-10-03T09:30:00+10:30"),
        ("Australia/Lord_Howe", "fall", "2026-04-04T10:30:00+11:00"),
        ("Pacific/Chatham", "spring", "2026-09-26T09:00:00+12:45"),
        ("Pacific/Chatham", "fall", "2026-04-04T11:00:00+13:45"),
        ("Antarctica/Troll", "spring", "2026-03-28T08:00:00+00:00"),
        ("Antarctica/Troll", "fall", "2026-10-24T12:00:00+02:00"),
    ],
)
def test_24h_reminder_of_a_session_on_the_change_day(zone: str, which: str, due_local: str) -> None:
    """A Sunday 10:00 session just after the change: its 24h reminder is 24 real hours
    earlier, which on the Saturday is 10:00 minus (spring) or plus (fall) the shift."""
    change = spring(zone) if which == "spring" else fall(zone)
    _, p, _ = make(zone, change.local_day - timedelta(days=7), time(10, 0))
    s2 = session(p, 2)
    assert s2.start.isoformat() == f"{change.local_day}T10:00:00{offset_text(change.after)}"
    r24 = reminder(p, 2, timedelta(hours=24))
    assert r24.due.astimezone(ZoneInfo(zone)).isoformat() == due_local
    assert s2.start.astimezone(UTC) - r24.due.astimezone(UTC) == timedelta(hours=24)
    assert r24.due.utcoffset() == timedelta(0)  # due instants are handed out in UTC


@pytest.mark.parametrize("zone", ZONES)
def test_every_session_reminder_is_an_exact_duration_before_its_session(zone: str) -> None:
    """No quiet hours: each client session reminder is exactly 72h or 24h before its session,
    for a course running through both changes of the year."""
    change = spring(zone)
    pol = policy(zone, quiet=False)
    course, p, _ = make(zone, change.local_day - timedelta(days=21), time(7, 15), pol=pol)
    ext, _ = apply(course, "extend", CREATED, IPT16, pol, {"sessions": 4})
    p = plan(ext, IPT16, pol)
    starts = {s.number: s.start.astimezone(UTC) for s in p.sessions}
    session_reminders = [r for r in p.reminders if r.kind == "session_reminder"]
    assert len(session_reminders) == 2 * 16
    for r in session_reminders:
        assert starts[r.session] - r.due in (timedelta(hours=72), timedelta(hours=24))


# --- quiet hours on the day of a change ------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected_due_local"),
    [
        # Sat 07:30 GMT is quiet: moved to 21:00 on the Friday evening the quiet period began
        ("Europe/London", "2026-03-27T21:00:00+00:00"),
        ("America/New_York", "2026-03-06T21:00:00-05:00"),
        # Sat 08:00 on Lord Howe is the end of quiet hours, allowed: not moved
        ("Australia/Lord_Howe", "2026-10-03T08:00:00+10:30"),
        ("Pacific/Chatham", "2026-09-25T21:00:00+12:45"),
        ("Antarctica/Troll", "2026-03-27T21:00:00+00:00"),
    ],
)
def test_quiet_hours_move_a_reminder_pushed_into_the_night_by_the_change(zone: str, expected_due_local: str) -> None:
    """A Sunday 08:30 session after spring forward: 24 real hours earlier is before 08:00 on
    the Saturday (07:30, 08:00 on Lord Howe, 06:30 on Troll), which is quiet for clients."""
    change = spring(zone)
    _, p, _ = make(zone, change.local_day - timedelta(days=7), time(8, 30))
    s2 = session(p, 2)
    assert s2.start.isoformat() == f"{change.local_day}T08:30:00{offset_text(change.after)}"
    rid = reminder_id("dst-1", "session_reminder", 2, s2.start.isoformat(), format_duration(timedelta(hours=24)))
    client_24h = [r for r in p.reminders if r.id == rid]
    assert len(client_24h) == 1
    assert client_24h[0].due.astimezone(ZoneInfo(zone)).isoformat() == expected_due_local
