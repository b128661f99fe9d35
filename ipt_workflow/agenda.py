"""Seeing the calendar (SPEC §9): the agenda (every session a therapist, or the clinic, has
over some days) and the free weekly slots where a new course would fit.

The agenda reads the stored plans on the quick path of ``storage.reads`` (no rules, no
models) so a therapist's week shows in a blink; only the ICS feed loads the courses, so its
VEVENTs are the very ones ``ipt plan --format ics`` writes. Slots plan a hypothetical course
the way ``course create`` builds one and check it against the therapist's bookings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from .core.errors import InvalidInput, mentioning
from .core.values import DateLike, ZoneLike, as_date, as_zone_name
from .core.wallclock import local_instant, parse_duration, parse_time, zone
from .storage.reads import calendar_courses, calendar_groups

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .core.policy import ClinicPolicy
    from .rulebook.files import Rulebook
    from .storage.sql import SqlStore

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FINISHED = frozenset({"completed", "withdrawn"})
#: Sessions of a course stored before plans were kept, by course id (the planner's answer).
Replan = Callable[[str], list[dict[str, Any]]]


# ---------------------------------------------------------------- agenda


def agenda_window(
    clinic_zone: str, now: datetime, start: DateLike | None, until: DateLike | None
) -> tuple[datetime, datetime]:
    """``[from, until]`` as local midnights ``[lo, hi)`` in the clinic's zone: both days
    included; one alone gives the week from (or up to) it; neither, the week (Monday to
    Sunday) that holds ``now``. Raises InvalidInput naming ``start`` or ``until``."""
    tz = zone(clinic_zone)
    first = as_date(start, "start") if start is not None else None
    last = as_date(until, "until") if until is not None else None
    if first is None and last is None:
        today = now.astimezone(tz).date()
        first = today - timedelta(days=today.weekday())
    if first is None:
        assert last is not None
        first = last - timedelta(days=6)
    if last is None:
        last = first + timedelta(days=6)
    if last < first:
        raise mentioning(InvalidInput(f"until: {last.isoformat()} is before start {first.isoformat()}"), "start")
    return local_instant(first, time(0), tz), local_instant(last + timedelta(days=1), time(0), tz)


@dataclass(frozen=True)
class Agenda:
    """``rows``: the SPEC §9 agenda entries in start order; ``zones``: each course's zone."""

    rows: list[dict[str, Any]]
    zones: dict[str, str]


def agenda(db: str | Engine, therapist: str | None, lo: datetime, hi: datetime, replan: Replan | None = None) -> Agenda:
    """The sessions starting in ``[lo, hi)`` of every course (or those ``therapist`` gives:
    by the session's therapist, so a course handed over shows each session with the one who
    gives it), in start order: ``{therapist, course, group, client, session, phase, start,
    end, status, original_start}``. Recorded sessions show with their status; a completed
    or withdrawn course shows no planned ones. ``replan`` gives the sessions of a course
    stored before plans were kept (left out without it).

    A group's session is one entry (``group`` its id, ``course`` and ``client`` null, its
    therapist and cotherapist both give it); its members' group sessions are not listed,
    their pre-group sessions are (as their courses')."""
    found: list[tuple[datetime, str, int, dict[str, Any]]] = []
    zones: dict[str, str] = {}
    phases: dict[tuple[str, int], str] = {}  # a group session's phase, from a member's plan
    for c in calendar_courses(db, therapist):
        sessions = c["sessions"]
        if sessions is None:
            sessions = replan(c["id"]) if replan is not None else []
        finished = c["state"] in FINISHED
        for s in sessions:
            if c["group"] is not None and s["format"] == "group":
                phases.setdefault((c["group"], s["number"]), s["phase"])
                continue  # the group's session is listed once, as the group's
            if therapist is not None and s["therapist"] != therapist:
                continue
            if finished and s["status"] == "planned":
                continue
            start = datetime.fromisoformat(s["start"])
            if not lo <= start < hi:
                continue
            zones[c["id"]] = c["timezone"]
            row = {
                "therapist": s["therapist"],
                "course": c["id"],
                "group": None,
                "client": c["client"],
                "session": s["number"],
                "phase": s["phase"],
                "start": s["start"],
                "end": s["end"],
                "status": s["status"],
                "original_start": s["original_start"],
            }
            found.append((start, c["id"], s["number"], row))
    for g in calendar_groups(db, therapist):
        for s in g["sessions"]:
            gives = {s["therapist"], g["cotherapist"]} if s["therapist"] == g["therapist"] else {s["therapist"]}
            if therapist is not None and therapist not in gives:
                continue
            if g["state"] in FINISHED and s["status"] == "planned":
                continue
            start = datetime.fromisoformat(s["start"])
            if not lo <= start < hi:
                continue
            zones[g["id"]] = g["timezone"]
            row = {
                "therapist": therapist if therapist is not None else s["therapist"],
                "course": None,
                "group": g["id"],
                "client": None,
                "session": s["number"],
                "phase": phases.get((g["id"], g["individual_first"] + s["number"])),
                "start": s["start"],
                "end": s["end"],
                "status": s["status"],
                "original_start": s["original_start"],
            }
            found.append((start, g["id"], s["number"], row))
    found.sort(key=lambda x: x[:3])
    return Agenda([row for *_, row in found], zones)


