"""The stateless what-if: one course run through a list of ``{at, event, data}`` with no
store. Deterministic: the same input gives the same output, ids included.

Reminders are followed as time passes: one a replan removed before it was due is
``cancelled``; one whose due instant is at or before the end of the run (``now``, else the
last event) is ``delivered``, as a daemon that ran on time would have it; the rest are
``pending``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any

from .core.errors import InvalidInput, IptError
from .core.lifecycle import apply, new_course
from .core.model import Course, Group, Plan, Reminder, ReminderStatus, Session
from .core.planner import plan
from .core.policy import ClinicPolicy
from .core.protocol import Protocol
from .core.values import DateLike, TimeLike, ZoneLike, as_date, as_time, as_zone_name
from .core.wallclock import check_year, local_instant, parse_instant, zone

MIDNIGHT = time(0, 0)


@dataclass(frozen=True)
class SimulationEvent:
    at: datetime
    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Simulation:
    course: Course
    plan: Plan
    reminders: list[Reminder]


def parse_events(raw: Any, tz_name: str, where: str = "events") -> list[SimulationEvent]:
    """A list of ``{at, event, data}`` mappings; a naive ``at`` is read in the course's zone.
    Raises InvalidInput naming the entry and field."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(f"{where}: must be a list of {{at, event, data}}, not {type(raw).__name__}")
    tz = zone(tz_name)
    out = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{here}: must be a mapping with at, event and data")
        extra = set(item) - {"at", "event", "data"}
        if extra:
            raise InvalidInput(f"{here}: unknown field '{sorted(extra)[0]}' (fields: at, event, data)")
        for key in ("at", "event"):
            if key not in item:
                raise InvalidInput(f"{here}.{key}: required field is missing")
        at_raw = item["at"]
        at = at_raw if isinstance(at_raw, datetime) else None
        if isinstance(at_raw, date) and not isinstance(at_raw, datetime):
            raise InvalidInput(f"{here}.at: '{at_raw}' needs a time of day too")
        if at is None:
            at = parse_instant(str(at_raw), tz, f"{here}.at")
        else:
            check_year(at, f"{here}.at")
        if at.tzinfo is None:
            at = local_instant(at.date(), at.time(), tz)
        data = item.get("data") or {}
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{here}.data: must be a mapping")
        out.append(SimulationEvent(at=at.astimezone(UTC), event=str(item["event"]), data=dict(data)))
    return out


def simulate(
    protocol: Protocol,
    policy: ClinicPolicy,
    *,
    start: DateLike,
    events: Sequence[SimulationEvent],
    time: TimeLike | None = None,
    tz: ZoneLike | None = None,
    course_id: str = "sim",
    client: str = "sim-client",
    therapist: str = "sim-therapist",
    now: datetime | None = None,
    slot: TimeLike | None = None,
    timezone: ZoneLike | None = None,
) -> Simulation:
    """Run the course (first session on ``start`` at ``time`` in ``tz``; ``slot`` and
    ``timezone`` are accepted too); raises InvalidInput/Refused naming the event index that
    failed."""
    first = as_date(start, "start")
    at = time if time is not None else slot
    where = tz if tz is not None else timezone
    if at is None or where is None:
        raise InvalidInput(f"{'time' if at is None else 'tz'}: missing")
    wall, zone_name = as_time(at, "time"), as_zone_name(where, "tz")
    created = local_instant(first, MIDNIGHT, zone(zone_name)).astimezone(UTC)
    if events:
        created = min(created, events[0].at)
    course = new_course(
        protocol, policy, course_id=course_id, client=client, therapist=therapist,
        start=first, time=wall, tz=zone_name, now=created,
    )  # fmt: skip
    seen: dict[str, Reminder] = {r.id: r for r in plan(course, protocol, policy).reminders}
    cancelled: set[str] = set()
    for i, ev in enumerate(events):
        try:
            course, effects = apply(course, ev.event, ev.at, protocol, policy, ev.data)
        except IptError as exc:
            exc.args = (f"events[{i}]: {exc}",)  # name the entry; the message stays one line
            raise
        for rid in effects.cancelled:
            if seen[rid].due > ev.at:
                cancelled.add(rid)
        for r in effects.added:
            seen[r.id] = r
            cancelled.discard(r.id)
    end = now or (events[-1].at if events else created)
    final = plan(course, protocol, policy)
    out = []
    for r in sorted(seen.values(), key=lambda r: (r.due, r.id)):
        if r.id in cancelled:
            status = ReminderStatus.cancelled
        elif r.due <= end:
            status = ReminderStatus.delivered
        else:
            status = ReminderStatus.pending
        out.append(r.model_copy(update={"status": status}))
    return Simulation(course=course, plan=final, reminders=out)


# ---------------------------------------------------------------- groups

#: Top-level fields of a group simulation file.
GROUP_FIELDS = ("protocol", "start", "time", "tz", "id", "therapist", "min", "max", "members", "events", "now")


@dataclass(frozen=True)
class GroupSimulation:
    group: Group
    sessions: list[Session]
    members: list[Simulation]


