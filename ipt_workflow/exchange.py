"""FHIR exchange use cases (SPEC §12): export courses as a transaction Bundle, ingest a Bundle
or resource from an EHR as course events (all or nothing, each resource version once)."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .core.clashes import bookings, new_bookings
from .core.errors import InvalidInput, IptError, UnknownName, shown
from .core.lifecycle import apply_planned
from .core.model import Course, Effects, HistoryEntry, Plan, Session, SessionStatus
from .core.planner import plan
from .core.wallclock import check_ahead
from .interop import fhir
from .rulebook.files import Rulebook
from .services import pinned_protocol, protocol_of
from .storage.bookings import BookingCheck
from .storage.sql import CourseChange, Ingested, SqlStore


def export_fhir(
    store: SqlStore, rules: Rulebook, course_ids: Sequence[str] = (), every: bool = False, since: datetime | None = None
) -> dict[str, Any]:
    """A transaction Bundle of the courses named (or ``every`` course; with ``since``, only
    those changed at or after it): a PlanDefinition per protocol version they follow, then
    per course its CarePlan, Appointments, CommunicationRequests and Observations. Raises
    UnknownName for an id that is not a course."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(export_entries(store, rules, course_ids,
                                                                                          every, since))}  # fmt: skip


#: Courses read, planned and mapped at a time by ``export_entries``.
EXPORT_CHUNK = 200


