"""Use cases: each opens what it needs on the store, calls the core, saves, and returns
plain results. The clock is read by the caller (CLI or ``Workflow``), never here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from time import time_ns
from typing import TYPE_CHECKING, Any

from .core.clashes import UNASSIGNED, bookings, new_bookings
from .core.errors import ConflictError, CourseExists, InvalidInput, Refused, StoreError, shown
from .core.lifecycle import apply_planned, new_course, reconcile
from .core.model import EVENT_DATA, Course, Effects, NoData, Plan, check_reference
from .core.plan_reuse import stored_plan
from .core.planner import (
    plan,
    slot_warnings,
)
from .core.protocol import Protocol
from .core.values import DateLike, TimeLike, ZoneLike, as_date, as_time, as_zone_name
from .core.wallclock import check_ahead, zone
from .rulebook.files import Rulebook
from .storage.booking_sql import BookingCheck

if TYPE_CHECKING:  # the store is passed in: on the CLI's write path, one without SQLAlchemy (storage.lite)
    from .storage.sql import SqlStore

DEFAULT_PROTOCOL = "ipt-16"


_last_id_ms = 0
_id_counter = 0


def new_course_id() -> str:
    """A fresh course id that carries nothing about the client: the creation time in
    milliseconds, a counter and random bits, so ids sort by creation and new rows append to
    the end of the indexes instead of landing all over them."""
    global _last_id_ms, _id_counter
    ms = time_ns() // 1_000_000
    _id_counter = _id_counter + 1 if ms == _last_id_ms else 0
    _last_id_ms = ms
    return f"crs_{ms:011x}{_id_counter:04x}{secrets.token_hex(3)}"


def protocol_of(rules: Rulebook, course: Course) -> Protocol:
    """The protocol version a course pinned, whatever the default version is now; raises
    StoreError when the rules do not hold that version (naming the versions they hold)."""
    return pinned_protocol(rules, course.id, course.protocol, course.protocol_version)


def pinned_protocol(rules: Rulebook, course_id: str, protocol_id: str, version: str) -> Protocol:
    """``protocol_of`` a course known by its id, protocol and version."""
    protocol = rules.versions.get(protocol_id, {}).get(version)
    if protocol is None:
        known = rules.known(protocol_id)
        has = f"has versions {', '.join(known)}" if known else "has no such protocol"
        raise StoreError(
            f"course '{course_id}' follows {protocol_id} {version}, but the rules "
            f"directory {has}: load the rules it was created with"
        )
    return protocol


@dataclass(frozen=True)
class Created:
    course: Course
    plan: Plan
    warnings: list[str]


def build_course(
    rules: Rulebook,
    *,
    client: str,
    start: DateLike,
    time: TimeLike,
    tz: ZoneLike,
    now: datetime,
    protocol_id: str = DEFAULT_PROTOCOL,
    therapist: str = "unassigned",
    course_id: str | None = None,
) -> tuple[Course, Plan]:
    """A new course and its plan, checked, not yet stored. ``protocol_id`` is ``ID`` (its
    highest version) or ``ID@VERSION``; the course pins the version it took."""
    if course_id is not None and not course_id.strip():
        raise InvalidInput("course_id: empty (leave it out for a new random id)")
    protocol = rules.named(protocol_id)
    course = new_course(
        protocol, rules.clinic, course_id=course_id or new_course_id(), client=client, therapist=therapist,
        start=as_date(start, "start"), slot=as_time(time, "time"), timezone=as_zone_name(tz, "tz"), now=now,
    )  # fmt: skip
    return course, plan(course, protocol, rules.clinic)


def store_course(
    store: SqlStore, rules: Rulebook, course: Course, p: Plan, now: datetime, allow_clash: bool = False
) -> Created:
    """Store a course built by ``build_course``; refuses an id that is taken, and a plan that
    books its therapist over another course's session (ScheduleClash) unless ``allow_clash``,
    which books it anyway with a ``schedule_conflict`` alert."""
    if store.existing_ids([course.id]):
        raise CourseExists(f"course_id: course {shown(course.id)} already exists")
    absent = with_absences_of(store, course, course.therapist)
    if absent is not course:
        course, p = absent, plan(absent, protocol_of(rules, absent), rules.clinic)
    buffer = rules.clinic.buffer()
    check = BookingCheck(bookings(course, p.sessions, buffer), buffer, refuse=not allow_clash, at=now)
    stored = store.add(course, p, now, booking=check)
    if stored.alerts:
        p = plan(stored, protocol_of(rules, stored), rules.clinic)
    return Created(stored, p, slot_warnings(stored, rules.clinic))


def with_absences_of(store: SqlStore, course: Course, therapist: str) -> Course:
    """The course with ``therapist``'s absences (from its start on) among its absences."""
    if therapist == UNASSIGNED:
        return course
    try:
        check_reference(therapist, "therapist")
    except InvalidInput:
        return course  # the event's own check names it
    known = {a.id for a in course.absences}
    extra = [a for a in store.absences([therapist]) if a.id not in known and a.until >= course.start]
    if not extra:
        return course
    return course.model_copy(update={"absences": sorted([*course.absences, *extra], key=lambda a: (a.start, a.id))})


def _zone_name(name: str, where: str) -> str:
    try:
        zone(name)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    return name


