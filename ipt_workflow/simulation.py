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
from datetime import UTC, date, datetime, time
from typing import Any

from .core.errors import InvalidInput, IptError
from .core.lifecycle import apply, new_course
from .core.model import Course, Plan, Reminder, ReminderStatus
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