@dataclass(frozen=True)
class GroupSpec:
    """A group simulation file, read and checked (``parse_group``)."""

    protocol: str
    start: date
    slot: time
    timezone: str
    group_id: str
    therapist: str
    min: int
    max: int
    members: list[tuple[str, str, list[datetime] | None]]  # (course id, client, pre-group starts or None)
    events: list[tuple[SimulationEvent, str | None]]  # (event, member course id or None: the group's)
    now: datetime | None


def parse_group(raw: Any, where: str) -> GroupSpec:
    """A mapping ``{protocol, start, time, tz, members, events, [id, therapist, min, max,
    now]}``: ``members`` a list of course ids or ``{id, client, pre}``; ``events`` a list of
    ``{at, event, data, member}`` (no ``member``: a group event, as ``ipt group event``).
    Raises InvalidInput naming the field."""
    from .core.model import check_reference
    from .core.wallclock import parse_date, parse_time

    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be a mapping with protocol, start, time, tz, members and events")
    extra = sorted(set(raw) - set(GROUP_FIELDS))
    if extra:
        raise InvalidInput(f"{where}: unknown field '{extra[0]}' (fields: {', '.join(GROUP_FIELDS)})")
    for key in ("protocol", "start", "time", "tz", "members"):
        if key not in raw:
            raise InvalidInput(f"{where}.{key}: required field is missing")
    tz_name = str(raw["tz"])
    try:
        tz = zone(tz_name)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.tz: {exc}") from None
    start_raw, time_raw = raw["start"], raw["time"]
    start = start_raw if isinstance(start_raw, date) else parse_date(str(start_raw), f"{where}.start")
    if isinstance(time_raw, int):  # YAML 1.1 reads 10:00 as 600 (minutes, sexagesimal)
        time_raw = f"{time_raw // 60:02d}:{time_raw % 60:02d}"
    slot = parse_time(str(time_raw), f"{where}.time")
    members_raw = raw["members"]
    if not isinstance(members_raw, list) or not members_raw:
        raise InvalidInput(f"{where}.members: must be a non-empty list of course ids or {{id, client, pre}}")
    members: list[tuple[str, str, list[datetime] | None]] = []
    for i, m in enumerate(members_raw):
        here = f"{where}.members[{i}]"
        entry = {"id": m} if not isinstance(m, Mapping) else dict(m)
        unknown = sorted(set(entry) - {"id", "client", "pre"})
        if unknown:
            raise InvalidInput(f"{here}: unknown field '{unknown[0]}' (fields: id, client, pre)")
        if "id" not in entry:
            raise InvalidInput(f"{here}.id: required field is missing")
        course_id = check_reference(str(entry["id"]), f"{here}.id")
        if any(course_id == other for other, _, _ in members):
            raise InvalidInput(f"{here}.id: '{course_id}' is given twice")
        pre = entry.get("pre")
        starts = None
        if pre is not None:
            items = pre if isinstance(pre, list) else [pre]
            starts = [
                local_instant(p.date(), p.time(), tz) if isinstance(p, datetime) and p.tzinfo is None
                else p if isinstance(p, datetime) else parse_instant(str(p), tz, f"{here}.pre")
                for p in items
            ]  # fmt: skip
        members.append((course_id, str(entry.get("client", f"client-{course_id}")), starts))
    ids = {m for m, _, _ in members}
    raw_events = raw.get("events") or []
    if not isinstance(raw_events, list):
        raise InvalidInput(f"{where}.events: must be a list of {{at, event, data, member}}")
    names: list[str | None] = []
    for i, item in enumerate(raw_events):
        member = item.get("member") if isinstance(item, Mapping) else None
        if member is not None and member not in ids:
            raise InvalidInput(f"{where}.events[{i}].member: '{member}' is not one of the members")
        names.append(member)
    plain = [{k: v for k, v in e.items() if k != "member"} if isinstance(e, Mapping) else e for e in raw_events]
    events = list(zip(parse_events(plain, tz_name, f"{where}.events"), names, strict=True))
    bad = next((i for i, (a, b) in enumerate(pairwise(events)) if b[0].at < a[0].at), None)
    if bad is not None:
        raise InvalidInput(f"{where}.events[{bad + 1}].at: before the event above it (events go in time order)")
    now = parse_instant(str(raw["now"]), tz, f"{where}.now") if raw.get("now") is not None else None
    try:
        min_size, max_size = int(raw.get("min", 1)), int(raw.get("max", max(len(members), 1)))
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}.min/max: must be whole numbers") from None
    return GroupSpec(
        protocol=str(raw["protocol"]), start=start, slot=slot, timezone=tz_name,
        group_id=check_reference(str(raw.get("id", "sim-group")), f"{where}.id"),
        therapist=check_reference(str(raw.get("therapist", "sim-therapist")), f"{where}.therapist"),
        min=min_size, max=max_size, members=members, events=events, now=now,
    )  # fmt: skip