@dataclass(frozen=True)
class Applied:
    course: Course
    plan: Plan
    effects: Effects


def apply_event(
    store: SqlStore,
    rules: Rulebook,
    course_id: str,
    event: str,
    at: datetime,
    now: datetime,
    data: dict[str, Any] | None = None,
    expected_version: int | None = None,
    at_name: str = "at",
) -> Applied:
    """Apply one event to a stored course in one transaction.

    Raises UnknownName, InvalidInput (also for an ``at`` more than a day after ``now``,
    named ``at_name``), Refused, or ConflictError when the course is not at
    ``expected_version`` or another writer saved it first; then nothing was written.
    """
    check_ahead(at, now, at_name)
    data, force = _force(event, data)
    before = store.load(course_id)
    if event == "change_therapist" and isinstance(data, dict) and isinstance(data.get("therapist"), str):
        before = with_absences_of(store, before, data["therapist"])
    if expected_version is not None and before.version != expected_version:
        raise ConflictError(course_id, expected_version, before.version)
    protocol = protocol_of(rules, before)
    if before.group is not None and event in BOOKING_EVENTS - {"extend", "resume"}:
        raise Refused(
            event,
            before.state.value,
            f"course {before.id} is a member of group {before.group}: its sessions move with the group "
            f"(ipt group event {before.group} {event})",
        )
    # Each side planned once: the plan before, then the plan after (the same one when the
    # event changed nothing the planner reads, ``plans_alike``).
    planned = stored_plan(before, protocol, rules.clinic)
    after, effects, p = apply_planned(before, event, at, protocol, rules.clinic, data, planned)
    if before.group is not None:
        from .groups import size_alert

        sized = size_alert(store, before, after, at)
        if sized is not after:
            raised = [a for a in sized.alerts if a not in after.alerts]
            effects = effects.model_copy(update={"added": [*effects.added, *raised]})
            after = sized
            p = plan(after, protocol, rules.clinic)
    # Any event whose replan books new times is checked: one the user chose is refused on a
    # clash (unless forced); one a fact forced (a miss, a pause, a holiday) raises an alert.
    buffer = rules.clinic.buffer()
    if p.sessions is planned.sessions and all(getattr(before, f) is getattr(after, f) for f in _BOOKED_BY):
        new = []  # the same sessions of the same course: the same bookings
    else:
        new = new_bookings(bookings(before, planned.sessions, buffer), bookings(after, p.sessions, buffer))
    check = BookingCheck(new, buffer, refuse=event in BOOKING_EVENTS and not force, at=now) if new else None
    if before.rules_fingerprint != p.fingerprint:
        # The stored plan was made under other rules: its "before" is what is stored, not a
        # recomputation under the rules in force (which would keep stale reminders pending).
        added, cancelled, moved = reconcile(store.reminders(course=course_id), p.reminders, at, after)
        effects = effects.model_copy(update={"added": added, "cancelled": cancelled, "rescheduled": moved})
    else:
        effects = _unrecorded_alerts_gone(store, before, after, effects)
    stored = store.save(before, after, p, effects, now, booking=check)
    if len(stored.alerts) != len(after.alerts):
        raised = [a for a in stored.alerts if a not in after.alerts]
        effects = effects.model_copy(update={"added": [*effects.added, *raised]})
        p = plan(stored, protocol, rules.clinic)
    return Applied(stored, p, effects)


#: The course fields ``bookings`` reads besides the plan's sessions.
_BOOKED_BY = ("id", "state", "therapist", "group", "timezone")


def _unrecorded_alerts_gone(store: SqlStore, before: Course, after: Course, effects: Effects) -> Effects:
    """``effects`` with the stored pending ``attendance_unrecorded`` alerts of the sessions this
    event records cancelled too: an alert a replan kept as raised (the rules in force plan it
    under another id, or not at all) is not in the plan compared with, but is no longer true."""
    was = {s.number for s in before.sessions}
    recorded = {s.number for s in after.sessions} - was
    if not recorded:
        return effects
    gone = set(effects.cancelled)
    extra = [
        r.id for r in store.reminders(course=after.id, status="pending")
        if r.kind == "attendance_unrecorded" and r.session in recorded and r.id not in gone
    ]  # fmt: skip
    return effects.model_copy(update={"cancelled": [*effects.cancelled, *extra]}) if extra else effects


#: Events whose new times the user chose: a clash refuses them unless ``force: true``.
BOOKING_EVENTS = frozenset({"extend", "resume", "reschedule_session", "change_slot", "change_therapist"})


def _force(event: str, data: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """``force`` taken out of a booking event's data (left in when its schema has the field)."""
    if event not in BOOKING_EVENTS or not isinstance(data, dict) or "force" not in data:
        return data, False
    force = data["force"]
    if not isinstance(force, bool):
        raise InvalidInput(f"event '{event}' data: force: must be true or false")
    if "force" in EVENT_DATA.get(event, NoData).model_fields:
        return data, force
    return {k: v for k, v in data.items() if k != "force"}, force


def show(store: SqlStore, rules: Rulebook, course_id: str) -> tuple[Course, Plan]:
    """The course and its plan, the reminders as stored (with their delivery status)."""
    course = store.load(course_id)
    p = plan(course, protocol_of(rules, course), rules.clinic)
    return course, Plan(sessions=p.sessions, reminders=store.reminders(course=course_id))