def stored_sessions(store: SqlStore, rules: Rulebook, course_id: str) -> list[dict[str, Any]]:
    """A course's sessions from the planner (``Replan`` for a course stored without its plan)."""
    from .present.views import session_json
    from .services import show

    return [session_json(s) for s in show(store, rules, course_id)[1].sessions]


def agenda_calendar(store: SqlStore, rules: Rulebook, rows: list[dict[str, Any]], stamp: datetime, name: str) -> bytes:
    """The ICS feed of agenda ``rows``: per session the VEVENT ``ipt plan --format ics``
    writes for it (same UID, SEQUENCE, LAST-MODIFIED, alarms), per group session the one
    ``ipt group show --format ics`` writes, in agenda order."""
    from .core.model import Plan
    from .groups import group_session_events
    from .interop.ics import new_calendar, session_events
    from .services import show

    wanted: dict[str, set[int]] = {}
    wanted_groups: dict[str, set[int]] = {}
    for r in rows:
        if r["course"] is None:
            wanted_groups.setdefault(r["group"], set()).add(r["session"])
        else:
            wanted.setdefault(r["course"], set()).add(r["session"])
    events = {}
    for course_id, numbers in wanted.items():
        course, plan = show(store, rules, course_id)
        mine = Plan(sessions=[s for s in plan.sessions if s.number in numbers], reminders=plan.reminders)
        for s, event in zip(mine.sessions, session_events(course, mine, stamp), strict=True):
            events[(course_id, s.number)] = event
    for group_id, numbers in wanted_groups.items():
        for number, event in group_session_events(store, rules, group_id, stamp):
            if number in numbers:
                events[(group_id, number)] = event
    cal = new_calendar(name)
    for r in rows:
        found = events.get((r["course"] or r["group"], r["session"]))
        if found is not None:
            cal.add_component(found)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


# ---------------------------------------------------------------- slots


def parse_weekdays(text: str, where: str = "weekdays") -> list[int]:
    """``mon,wed,fri`` as weekday numbers (Monday 0), sorted; raises InvalidInput."""
    days = set()
    for part in text.split(","):
        name = part.strip().lower()
        if name not in WEEKDAYS:
            raise InvalidInput(f"{where}: '{part.strip()}' is not a weekday ({', '.join(WEEKDAYS)})")
        days.add(WEEKDAYS.index(name))
    return sorted(days)


def parse_between(text: str, where: str = "between") -> tuple[time, time]:
    """``HH:MM-HH:MM`` as (start, end), start before end; raises InvalidInput."""
    first, dash, second = text.partition("-")
    if not dash:
        raise InvalidInput(f"{where}: '{text}' is not a range of times (HH:MM-HH:MM)")
    lo, hi = parse_time(first, where), parse_time(second, where)
    if hi <= lo:
        raise InvalidInput(f"{where}: '{text}' ends before it starts")
    return lo, hi


def parse_step(text: str, where: str = "step") -> timedelta:
    """A step between candidate times: whole minutes, 1 minute to 24 hours."""
    step = parse_duration(text, where)
    if not timedelta(minutes=1) <= step <= timedelta(days=1) or step % timedelta(minutes=1):
        raise InvalidInput(f"{where}: '{text}' is not a step of 1m to 24h")
    return step


@dataclass(frozen=True)
class SlotQuery:
    """What ``slots`` looks for; every field checked (``slot_query``)."""

    therapist: str
    first_day: date
    protocol: str
    weekdays: list[int]
    between: tuple[time, time]
    step: timedelta
    limit: int
    timezone: str


