"""Clashes (SPEC §9): a therapist is booked for ``[start, start + duration + buffer)`` of each
planned session of each active or paused course; two bookings of one therapist that overlap
clash. Pure: bookings come in as values, the store supplies the stored ones."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .model import ACTIVE_STATES, Course, CourseState, Reminder, Session, SessionStatus
from .planner import reminder_id
from .wallclock import zone

BOOKING_STATES = frozenset({*ACTIVE_STATES, CourseState.paused})
#: The therapist of a course created without one: not a person, so never booked.
UNASSIGNED = "unassigned"


@dataclass(frozen=True, order=True)
class Booking:
    """One planned session holding its therapist: ``[start, end)`` in UTC (the end with the
    clinic's buffer); ``local`` is its local start (ISO with offset), ``minutes`` its length."""

    start: datetime
    end: datetime
    therapist: str
    course: str
    session: int
    local: str
    minutes: int
    timezone: str
    owner: str = "course"  # or "group": what ``course`` names


def bookings(course: Course, sessions: Iterable[Session], buffer: timedelta) -> list[Booking]:
    """The bookings of a course's planned sessions (none unless it is active or paused), each
    under its own session's therapist: after a handover the sessions before it still hold the
    previous therapist."""
    if course.state not in BOOKING_STATES:
        return []
    out = []
    member = course.group is not None
    for s in sessions:
        therapist = s.therapist or course.therapist
        if member and s.format == "group":
            continue  # a group member's group sessions are the group's bookings, booked once
        if s.status is SessionStatus.planned and therapist != UNASSIGNED:
            start = s.start.astimezone(UTC)
            out.append(
                Booking(start, start + timedelta(minutes=s.duration_minutes) + buffer, therapist,
                        course.id, s.number, s.start.isoformat(), s.duration_minutes, course.timezone)
            )  # fmt: skip
    return out


def stored_bookings(
    course: str,
    therapist: str,
    timezone: str,
    plan: Sequence[Sequence[Any]] | None,
    buffer: timedelta,
    member: bool = False,
) -> list[Booking]:
    """The bookings of a stored plan (``ipt_courses.plan`` lists: number, phase, start,
    status, duration, format, participants, optional participants, end, therapist, ...), each
    under its session's therapist (``therapist``, the course's, for plans stored before SPEC
    §9 kept one); a course stored before plans were kept has none."""
    out = []
    for s in plan or []:
        if s[3] == "planned" and not (member and s[5] == "group"):
            who = (s[9] if len(s) > 9 else None) or therapist
            if who == UNASSIGNED:
                continue
            start = datetime.fromisoformat(s[2]).astimezone(UTC)
            out.append(Booking(start, start + timedelta(minutes=s[4]) + buffer, who, course, s[0], s[2], s[4],
                               timezone))  # fmt: skip
    return out


def group_bookings(group: str, therapist: str, cotherapist: str | None, timezone: str,
                   sessions: Iterable[Session], buffer: timedelta) -> list[Booking]:  # fmt: skip
    """The bookings of a group's planned sessions: each session's therapist (after a handover,
    the one it was handed to) and the cotherapist."""
    out = []
    for s in sessions:
        if s.status is not SessionStatus.planned:
            continue
        start = s.start.astimezone(UTC)
        end = start + timedelta(minutes=s.duration_minutes) + buffer
        for who in {s.therapist or therapist, cotherapist} - {None, UNASSIGNED}:
            assert who is not None
            out.append(Booking(start, end, who, group, s.number, s.start.isoformat(), s.duration_minutes, timezone,
                               "group"))  # fmt: skip
    return sorted(out)


def stored_group_bookings(
    group: str, therapist: str, cotherapist: str | None, timezone: str, plan: dict[str, Any], buffer: timedelta
) -> list[Booking]:
    """The bookings of a stored group plan (``ipt_groups.plan``)."""
    out = []
    for number, start_text, status, _, who, _, minutes in plan["sessions"]:
        if status != "planned":
            continue
        start = datetime.fromisoformat(start_text).astimezone(UTC)
        end = start + timedelta(minutes=minutes) + buffer
        for t in {who or therapist, cotherapist} - {None, UNASSIGNED}:
            assert t is not None
            out.append(Booking(start, end, t, group, number, start_text, minutes, timezone, "group"))
    return out


def plan_therapists(therapist: str, plan: Iterable[Session]) -> set[str]:
    """The therapists other than the course's own (``therapist``) who hold planned sessions of
    it: the one it was handed over from, until those sessions are past."""
    held = {s.therapist for s in plan if s.status is SessionStatus.planned and s.therapist}
    return held - {therapist, UNASSIGNED}


def new_bookings(before: Sequence[Booking], after: Sequence[Booking]) -> list[Booking]:
    """The bookings of ``after`` that ``before`` did not hold (same therapist, same interval)."""
    held = {(b.therapist, b.start, b.end) for b in before}
    return [b for b in after if (b.therapist, b.start, b.end) not in held]


def clashes(new: Sequence[Booking], booked: Sequence[Booking]) -> list[tuple[Booking, Booking]]:
    """Each new booking paired with the earliest booked one of its therapist it overlaps, in
    time order of the new ones; a sweep over both lists sorted by start."""
    by_therapist: dict[str, list[Booking]] = {}
    for b in booked:
        by_therapist.setdefault(b.therapist, []).append(b)
    for items in by_therapist.values():
        items.sort()
    out: list[tuple[Booking, Booking]] = []
    for b in sorted(new):
        hit = first_overlap(by_therapist.get(b.therapist, ()), b)
        if hit is not None:
            out.append((b, hit))
    return out


def first_overlap(booked: Sequence[Booking], b: Booking) -> Booking | None:
    """The earliest of ``booked`` (sorted by start) that overlaps ``b``, or None."""
    # Bookings are at most a day long (sessions and buffer are bounded), so only those
    # starting in the day before ``b`` ends can reach it.
    i = bisect_left(booked, b.start - timedelta(days=1), key=lambda x: x.start)
    for other in booked[i:]:
        if other.start >= b.end:
            break
        if other.end > b.start:
            return other
    return None


def describe(b: Booking) -> str:
    """``therapist T-07 is booked Mon 2027-01-11 10:00–10:50 GMT (course crs_…, session 2)``."""
    start = datetime.fromisoformat(b.local).astimezone(zone(b.timezone))
    end = start + timedelta(minutes=b.minutes)
    return (
        f"therapist {b.therapist} is booked {start:%a %Y-%m-%d %H:%M}–{end:%H:%M} {start.tzname()} "
        f"({b.owner} {b.course}, session {b.session})"
    )


def conflict_alert(course: Course, mine: Booking, other: Booking, at: datetime) -> Reminder:
    """The ``schedule_conflict`` therapist alert for ``mine`` booked over ``other``, due at
    ``at``; its rule names the other session (``clash:COURSE#N``)."""
    rule = f"clash:{other.course}#{other.session}"
    return Reminder(
        id=reminder_id(course.id, "schedule_conflict", mine.session, mine.local, rule),
        course=course.id,
        kind="schedule_conflict",
        audience="therapist",
        due=at,
        session=mine.session,
        rule=rule,
    )


#: A new course's sessions for ``Ledger``: (start in epoch seconds, minutes, number) each.
Slots = Sequence[tuple[int, int, int]]


class Ledger:
    """Every booking of many therapists in memory, to check a bulk import course by course
    without a query per row: per therapist a sorted list of ints, each one booking packed as
    ``start << 42 | minutes << 31 | owner << 7 | session`` (owner: an index into ``owners``)."""

    def __init__(self, buffer: timedelta) -> None:
        self.buffer = int(buffer.total_seconds())
        self.owners: list[tuple[str, str, str]] = []  # (course, therapist, timezone)
        self.by_therapist: dict[str, list[int]] = {}
        self.longest = 0  # the longest booking so far, in seconds: how far back one can reach

    def seed(self, booked: Iterable[Booking]) -> None:
        owners: dict[tuple[str, str], int] = {}  # a course handed over books two therapists
        for b in booked:
            owner = owners.get((b.course, b.therapist))
            if owner is None:
                owner = owners[b.course, b.therapist] = self._owner(b.course, b.therapist, b.timezone)
            self.book(b.therapist, owner, [(int(b.start.timestamp()), b.minutes, b.session)])

    def _owner(self, course: str, therapist: str, timezone: str) -> int:
        self.owners.append((course, therapist, timezone))
        return len(self.owners) - 1

    def check(self, course: str, therapist: str, timezone: str, slots: Slots) -> tuple[int, int, Booking | None]:
        """The new course's owner index, and its first session that clashes with the booking
        it clashes with (``0, None`` when none does)."""
        owner = self._owner(course, therapist, timezone)
        booked = self.by_therapist.get(therapist)
        if not booked:
            return owner, 0, None
        back, buffer, count = self.longest, self.buffer, len(booked)
        for start, minutes, number in slots:  # a hot loop: 1.2 million sessions in a big import
            end = start + minutes * 60 + buffer
            i = bisect_left(booked, (start - back) << 42)
            while i < count:
                packed = booked[i]
                other = packed >> 42
                if other >= end:
                    break
                if other + ((packed >> 31) & 0x7FF) * 60 + buffer > start:
                    return owner, number, self.booking(packed)
                i += 1
        return owner, 0, None

    def book(self, therapist: str, owner: int, slots: Slots) -> None:
        booked = self.by_therapist.setdefault(therapist, [])
        tag = owner << 7
        for start, minutes, number in slots:
            insort(booked, start << 42 | minutes << 31 | tag | number)
        self.longest = max(self.longest, max((m for _, m, _ in slots), default=0) * 60 + self.buffer)

    def busy(self, therapist: str, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        """(start, end plus the buffer) in UTC of ``therapist``'s bookings that overlap ``[lo, hi)``."""
        booked = self.by_therapist.get(therapist, [])
        first, last = int(lo.timestamp()), int(hi.timestamp())
        out = []
        for packed in booked[bisect_left(booked, (first - self.longest) << 42) :]:
            start = packed >> 42
            if start >= last:
                break
            end = start + ((packed >> 31) & 0x7FF) * 60 + self.buffer
            if end > first:
                out.append((datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)))
        return out

    def booking(self, packed: int) -> Booking:
        course, therapist, tz = self.owners[(packed >> 7) & 0xFFFFFF]
        start = datetime.fromtimestamp(packed >> 42, UTC)
        minutes = (packed >> 31) & 0x7FF
        local = start.astimezone(zone(tz)).isoformat()
        end = start + timedelta(minutes=minutes, seconds=self.buffer)
        return Booking(start, end, therapist, course, packed & 0x7F, local, minutes, tz)