def export_entries(
    store: SqlStore, rules: Rulebook, course_ids: Sequence[str] = (), every: bool = False, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The entries of ``export_fhir``'s Bundle one by one, the courses read ``EXPORT_CHUNK`` at
    a time, so a Bundle of every course is never held whole (``fhir.transaction_text`` writes
    them). What would fail fails here, before the first entry: UnknownName for an id that is
    not a course, StoreError for a protocol version the rules lack."""
    systems = rules.clinic.fhir
    if every:
        ids = [row["id"] for row in store.courses()]
    else:
        ids = list(dict.fromkeys(course_ids))
        known = store.existing_ids(ids)
        missing = next((i for i in ids if i not in known), None)
        if missing is not None:
            raise UnknownName(f"unknown course {shown(missing)}")
    if since is not None:
        ids = [i for chunk in _chunks(ids) for i, c in store.load_courses(chunk).items() if _changed_since(c, since)]
    keys = {row[0]: (row[1], row[2]) for row in store.running(ids=ids)}
    protocols: dict[tuple[str, str], dict[str, Any]] = {}
    for course_id in ids:
        protocol, version = keys[course_id]
        if (protocol, version) not in protocols:
            pinned = pinned_protocol(rules, course_id, protocol, version)
            protocols[(protocol, version)] = fhir.plan_definition(pinned, systems)
    return _entries(store, rules, ids, list(protocols.values()))


def _entries(
    store: SqlStore, rules: Rulebook, ids: list[str], protocols: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    systems = rules.clinic.fhir
    urls = fhir.resource_urls(protocols)
    yield from (fhir.entry(p, urls) for p in protocols)
    for chunk in _chunks(ids):
        courses = store.load_courses(chunk)
        reminders = store.reminders_of(chunk)
        for course_id in chunk:
            course = courses[course_id]
            p = plan(course, protocol_of(rules, course), rules.clinic)
            resources = fhir.course_resources(course, p.sessions, reminders[course_id], systems)
            local = {**urls, **fhir.resource_urls(resources)}
            yield from (fhir.entry(r, local) for r in resources)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), EXPORT_CHUNK):
        yield ids[i : i + EXPORT_CHUNK]


def _changed_since(course: Course, since: datetime) -> bool:
    last = course.history[-1].at if course.history else course.created_at
    return max(last, course.created_at) >= since


@dataclass
class IngestReport:
    """What ``ingest_fhir`` did: ``applied`` ``(position, course, event)`` in Bundle order, and
    how many resource versions of the kinds read changed nothing: ``already`` counts them all
    (applied before, or saying what the course already shows); ``unchanged`` those of them
    never ingested before."""

    applied: list[tuple[str, str, str]] = field(default_factory=list)
    already: int = 0
    unchanged: int = 0


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the duration: an ingest holds the Bundle, every
    course it names and their plans until the end, and collections that walk them again and
    again took half its time (they make little garbage in cycles; it is collected after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def ingest_fhir(store: SqlStore, rules: Rulebook, document: Any, now: datetime) -> IngestReport:
    """Apply what a FHIR Bundle (or one resource) says happened, all or nothing: raises
    InvalidInput with one line per bad resource (``entry[2].resource.status: ...``) or refused
    event, and then nothing is written. A resource version applied before is skipped.

    Linear in the Bundle: the courses it names are read together, each course's events are
    applied in Bundle order on one copy (planned once per event), and every course changed
    and every version seen is written in one transaction."""
    with _collector_paused():
        return _ingest(store, rules, document, now)


def _ingest(store: SqlStore, rules: Rulebook, document: Any, now: datetime) -> IngestReport:
    systems = rules.clinic.fhir
    courses = store.load_courses(fhir.courses_named(document, systems))
    plans: dict[str, Plan] = {}
    starts: dict[str, dict[int, str]] = {}

    def plan_of(course_id: str) -> Plan | None:
        if course_id not in plans:
            course = courses.get(course_id)
            if course is None:
                return None
            plans[course_id] = plan(course, protocol_of(rules, course), rules.clinic)
        return plans[course_id]

    def start_of(course_id: str, number: int) -> str | None:
        if course_id not in starts:
            p = plan_of(course_id)
            starts[course_id] = {} if p is None else {s.number: s.start.isoformat() for s in p.sessions}
        return starts[course_id].get(number)

    changes, problems = fhir.read_changes(document, systems, start_of)
    if problems:
        raise InvalidInput("\n".join(problems))
    report = IngestReport()
    keys = [(c.resource_type, c.resource_id, c.version) for c in changes if c.resource_id]
    seen = store.ingested(keys) if keys else set()
    by_course: dict[str, list[tuple[int, fhir.Change]]] = {}
    for index, change in enumerate(changes):
        key = (change.resource_type, change.resource_id, change.version)
        if not change.event or key in seen:  # nothing to do: the course already shows it
            report.already += 1
            continue
        seen.add(key)
        by_course.setdefault(change.course, []).append((index, change))
    problem_at: list[tuple[int, str]] = []
    applied: list[tuple[int, Ingested]] = []
    done: list[tuple[int, tuple[str, str, str]]] = []
    writes: list[CourseChange] = []
    buffer = rules.clinic.buffer()
    for course_id, todo in by_course.items():
        before = courses.get(course_id)
        p = plan_of(course_id)
        plans.pop(course_id, None)  # not held past this course: plans are the bulk of an ingest's memory
        if before is None or p is None:
            problem_at += [(i, f"{c.position}: no course '{course_id}'") for i, c in todo]
            continue
        before_plan = p
        protocol = protocol_of(rules, before)
        course = before
        history: list[HistoryEntry] = []
        added: list[Any] = []
        cancelled: list[str] = []
        booked = False
        for index, change in todo:
            record = Ingested(change.resource_type, change.resource_id, change.version, course_id, change.event)
            if _already(p.sessions, change):
                report.already += 1
                report.unchanged += 1
                applied.append((index, replace(record, event="none")))
                continue
            at = change.at or now
            if change.resource_type == "Appointment" and course.history:  # an EHR's clock, in the course's order
                at = max(at, course.history[-1].at)
            try:
                check_ahead(at, now, f"{change.position}: at")
                course, effects, p = apply_planned(course, change.event, at, protocol, rules.clinic, change.data, p)
            except IptError as exc:
                problem_at.append((index, f"{change.position}: {change.event}: {exc}"))
                continue
            history += effects.history
            gone = set(effects.cancelled)
            added = [*[a for a in added if a.id not in gone], *effects.added]
            cancelled += effects.cancelled
            booked = booked or change.event == "reschedule_session"
            applied.append((index, record))
            done.append((index, (change.position, course_id, change.event)))
        if course is before:
            continue
        effects = Effects(added=list({a.id: a for a in added}.values()), cancelled=cancelled, history=history)
        check = None
        if booked:  # an EHR's move is a fact: booked anyway, a clash raises schedule_conflict
            was = bookings(before, before_plan.sessions, buffer)
            new = new_bookings(was, bookings(course, p.sessions, buffer))
            check = BookingCheck(new, buffer, refuse=False, at=now) if new else None
        writes.append(CourseChange(before, course, p, effects, check))
    if problem_at:
        raise InvalidInput("\n".join(line for _, line in sorted(problem_at, key=lambda x: x[0])))
    report.applied = [entry for _, entry in sorted(done, key=lambda x: x[0])]
    if writes or applied:
        store.save_ingest(writes, [a for _, a in sorted(applied, key=lambda x: x[0])], now)
    return report


_DONE = {"hold_session": SessionStatus.held, "miss_session": SessionStatus.missed,
         "cancel_session": SessionStatus.cancelled}  # fmt: skip


def _already(sessions: Sequence[Session], change: fhir.Change) -> bool:
    """The plan already shows what ``change`` says (a later version of a resource that
    repeats its status): nothing to apply."""
    status = _DONE.get(change.event)
    number = change.data.get("number")
    return status is not None and any(s.number == number and s.status is status for s in sessions)