def slot_query(
    rules: Rulebook,
    *,
    therapist: str,
    start: DateLike,
    protocol: str | None = None,
    weekdays: str | None = None,
    between: str | None = None,
    step: str = "15m",
    limit: int = 10,
    tz: ZoneLike | None = None,
) -> SlotQuery:
    """Read the options of ``ipt slots``; defaults: protocol ipt-16 (as ``course create``),
    the clinic's working days and hours, 15-minute steps, 10 slots, the clinic's zone. A
    weekday or a time outside the working days or hours is refused: nothing there can fit."""
    from .services import DEFAULT_PROTOCOL

    clinic = rules.clinic
    days = parse_weekdays(weekdays) if weekdays is not None else sorted(clinic.working_weekdays)
    closed = [WEEKDAYS[d] for d in days if d not in clinic.working_weekdays]
    if closed:
        raise InvalidInput(
            f"weekdays: '{closed[0]}' is not one of the clinic's working days ({', '.join(clinic.working_days)})"
        )
    hours = clinic.working_hours
    window = parse_between(between) if between is not None else (hours.start_time, hours.end_time)
    if window[0] < hours.start_time or window[1] > hours.end_time:
        hours_text = f"{hours.start}-{hours.end}"
        raise InvalidInput(f"between: '{between}' is not within the clinic's working hours ({hours_text})")
    rules.named(protocol or DEFAULT_PROTOCOL)  # an unknown one (or version) is refused here
    name = as_zone_name(tz if tz is not None else clinic.timezone, "tz")
    return SlotQuery(therapist, as_date(start, "start"), protocol or DEFAULT_PROTOCOL, days, window,
                     parse_step(step), limit, name)  # fmt: skip


def slots(store: SqlStore, rules: Rulebook, q: SlotQuery, now: datetime) -> list[dict[str, Any]]:
    """The weekly slots, in the week from ``q.first_day``, where a new course of
    ``q.protocol`` fits: every planned session (after holiday and absence moves) inside the
    clinic's working days and hours and clear of the therapist's bookings (plus the clinic's
    session_buffer). ``{weekday, time, first, last, moved}`` each, earliest first session
    first, at most ``q.limit``; ``moved`` counts the sessions a holiday or absence moved off
    the series (a skipped slot counts as one). Candidates starting before ``now`` are left out."""
    from .core.clashes import bookings, first_overlap
    from .core.planner import plan as plan_of
    from .services import build_course

    clinic, buffer = rules.clinic, rules.clinic.buffer()
    booked = sorted(store.booked({q.therapist}, buffer))
    away = store.absences({q.therapist})
    duration = timedelta(minutes=rules.named(q.protocol).duration_minutes)
    found: list[tuple[datetime, dict[str, Any]]] = []
    for series_first, day, at in _candidates(q, duration):
        if len(found) >= q.limit and series_first > found[q.limit - 1][0]:
            break  # a first session is never earlier than where the series puts it
        if series_first <= now:
            continue
        course, plan = build_course(
            rules, client="slot", start=day.isoformat(), time=f"{at:%H:%M}", tz=q.timezone, now=now,
            protocol_id=q.protocol, therapist=q.therapist, course_id="slot",
        )  # fmt: skip
        if away:
            course = course.model_copy(update={"absences": away})
            plan = plan_of(course, rules.named(q.protocol), clinic)
        sessions = plan.sessions
        if not sessions or not all(_in_hours(s.start, s.end, clinic) for s in sessions):
            continue
        if any(first_overlap(booked, b) is not None for b in bookings(course, sessions, buffer)):
            continue
        cadence = timedelta(weeks=rules.named(q.protocol).cadence_weeks)
        tz = zone(q.timezone)
        moved = sum(s.start != local_instant(day + cadence * s.step, at, tz) for s in sessions)
        moved += max(s.step for s in sessions) + 1 - len(sessions)  # slots a closure skipped
        entry = {"weekday": WEEKDAYS[day.weekday()], "time": f"{at:%H:%M}", "first": sessions[0].start.isoformat(),
                 "last": sessions[-1].start.isoformat(), "moved": moved}  # fmt: skip
        found.append((sessions[0].start, entry))
        found.sort(key=lambda x: x[0])
    return [entry for _, entry in found[: q.limit]]


def _candidates(q: SlotQuery, duration: timedelta) -> Iterator[tuple[datetime, date, time]]:
    """(where the series puts the first session, day, time) of each candidate slot in the
    week from ``q.first_day``, in time order."""
    tz = zone(q.timezone)
    lo, hi = q.between
    for offset in range(7):
        day = q.first_day + timedelta(days=offset)
        if day.weekday() not in q.weekdays:
            continue
        at = datetime.combine(day, lo)
        while at + duration <= datetime.combine(day, hi):
            yield local_instant(day, at.time(), tz), day, at.time()
            at += q.step


def _in_hours(start: datetime, end: datetime, clinic: ClinicPolicy) -> bool:
    """A session (local start and end) on a working day, within the working hours."""
    hours = clinic.working_hours
    return (
        clinic.is_working_day(start.date())
        and end.date() == start.date()
        and hours.start_time <= start.time()
        and end.time() <= hours.end_time
    )
