"""Rule changes on running courses (SPEC §11): ``ipt rules migrate`` moves courses onto
another version of their protocol, ``ipt replan`` applies a changed clinic policy, and the
daemon replans a course whose stored plan was made under other rules before it emits any of
its reminders.

Every replan compares the new plan with the plan *as stored* (the stored reminders and the
stored session list), never with a recomputation under the new rules. Each course is all or
nothing (optimistic on its version). Many courses go the set-based way of the bulk import:
read a chunk at a time with one query per table, planned and compared in forked worker
processes, written in big transactions with a statement per kind of change; one course (the
daemon's check, a course another writer got to first) goes through ``store.save``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from .core.clashes import bookings, new_bookings, stored_bookings
from .core.errors import ConflictError, IptError, Refused, StoreError, UnknownName, shown
from .core.lifecycle import migrate as migrate_course
from .core.lifecycle import reconcile
from .core.model import Course, Effects, Plan, Reminder, Session, SessionStatus
from .core.planner import PlannedRow, plan, plan_rows, rules_fingerprint
from .core.protocol import Protocol
from .core.wallclock import iso_utc
from .rulebook.files import Rulebook, load_rules
from .rulebook.locate import builtin_rules_dir
from .services import protocol_of
from .storage.bookings import BookingCheck
from .storage.courses import ReplanWrite, StoredReminder
from .storage.engine import engine_for
from .storage.rows import course_values, history_values, plan_lists, session_values
from .storage.schema import to_text
from .storage.sql import SqlStore

log = logging.getLogger("ipt_workflow.rulechanges")

#: Tries of one course's replan when another writer saves it meanwhile.
TRIES = 3


@dataclass
class CourseChange:
    """What a replan or a migration does (or did) to one course; ``status`` is ``migrated``,
    ``replanned``, ``unchanged`` or ``refused`` (then ``reason`` says why)."""

    course: str
    protocol: str
    version: str
    status: str
    to: str | None = None
    reason: str | None = None
    timezone: str = "UTC"  # the course's zone, for local times in tables
    sessions_added: list[dict[str, Any]] = field(default_factory=list)
    sessions_removed: list[dict[str, Any]] = field(default_factory=list)
    sessions_moved: list[dict[str, Any]] = field(default_factory=list)
    reminders_added: list[dict[str, Any]] = field(default_factory=list)
    reminders_cancelled: list[dict[str, Any]] = field(default_factory=list)
    reminders_moved: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (self.sessions_added, self.sessions_removed, self.sessions_moved, self.reminders_added,
             self.reminders_cancelled, self.reminders_moved)
        )  # fmt: skip

    def json(self) -> dict[str, Any]:
        """``{course, protocol, from, to, status, reason, sessions: {added, removed, moved},
        reminders: {added, cancelled, moved}}``; instants: sessions local ISO 8601, reminders UTC."""
        return {
            "course": self.course,
            "protocol": self.protocol,
            "from": self.version,
            "to": self.to or self.version,
            "status": self.status,
            "reason": self.reason,
            "sessions": {"added": self.sessions_added, "removed": self.sessions_removed, "moved": self.sessions_moved},
            "reminders": {
                "added": self.reminders_added,
                "cancelled": self.reminders_cancelled,
                "moved": self.reminders_moved,
            },
        }


@dataclass
class ChangeReport:
    courses: list[CourseChange]
    dry_run: bool

    def counts(self) -> dict[str, int]:
        """How many courses were (or would be) migrated, replanned, unchanged and refused."""
        statuses = [c.status for c in self.courses]
        return {s: statuses.count(s) for s in ("migrated", "replanned", "unchanged", "refused")}

    def json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, **self.counts(), "courses": [c.json() for c in self.courses]}


def _session_diff(stored: list[list[Any]], sessions: list[Session], change: CourseChange) -> None:
    """Sessions added, removed and moved between the stored plan lists and ``sessions``."""
    before = {row[0]: row[2] for row in stored}
    after = {s.number: s.start for s in sessions}
    for n, start in after.items():
        if n not in before:
            change.sessions_added.append({"number": n, "start": start.isoformat()})
        elif datetime.fromisoformat(before[n]) != start:
            change.sessions_moved.append({"number": n, "from": before[n], "to": start.isoformat()})
    for n, text in before.items():
        if n not in after:
            change.sessions_removed.append({"number": n, "start": text})


def _reminder(r: Reminder) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "due": iso_utc(r.due), "session": r.session}


def _replanned(
    store: SqlStore, course: Course, new: Course, protocol: Protocol, rules: Rulebook, now: datetime,
    change: CourseChange,
) -> tuple[Plan, Effects, BookingCheck | None]:  # fmt: skip
    """``_diff`` against what the store holds for ``course`` now, and the clash check of the
    times the new plan books that the stored plan did not (alerts, never refused)."""
    stored, stored_plan = store.reminders(course=course.id), store.stored_plan(course.id)
    p, effects = _diff(course, new, protocol, rules, now, stored, stored_plan, change)
    buffer = rules.clinic.buffer()
    was = stored_bookings(course.id, course.therapist, course.timezone, stored_plan, buffer, course.group is not None)
    added = new_bookings(was, bookings(new, p.sessions, buffer))
    return p, effects, BookingCheck(added, buffer, refuse=False, at=now) if added else None


def _saved(
    store: SqlStore, course: Course, new: Course, p: Plan, effects: Effects, now: datetime, check: BookingCheck | None,
    change: CourseChange,
) -> None:  # fmt: skip
    """Save a replan; the ``schedule_conflict`` alerts the clash check raised join the change."""
    stored = store.save(course, new, p, effects, now, booking=check)
    known = {a.id for a in new.alerts}
    change.reminders_added += [_reminder(a) for a in stored.alerts if a.id not in known]


def _diff(
    course: Course, new: Course, protocol: Protocol, rules: Rulebook, now: datetime, stored: list[Reminder],
    stored_plan: list[list[Any]], change: CourseChange,
) -> tuple[Plan, Effects]:  # fmt: skip
    """The new plan of ``new`` (``course`` as stored, changed or not) and the effects that make
    the ``stored`` reminders its reminders; the change filled in (sessions against
    ``stored_plan``, the session lists last written)."""
    p = plan(new, protocol, rules.clinic)
    added, cancelled, moved = reconcile(stored, p.reminders, now, new)
    by_id = {r.id: r for r in stored}
    _session_diff(stored_plan, p.sessions, change)
    change.reminders_added = [_reminder(r) for r in added]
    change.reminders_cancelled = [_reminder(by_id[rid]) for rid in cancelled]
    change.reminders_moved = [
        {"id": r.id, "kind": r.kind, "from": iso_utc(by_id[r.id].due), "to": iso_utc(r.due), "session": r.session}
        for r in moved
    ]
    history = new.history[len(course.history) :]
    return p, Effects(added=added, cancelled=cancelled, rescheduled=moved, history=history)


def replan_course(
    store: SqlStore, rules: Rulebook, course_id: str, now: datetime, dry_run: bool = False
) -> CourseChange:
    """Replan one course under ``rules`` (its pinned protocol version, the clinic policy in
    force) against its plan as stored; write it unless ``dry_run`` (one transaction, tried
    again when another writer saved the course meanwhile). A course whose protocol version the
    rules lack is ``refused``."""

    def once() -> CourseChange:
        course = store.load(course_id)
        change = CourseChange(course.id, course.protocol, course.protocol_version, "replanned",
                              timezone=course.timezone)  # fmt: skip
        try:
            protocol = protocol_of(rules, course)
        except StoreError as exc:
            change.status, change.reason = "refused", str(exc)
            return change
        p, effects, check = _replanned(store, course, course, protocol, rules, now, change)
        if not change.changed:
            change.status = "unchanged"
        if dry_run or (not change.changed and course.rules_fingerprint == p.fingerprint):
            return change
        _saved(store, course, course, p, effects, now, check, change)
        return change

    return _retried(once)


def migrate_one(
    store: SqlStore, rules: Rulebook, course_id: str, target: Protocol, now: datetime, dry_run: bool = False
) -> CourseChange:
    """Move one course onto protocol version ``target``: state and history kept, a ``migrate``
    history entry added, plan and reminders recomputed against the plan as stored; one
    transaction. Refused (reason given, nothing written) when it cannot take it."""

    def once() -> CourseChange:
        course = store.load(course_id)
        change = CourseChange(course.id, course.protocol, course.protocol_version, "migrated", to=target.version,
                              timezone=course.timezone)  # fmt: skip
        if course.protocol != target.id:
            change.status, change.reason = "refused", f"follows {course.protocol}, not {target.id}"
            return change
        if course.protocol_version == target.version:
            change.status, change.reason = "unchanged", f"already on {target.version}"
            return change
        try:
            old = protocol_of(rules, course)
            new = migrate_course(course, old, target, now)
        except (StoreError, Refused) as exc:
            change.status = "refused"
            change.reason = exc.reason if isinstance(exc, Refused) else str(exc)
            return change
        p, effects, check = _replanned(store, course, new, target, rules, now, change)
        if dry_run:
            return change
        _saved(store, course, new, p, effects, now, check, change)
        return change

    return _retried(once)


def _retried(once: Callable[[], CourseChange]) -> CourseChange:
    """``once()``, read and written afresh when another writer saved the course between its
    read and its write (ConflictError), at most ``TRIES`` times."""
    for attempt in range(TRIES):
        try:
            return once()
        except ConflictError:
            if attempt == TRIES - 1:
                raise
    raise AssertionError("unreachable")


def target_version(rules: Rulebook, protocol_id: str, version: str) -> Protocol:
    """Version ``version`` of ``protocol_id``; raises UnknownName naming the versions there are."""
    if protocol_id not in rules.versions:
        known = ", ".join(sorted(rules.versions)) or "none"
        raise UnknownName(f"--protocol: unknown protocol {shown(protocol_id)} (known: {known})")
    if version not in rules.versions[protocol_id]:
        known = ", ".join(rules.known(protocol_id))
        where = f" in {rules.directory}" if rules.directory else ""
        raise UnknownName(f"--to: protocol '{protocol_id}' has no version {shown(version)}{where} (known: {known})")
    return rules.versions[protocol_id][version]


def migrate(
    store: SqlStore,
    rules: Rulebook,
    protocol_id: str,
    version: str,
    now: datetime,
    courses: Sequence[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[CourseChange], None] | None = None,
) -> ChangeReport:
    """``ipt rules migrate``: every running course of ``protocol_id`` not yet on ``version``
    (or the ``courses`` named, whatever their state: one not running is refused), set-based
    as ``replan``. Raises UnknownName (nothing
    written) for an unknown protocol or version, and for a course id that is not stored."""
    target = target_version(rules, protocol_id, version)
    if courses:
        ids = list(dict.fromkeys(courses))
        known = {row[0] for row in store.running(ids=ids)}
        missing = [i for i in ids if i not in known]
        if missing:
            raise UnknownName(f"--course: unknown course {shown(missing[0])}")
    else:
        ids = [row[0] for row in store.running(protocol=protocol_id) if row[2] != version]
    out = _run(store, rules, ids, now, dry_run, target)
    if progress is not None:
        for change in out:
            progress(change)
    return ChangeReport(out, dry_run)


def replan(
    store: SqlStore,
    rules: Rulebook,
    now: datetime,
    courses: Sequence[str] | None = None,
    dry_run: bool = False,
) -> ChangeReport:
    """``ipt replan``: every running course whose stored plan was made under other rules (or
    the ``courses`` named), replanned under ``rules`` against its plan as stored. Set-based:
    courses are read a chunk at a time (one query per table), planned and compared with their
    stored reminders (in worker processes for many courses), and written ``WRITE_BATCH``
    courses a transaction (a statement per kind of change, not per course). Raises UnknownName (nothing
    written) for a course id that is not stored."""
    expected = expected_fingerprints(rules)
    if courses:
        ids = list(dict.fromkeys(courses))
        rows = store.running(ids=ids)
        missing = [i for i in ids if i not in {r[0] for r in rows}]
        if missing:
            raise UnknownName(f"--course: unknown course {shown(missing[0])}")
    else:
        ids = [r[0] for r in store.running() if expected.get((r[1], r[2])) != r[4]]
    return ChangeReport(_run(store, rules, ids, now, dry_run, None), dry_run)


#: Courses read and planned together (one read per table a chunk).
CHUNK = 1000
#: From this many courses, chunks are planned in worker processes while this one writes.
PARALLEL_FROM = 2000


def _run(
    store: SqlStore, rules: Rulebook, ids: list[str], now: datetime, dry_run: bool, target: Protocol | None
) -> list[CourseChange]:
    """Replan (``target`` None) or migrate the courses ``ids``: computed chunk by chunk, written
    ``WRITE_BATCH`` courses a transaction (a bigger transaction dirties each page of the
    reminders' due index once for many courses, not once for a few)."""
    out: list[CourseChange] = []
    pending: list[Computed] = []

    def write() -> None:
        changes = [c for done in pending for c in done[0]]
        writes = [w for done in pending for w in done[1]]
        slow = {cid for done in pending for cid in done[2]}
        pending.clear()
        if writes:
            try:
                raised = store.write_replans(writes, now, rules.clinic.buffer())
            except ConflictError:  # another writer saved one meanwhile: course by course
                slow = {c.course for c in changes if c.status not in ("refused", "unchanged")} | slow
            else:
                for change in changes:
                    change.reminders_added += [_reminder(a) for a in raised.get(change.course, ())]
        for i, change in enumerate(changes):
            if change.course in slow:
                changes[i] = _one(store, rules, change.course, now, dry_run, target)
        out.extend(changes)

    for done in _computed(store, rules, ids, now, dry_run, target):
        pending.append(done)
        if sum(len(d[1]) for d in pending) >= WRITE_BATCH:
            write()
    write()
    return out


#: Courses written in one transaction by ``replan`` and ``migrate`` (at most).
WRITE_BATCH = 10_000


def _one(
    store: SqlStore, rules: Rulebook, course_id: str, now: datetime, dry_run: bool, target: Protocol | None
) -> CourseChange:
    if target is None:
        return replan_course(store, rules, course_id, now, dry_run)
    return migrate_one(store, rules, course_id, target, now, dry_run)


Computed = tuple[list[CourseChange], list[ReplanWrite], set[str]]
_JOB: dict[str, Any] = {}


def _computed(
    store: SqlStore, rules: Rulebook, ids: list[str], now: datetime, dry_run: bool, target: Protocol | None
) -> Iterator[Computed]:
    """(changes, writes, courses left to the one-course path) of each chunk of ``ids``, in
    order; planned in forked worker processes (each reading through its own connection) when
    there are many courses and more than one core."""
    chunks = [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]
    sqlite = store.dialect == "sqlite"
    url = store.engine.url
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parallel = (
        len(ids) >= PARALLEL_FROM and cores > 1 and "fork" in get_all_start_methods()
        and not (sqlite and url.database in (None, "", ":memory:"))
    )  # fmt: skip
    if not parallel:
        for chunk in chunks:
            yield _compute(store, rules, chunk, now, dry_run, target)
        return
    from concurrent.futures import ProcessPoolExecutor

    from .importing import _die_with_parent

    # Forked before anything is written: the workers inherit the rules and open their own
    # connection (never one of this process's); they only read.
    _JOB.update(url=url.render_as_string(hide_password=False), rules=rules, now=now, dry_run=dry_run,
                target=target, store=None)  # fmt: skip
    try:
        context = get_context("fork")
        workers = min(cores, 4)
        with ProcessPoolExecutor(workers, context, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            yield from pool.map(_compute_job, chunks)
    finally:
        _JOB.clear()


def _compute_job(ids: list[str]) -> Computed:
    """In a worker process: ``_compute`` of one chunk, through the worker's own store."""
    store = _JOB.get("store")
    if store is None:
        store = _JOB["store"] = SqlStore(engine_for(_JOB["url"], create=False))
    return _compute(store, _JOB["rules"], ids, _JOB["now"], _JOB["dry_run"], _JOB["target"])


def _compute(
    store: SqlStore, rules: Rulebook, ids: list[str], now: datetime, dry_run: bool, target: Protocol | None
) -> Computed:
    """Read a chunk of courses and work out what replanning (or migrating onto ``target``)
    each changes, against its plan as stored; nothing written."""
    changes: list[CourseChange] = []
    writes: list[ReplanWrite] = []
    slow: set[str] = set()
    sqlite = store.dialect == "sqlite"
    gc.disable()
    try:
        for course, stored, stored_plan in store.read_chunk(ids):
            change, write = _course_change(course, stored, stored_plan, rules, now, sqlite, target, dry_run)
            changes.append(change)
            if write is None:
                continue
            if any(h.event == "change_therapist" for h in course.history):
                slow.add(course.id)  # who else holds its sessions (a handover): the one-course path
                continue
            writes.append(write)
    finally:
        gc.enable()
    return changes, writes, slow


def _course_change(
    course: Course, stored: list[StoredReminder], stored_plan: Any, rules: Rulebook, now: datetime, sqlite: bool,
    target: Protocol | None, dry_run: bool = False,
) -> tuple[CourseChange, ReplanWrite | None]:  # fmt: skip
    """What replanning ``course`` (or migrating it onto ``target``) changes, compared with
    its ``stored`` reminders and ``stored_plan``, and what to write (None: nothing)."""
    if target is None:
        change = CourseChange(course.id, course.protocol, course.protocol_version, "replanned",
                              timezone=course.timezone)  # fmt: skip
        try:
            protocol = protocol_of(rules, course)
        except StoreError as exc:
            change.status, change.reason = "refused", str(exc)
            return change, None
        new = course
    else:
        change = CourseChange(course.id, course.protocol, course.protocol_version, "migrated", to=target.version,
                              timezone=course.timezone)  # fmt: skip
        if course.protocol != target.id:
            change.status, change.reason = "refused", f"follows {course.protocol}, not {target.id}"
            return change, None
        if course.protocol_version == target.version:
            change.status, change.reason = "unchanged", f"already on {target.version}"
            return change, None
        try:
            new = migrate_course(course, protocol_of(rules, course), target, now)
        except (StoreError, Refused) as exc:
            change.status = "refused"
            change.reason = exc.reason if isinstance(exc, Refused) else str(exc)
            return change, None
        protocol = target
    planned_sessions, planned = plan_rows(new, protocol, rules.clinic)
    fingerprint = rules_fingerprint(protocol, rules.clinic)
    when: Callable[[datetime], Any] = _sqlite_text if sqlite else _same
    write = _reconcile_stored(new, planned, stored, when(now), when, change)
    lists = plan_lists(planned_sessions)
    text = json.dumps(lists)
    before: list[list[Any]] | None = None
    if stored_plan != text and stored_plan != lists:  # else the sessions as stored: nothing to compare
        before = json.loads(stored_plan) if isinstance(stored_plan, str) else stored_plan or []
        _session_diff(before, planned_sessions, change)
    if target is None and not change.changed:
        change.status = "unchanged"
        if course.rules_fingerprint == fingerprint:
            return change, None
    if dry_run:
        return change, None
    write.course, write.version, write.fingerprint, write.plan = course.id, course.version, fingerprint, text
    recorded = [session_values(course.id, s) for s in planned_sessions if s.status is not SessionStatus.planned]
    if recorded != [session_values(course.id, s) for s in course.sessions]:
        write.sessions = recorded
    if before is not None:  # the sessions changed: the times it books that it did not are checked
        buffer = rules.clinic.buffer()
        write.bookings = bookings(new, planned_sessions, buffer)
        was = stored_bookings(course.id, course.therapist, course.timezone, before, buffer, course.group is not None)
        write.new_bookings = new_bookings(was, write.bookings)
    if new is not course:
        write.values = course_values(new)
        seq0 = len(course.history)
        write.history = [history_values(course.id, seq0 + i, h) for i, h in enumerate(new.history[seq0:])]
    return change, write


def _same(value: datetime) -> datetime:
    return value


def _sqlite_text(value: datetime) -> str:
    """``schema.to_text`` of an instant, quicker for one already in UTC (every planned one)."""
    return str(value)[:-6] if value.tzinfo is UTC else to_text(value)


def _stored_due(value: Any) -> str:
    """``iso_utc`` of an instant as stored: text on SQLite ('YYYY-MM-DD HH:MM:SS[.ffffff]')."""
    if isinstance(value, str):
        return f"{value[:10]}T{value[11:19]}+00:00"
    return iso_utc(value)


def _reconcile_stored(
    after: Course, planned: list[PlannedRow], stored: list[StoredReminder], at: Any, when: Callable[[datetime], Any],
    change: CourseChange,
) -> ReplanWrite:  # fmt: skip
    """``lifecycle.reconcile`` on plain values (instants as the database holds them): what
    makes the ``stored`` reminders the ``planned`` ones; the change's reminder lists filled in,
    and a write (its course fields still to set) that does it."""
    write = ReplanWrite("", 0, "", "")
    by_id = {x[0]: x for x in stored}
    planned_ids = {r[0] for r in planned}
    recorded = {s.number for s in after.sessions}
    gone = []
    for x in stored:
        rid, kind, audience, due, session, status, rule = x
        if status != "pending" or rid in planned_ids:
            continue
        unrecorded = kind == "attendance_unrecorded" and session in recorded  # goes even when due
        if not unrecorded and audience == "therapist" and (rule is not None or due <= at):
            continue  # an alert already raised stays
        gone.append(x)
    gone.sort(key=lambda x: (x[3], x[0]))
    cid = after.id
    added, moved = change.reminders_added, change.reminders_moved
    for rid, kind, audience, planned_due, session, rule in planned:
        old = by_id.get(rid)
        due = when(planned_due)
        if old is None:
            write.insert.append((cid, rid, kind, audience, due, session, "pending", rule, 0))
            added.append({"id": rid, "kind": kind, "due": iso_utc(planned_due), "session": session})
        elif old[5] == "cancelled":
            write.repend.append((rid, due))
            added.append({"id": rid, "kind": kind, "due": iso_utc(planned_due), "session": session})
        elif old[5] == "pending" and old[3] != due:
            write.move.append((rid, due))
            moved.append(
                {"id": rid, "kind": kind, "from": _stored_due(old[3]), "to": iso_utc(planned_due), "session": session}
            )
    for rid, kind, _, due, session, _, _ in gone:
        write.cancel.append((rid, due))
        change.reminders_cancelled.append({"id": rid, "kind": kind, "due": _stored_due(due), "session": session})
    return write


def expected_fingerprints(rules: Rulebook) -> dict[tuple[str, str], str]:
    """The fingerprint a plan made under ``rules`` carries, by (protocol, version)."""
    return {(p.id, p.version): rules_fingerprint(p, rules.clinic) for p in rules.all_protocols()}


# ---------------------------------------------------------------- the daemon's check


def rules_signature(directory: Path | None) -> tuple[Any, ...]:
    """What changes when a rule file is edited: name, size and mtime of every rule file of the
    built-in rules and of ``directory``."""
    out: list[Any] = []
    for base in (builtin_rules_dir(), directory):
        if base is None:
            continue
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            out.append((str(base), None))
            continue
        for entry in entries:
            if entry.name.endswith((".yaml", ".yml")):
                with_stat = entry.stat()
                out.append((str(base), entry.name, with_stat.st_size, with_stat.st_mtime_ns))
    return tuple(out)


class RulesWatch:
    """The daemon's rules, reloaded when a rule file changes, and its check before it emits:
    a claimed reminder of a course whose plan was made under other rules is not sent until the
    course is replanned under the rules in force, and then only if the new plan still holds it.
    The check is one read of the claimed courses' fingerprints per batch."""

    def __init__(self, store: SqlStore, rules: Rulebook, directory: Path | None, reload: bool = True) -> None:
        self.reload = reload
        self.store = store
        self.rules = rules
        self.directory = directory
        self.signature = rules_signature(directory) if reload else ()
        self.expected = expected_fingerprints(rules)
        self.failed: tuple[Any, ...] | None = None

    def current(self) -> Rulebook:
        """The rules in force: reloaded when a file changed; a file that does not load keeps
        the rules loaded before (one log line for each bad state of the files)."""
        if not self.reload:
            return self.rules
        signature = rules_signature(self.directory)
        if signature == self.signature:
            return self.rules
        try:
            rules = load_rules(self.directory)
        except IptError as exc:
            if signature != self.failed:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("rules not reloaded: %s; keeping the rules loaded before", first)
                self.failed = signature
            return self.rules
        self.rules, self.signature, self.failed = rules, signature, None
        self.expected = expected_fingerprints(rules)
        log.info("rules reloaded")
        return rules

    def _stale(self, rules: Rulebook, rows: list[dict[str, Any]]) -> list[str]:
        """The courses of ``rows`` whose stored plans were made under other rules."""
        found = self.store.fingerprints(sorted({row["course_id"] for row in rows}))
        return sorted(
            cid for cid, (pid, version, fp) in found.items() if (pid, version) in self.expected
            and self.expected[(pid, version)] != fp
        )  # fmt: skip

    def preview(self, rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """``__call__`` read only (``ipt daemon --once --dry-run``): the due ``rows`` less those
        a replan of their course under the rules in force would cancel or move (and those of a
        course that cannot be replanned now, which a run would try again later); nothing written."""
        rules = self.current()
        stale = self._stale(rules, rows)
        if not stale:
            return rows
        gone: set[tuple[str, str]] = set()
        failed: set[str] = set()
        for cid in stale:
            try:
                change = replan_course(self.store, rules, cid, now, dry_run=True)
            except (IptError, ConflictError):
                failed.add(cid)
                continue
            gone.update((cid, r["id"]) for r in [*change.reminders_cancelled, *change.reminders_moved])
        return [r for r in rows if r["course_id"] not in failed and (r["course_id"], r["id"]) not in gone]

    def __call__(self, rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """The claimed ``rows`` to emit: those of courses planned under the rules in force, and
        of the others, after replanning each, those the new plan left as they were. Rows a replan
        cancelled or moved have lost their lease (claimed again when due); a course that cannot
        be replanned now has its rows tried again later."""
        rules = self.current()
        stale = self._stale(rules, rows)
        if not stale:
            return rows
        failed: set[str] = set()
        for cid in stale:
            try:
                replan_course(self.store, rules, cid, now)
                log.info("replanned course %s: rules changed", cid)
            except (IptError, ConflictError) as exc:
                log.error("replan failed course=%s error=%s", cid, type(exc).__name__)
                failed.add(cid)
        touched = set(stale)
        keep = self.store.unchanged_claims(
            [r for r in rows if r["course_id"] in touched and r["course_id"] not in failed]
        )
        later = [r for r in rows if r["course_id"] in failed]
        if later:
            claims = [((r["course_id"], r["id"], r["attempts"]), now + timedelta(seconds=30), "rules changed")
                      for r in later]  # fmt: skip
            self.store.retry_later(claims)
        return [r for r in rows if r["course_id"] not in touched or (r["course_id"], r["id"]) in keep]
