"""A course's plan as a calendar (SPEC §9): a weekly series, changed "this and following"
by ``change_slot``, with one-off moves of single sessions (``reschedule_session``) and
therapist handovers (``change_therapist``); the RFC 5545 words are RRULE, RECURRENCE-ID
and THISANDFUTURE. Pure: everything here is read from the course's history.

Every change is keyed by the cadence *step* (the slot of the series a session sits in),
not by the session number: a miss or cancellation leaves later sessions in their slots,
and a pause or a holiday skip moves sessions to later slots, so a move made for one week
stays with that week and never lands out of order among shifted sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .errors import InvalidInput
from .model import Course
from .wallclock import parse_date, parse_time, zone

CALENDAR_EVENTS = ("reschedule_session", "change_slot", "change_therapist")


@dataclass(frozen=True)
class Segment:
    """From cadence step ``step`` on, the series runs from ``anchor`` at ``slot``."""

    step: int
    anchor: date
    slot: time


@dataclass(frozen=True)
class Calendar:
    """The series segments (first one: the course's start and slot), one-off moves by
    step (local starts), and handovers as (first step, therapist), in order."""

    segments: tuple[Segment, ...]
    moves: dict[int, datetime] = field(default_factory=dict)
    handovers: tuple[tuple[int, str], ...] = ()
    first_therapist: str = ""

    def segment(self, step: int) -> Segment:
        """The segment that holds ``step``."""
        found = self.segments[0]
        for seg in self.segments[1:]:
            if seg.step > step:
                break
            found = seg
        return found

    def next_change(self, step: int) -> int | None:
        """The first step after ``step`` where the series changes or a session was moved."""
        later = [s.step for s in self.segments if s.step > step] + [s for s in self.moves if s > step]
        return min(later) if later else None

    def therapist(self, step: int) -> str:
        who = self.first_therapist
        for first, therapist in self.handovers:
            if first <= step:
                who = therapist
        return who


def calendar_of(course: Course) -> Calendar:
    """The calendar that the course's history states."""
    segments = [Segment(0, course.start, course.slot)]
    moves: dict[int, datetime] = {}
    handovers: list[tuple[int, str]] = []
    first = course.therapist
    tz: ZoneInfo | None = None
    absent = {a.id for a in course.absences}
    for entry in course.history:
        if entry.event not in CALENDAR_EVENTS:
            continue
        data = entry.data
        if "absence" in data and data["absence"] not in absent:
            continue  # a move made to dodge a clash during an absence that was since removed
        step = int(data["step"])
        if entry.event == "reschedule_session":
            tz = tz or zone(course.timezone)
            moves[step] = datetime.fromisoformat(str(data["new_start"])).astimezone(tz)
        elif entry.event == "change_slot":
            segments = [s for s in segments if s.step < step]
            segments.append(Segment(step, date.fromisoformat(str(data["anchor"])), time.fromisoformat(data["time"])))
            moves = {s: m for s, m in moves.items() if s < step}
        else:
            if not handovers:
                first = str(data["previous"])
            handovers.append((step, str(data["therapist"])))
    if len(segments) == 1 and not moves and not handovers:
        return Calendar(tuple(segments), first_therapist=first)
    return Calendar(tuple(segments), moves, tuple(handovers), first)


def local_text(value: datetime) -> str:
    """``Mon 2027-01-18 10:00 GMT``: local wall time, weekday and zone abbreviation."""
    return f"{value:%a %Y-%m-%d %H:%M} {value.tzname()}"


def explicit_start(text: str, tz: ZoneInfo, where: str) -> datetime:
    """A local ``YYYY-MM-DDTHH:MM`` in ``tz`` as an aware local datetime; an ambiguous time
    is its first occurrence; one in a daylight-saving gap raises InvalidInput naming it."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})", text.strip())
    if not match:
        raise InvalidInput(f"{where}: '{text}' is not a local start (YYYY-MM-DDTHH:MM)")
    day = parse_date(match.group(1), where)
    return wall_start(day, parse_time(match.group(2), where), tz, where)


def wall_start(day: date, at: time, tz: ZoneInfo, where: str) -> datetime:
    """``day`` at ``at`` in ``tz``; raises InvalidInput when that wall time does not exist."""
    naive = datetime.combine(day, at)
    local = naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
    if local.replace(tzinfo=None) != naive:
        lo, hi = _gap(naive, tz)
        raise InvalidInput(
            f"{where}: {naive:%Y-%m-%d %H:%M} does not exist in {tz.key}: the clocks go forward "
            f"from {lo:%H:%M} to {hi:%H:%M} that day ({lo.tzname()} to {hi.tzname()})"
        )
    return local


def _gap(naive: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The aware local instants just before and at the end of the gap ``naive`` falls in."""
    before = naive.replace(tzinfo=tz, fold=0).utcoffset() or timedelta(0)
    after = naive.replace(tzinfo=tz, fold=1).utcoffset() or timedelta(0)
    lo, hi = naive - after, naive - before  # (as UTC) the change lies between these instants
    lo_u, hi_u = lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC)
    while hi_u - lo_u > timedelta(minutes=1):
        mid = lo_u + (hi_u - lo_u) / 2
        if mid.astimezone(tz).utcoffset() == before:
            lo_u = mid
        else:
            hi_u = mid
    change = hi_u.replace(second=0, microsecond=0)
    return (change - timedelta(minutes=1)).astimezone(tz) + timedelta(minutes=1), change.astimezone(tz)