def simulate_group(protocol: Protocol, policy: ClinicPolicy, spec: GroupSpec) -> GroupSimulation:
    """Run a group and its members through ``spec.events`` with no store, as ``ipt group
    add`` and ``ipt group event`` (and ``ipt course event`` for an event naming a member)
    would. Deterministic. Raises InvalidInput/Refused naming the entry that failed."""
    from .core.groups import (
        active,
        free_pre_starts,
        group_event,
        group_sessions,
        member_course,
        members_event,
        moves,
        new_group,
        plan_of,
        regrouped,
        size_review,
        with_attendance,
    )

    tz = zone(spec.timezone)
    created = local_instant(spec.start - timedelta(days=PRE_DAYS), time(0, 0), tz).astimezone(UTC)
    if spec.events:
        created = min(created, spec.events[0][0].at)
    group = new_group(
        protocol, group_id=spec.group_id, therapist=spec.therapist, cotherapist=None, start=spec.start,
        slot=spec.slot, timezone=spec.timezone, min_size=spec.min, max_size=spec.max, now=created,
    )  # fmt: skip
    if len(spec.members) > group.max:
        raise InvalidInput(f"members: {len(spec.members)} members, more than max {group.max}")
    all_sessions = group_sessions(group, protocol, policy)
    members: dict[str, Course] = {}
    seen: dict[str, dict[str, Reminder]] = {}
    cancelled: dict[str, set[str]] = {}
    busy: list[tuple[datetime, datetime]] = []
    buffer = policy.buffer()
    for i, (course_id, client, pre) in enumerate(spec.members):
        try:
            starts = pre if pre is not None else free_pre_starts(
                group, protocol, policy, [], created, protocol.individual_first, (), busy
            )  # fmt: skip
        except InvalidInput as exc:
            raise InvalidInput(f"members[{i}]: {exc}") from None
        length = timedelta(minutes=protocol.duration_minutes)
        busy += [(s.astimezone(UTC), (s + length + buffer).astimezone(UTC)) for s in starts]
        course, p = member_course(group, protocol, policy, client=client, course_id=course_id, starts=starts,
                                  all_sessions=all_sessions, now=created)  # fmt: skip
        members[course_id] = course
        seen[course_id] = {r.id: r for r in p.reminders}
        cancelled[course_id] = set()

    def record(course_id: str, after: Course, added: list[Reminder], gone: list[str], at: datetime) -> None:
        members[course_id] = after
        for rid in gone:
            if seen[course_id][rid].due > at:
                cancelled[course_id].add(rid)
        for r in added:
            seen[course_id][r.id] = r
            cancelled[course_id].discard(r.id)

    for i, (ev, member) in enumerate(spec.events):
        try:
            if member is not None:
                before = members[member]
                after, effects = apply(before, ev.event, ev.at, protocol, policy, ev.data)
                added = list(effects.added)
                if before.state != after.state:
                    states = {m.id: m.state for m in members.values()}
                    alert = size_review(after, group, active(states), active({**states, member: after.state}), ev.at)
                    if alert is not None:
                        after = after.model_copy(update={"alerts": sorted([*after.alerts, alert],
                                                                          key=lambda a: (a.due, a.id))})  # fmt: skip
                        added.append(alert)
                record(member, after, added, list(effects.cancelled), ev.at)
                continue
            data = dict(ev.data)
            absent = list(data.get("absent", []) or []) if ev.event == "hold_session" else []
            stranger = next((a for a in absent if a not in members), None)
            if stranger is not None:
                raise InvalidInput(f"event '{ev.event}' data: absent: {stranger!r} is not a member of group {group.id}")
            before_sessions = group_sessions(group, protocol, policy)
            after_group, note = group_event(group, ev.event, ev.at, protocol, policy, data)
            after_sessions = group_sessions(after_group, protocol, policy)
            gp = plan_of(after_group, after_sessions, protocol.individual_first)
            moved = moves(before_sessions, after_sessions)
            done, present_ids, absent_ids = members_event(
                after_group, ev.event, note, list(members.values()), absent, moved, ev.at, protocol, policy
            )
            for m, new, history in done:
                course, _, effects = regrouped(m, gp, protocol, policy, ev.at, None if new is None else (new, history))
                record(m.id, course, list(effects.added), list(effects.cancelled), ev.at)
            group = with_attendance(after_group, present_ids, absent_ids) if ev.event == "hold_session" else after_group
        except IptError as exc:
            exc.args = (f"events[{i}]: {exc}",)
            raise
    end = spec.now or (spec.events[-1][0].at if spec.events else created)
    out = []
    for course_id, course in members.items():
        final = plan(course, protocol, policy)
        reminders = []
        for r in sorted(seen[course_id].values(), key=lambda r: (r.due, r.id)):
            status = (ReminderStatus.cancelled if r.id in cancelled[course_id]
                      else ReminderStatus.delivered if r.due <= end else ReminderStatus.pending)  # fmt: skip
            reminders.append(r.model_copy(update={"status": status}))
        out.append(Simulation(course=course, plan=final, reminders=reminders))
    return GroupSimulation(group=group, sessions=group_sessions(group, protocol, policy), members=out)


#: A simulated group starts this many days before its first session (its pre-group window).
PRE_DAYS = 15
