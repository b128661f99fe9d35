"""FHIR exchange use cases (SPEC §12): export courses as a transaction Bundle, ingest a Bundle
or resource from an EHR as course events (all or nothing, each resource version once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .core.clashes import bookings, new_bookings
from .core.errors import InvalidInput, IptError, UnknownName
from .core.lifecycle import apply
from .core.model import Course, Effects, HistoryEntry, Plan, Session, SessionStatus
from .core.planner import plan
from .core.wallclock import check_ahead
from .interop import fhir
from .rulebook.files import Rulebook
from .services import protocol_of, show
from .storage.bookings import BookingCheck
from .storage.sql import CourseChange, Ingested, SqlStore


def export_fhir(
    store: SqlStore, rules: Rulebook, course_ids: Sequence[str] = (), every: bool = False, since: datetime | None = None
) -> dict[str, Any]:
    """A transaction Bundle of the courses named (or ``every`` course; with ``since``, only
    those changed at or after it): a PlanDefinition per protocol version they follow, then
    per course its CarePlan, Appointments, CommunicationRequests and Observations. Raises
    UnknownName for an id that is not a course."""
    systems = rules.clinic.fhir
    ids = list(dict.fromkeys(course_ids))
    if every:
        ids = [row["id"] for row in store.courses()]
    protocols: dict[tuple[str, str], dict[str, Any]] = {}
    resources: list[dict[str, Any]] = []
    for course_id in ids:
        course, p = show(store, rules, course_id)
        if since is not None and not _changed_since(course, since):
            continue
        key = (course.protocol, course.protocol_version)
        if key not in protocols:
            protocols[key] = fhir.plan_definition(protocol_of(rules, course), systems)
        resources += fhir.course_resources(course, p.sessions, p.reminders, systems)
    return fhir.transaction([*protocols.values(), *resources])


def _changed_since(course: Course, since: datetime) -> bool:
    last = course.history[-1].at if course.history else course.created_at
    return max(last, course.created_at) >= since


@dataclass
class IngestReport:
    """What ``ingest_fhir`` did: ``applied`` ``(position, course, event)`` in order, and how
    many resource versions were ``already`` applied (or meant no change)."""

    applied: list[tuple[str, str, str]] = field(default_factory=list)
    already: int = 0
    unchanged: int = 0


def ingest_fhir(store: SqlStore, rules: Rulebook, document: Any, now: datetime) -> IngestReport:
    """Apply what a FHIR Bundle (or one resource) says happened, all or nothing: raises
    InvalidInput with one line per bad resource (``entry[2].resource.status: ...``) or refused
    event, and then nothing is written. A resource version applied before is skipped."""
    systems = rules.clinic.fhir
    loaded: dict[str, tuple[Course, Plan] | None] = {}

    def course_and_plan(course_id: str) -> tuple[Course, Plan] | None:
        if course_id not in loaded:
            try:
                course = store.load(course_id)
            except UnknownName:
                loaded[course_id] = None
            else:
                loaded[course_id] = (course, plan(course, protocol_of(rules, course), rules.clinic))
        return loaded[course_id]

    def start_of(course_id: str, number: int) -> str | None:
        found = course_and_plan(course_id)
        if found is None:
            return None
        return next((s.start.isoformat() for s in found[1].sessions if s.number == number), None)

    changes, problems = fhir.read_changes(document, systems, start_of)
    if problems:
        raise InvalidInput("\n".join(problems))
    report = IngestReport()
    seen = store.ingested([(c.resource_type, c.resource_id, c.version) for c in changes])
    todo: list[fhir.Change] = []
    for change in changes:
        key = (change.resource_type, change.resource_id, change.version)
        if key in seen:
            report.already += 1
            continue
        seen.add(key)
        todo.append(change)
    working: dict[str, tuple[Course, Course, list[HistoryEntry], list[Any], list[str], bool]] = {}
    applied: list[Ingested] = []
    for change in todo:
        found = course_and_plan(change.course)
        if found is None:
            problems.append(f"{change.position}: no course '{change.course}'")
            continue
        before = found[0]
        _, course, history, added, cancelled, booking = working.get(change.course, (before, before, [], [], [], False))
        protocol = protocol_of(rules, course)
        sessions = found[1].sessions if course is before else plan(course, protocol, rules.clinic).sessions
        if _already(sessions, change):
            report.unchanged += 1
            applied.append(Ingested(change.resource_type, change.resource_id, change.version, change.course, "none"))
            continue
        at = change.at or now
        if change.resource_type == "Appointment" and course.history:  # an EHR's clock, in the course's order
            at = max(at, course.history[-1].at)
        try:
            check_ahead(at, now, f"{change.position}: at")
            course, effects = apply(course, change.event, at, protocol, rules.clinic, change.data)
        except IptError as exc:
            problems.append(f"{change.position}: {change.event}: {exc}")
            continue
        history = [*history, *effects.history]
        added = [*[a for a in added if a.id not in effects.cancelled], *effects.added]
        cancelled = [*cancelled, *effects.cancelled]
        booking = booking or change.event == "reschedule_session"
        working[change.course] = (before, course, history, added, cancelled, booking)
        applied.append(Ingested(change.resource_type, change.resource_id, change.version, change.course, change.event))
        report.applied.append((change.position, change.course, change.event))
    if problems:
        raise InvalidInput("\n".join(problems))
    writes = []
    buffer = rules.clinic.buffer()
    for before, after, history, added, cancelled, booked in working.values():
        protocol = protocol_of(rules, after)
        p = plan(after, protocol, rules.clinic)
        effects = Effects(added=list({a.id: a for a in added}.values()), cancelled=cancelled, history=history)
        check = None
        if booked:  # an EHR's move is a fact: booked anyway, a clash raises schedule_conflict
            was = bookings(before, plan(before, protocol, rules.clinic).sessions, buffer)
            new = new_bookings(was, bookings(after, p.sessions, buffer))
            check = BookingCheck(new, buffer, refuse=False, at=now) if new else None
        writes.append(CourseChange(before, after, p, effects, check))
    if writes or applied:
        store.save_ingest(writes, applied, now)
    return report


_DONE = {"hold_session": SessionStatus.held, "miss_session": SessionStatus.missed,
         "cancel_session": SessionStatus.cancelled}  # fmt: skip


def _already(sessions: Sequence[Session], change: fhir.Change) -> bool:
    """The plan already shows what ``change`` says (a later version of a resource that
    repeats its status): nothing to apply."""
    status = _DONE.get(change.event)
    number = change.data.get("number")
    return status is not None and any(s.number == number and s.status is status for s in sessions)
