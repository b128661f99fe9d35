"""Use cases: each opens what it needs on the store, calls the core, saves, and returns
plain results. The clock is read by the caller (CLI or ``Workflow``), never here."""

from __future__ import annotations

import csv
import gc
import io
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from time import sleep, time_ns
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from .core.clashes import UNASSIGNED, Ledger, bookings, describe, new_bookings
from .core.errors import ConflictError, CourseExists, InvalidInput, IptError, Refused, StoreError, shown
from .core.lifecycle import apply_planned, new_course, reconcile
from .core.model import EVENT_DATA, Absence, Course, Effects, NoData, Plan, Session, check_reference
from .core.plan_reuse import stored_plan
from .core.planner import (
    plan,
    reminder_id,
    rules_fingerprint,
    session_reminders,
    sessions,
    slot_warnings,
    slot_warnings_at,
)
from .core.protocol import Protocol
from .core.values import DateLike, TimeLike, ZoneLike, as_date, as_time, as_zone_name
from .core.wallclock import check_ahead, parse_date, parse_time, zone
from .inputs import read_regular_file
from .rulebook.files import Rulebook, load_rules
from .storage.booking_sql import BookingCheck, BulkBooking
from .storage.direct import to_text
from .storage.new_rows import NewReminder, Rows, build_new_rows

if TYPE_CHECKING:  # the store is passed in: on the CLI's write path, one without SQLAlchemy (storage.lite)
    from .storage.sql import SqlStore

CSV_COLUMNS = ("client", "therapist", "protocol", "start", "time", "tz")
CSV_OPTIONAL = ("id", "group")
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


# ---------------------------------------------------------------- bulk import


RowStatus = Literal["imported", "existing", "refused"]


class ImportedRow(BaseModel):
    """One data row of an import: its line, the course id it has (or would have had), and
    ``imported`` (new), ``existing`` (stored by an earlier import: left alone) or ``refused``."""

    line: int
    id: str | None
    status: RowStatus


class ImportReport(BaseModel):
    """An import: courses ``imported`` of ``rows`` data rows, ``existing`` rows a former
    import stored already (matched by the ``id`` column, else by client + protocol + start,
    or client + group); ``problems`` and ``warnings`` as ``FILE:LINE: message``; ``courses``:
    each row's id and status, by line."""

    imported: int = 0
    rows: int = 0
    existing: int = 0
    problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    courses: list[ImportedRow] = Field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    values: dict[str, str]


def read_csv(path: Path) -> tuple[list[str], list[_Row], list[str]]:
    """(problems of the header, the data rows, problems of rows) of a course CSV. Raises
    InvalidInput if the file cannot be read, is not a regular file, or breaks the CSV format
    (a field over the ``csv`` module's limit of 131,072 characters, say) at ``FILE:LINE``."""
    text = read_regular_file(path, encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = f"(columns: {', '.join(CSV_COLUMNS)}[, id, group])"
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InvalidInput(f"{path}:1: empty file (header: {', '.join(CSV_COLUMNS)}[, id, group])") from None
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: {_csv_problem(exc)}") from None
    header_problems: list[str] = []
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS + CSV_OPTIONAL]
    twice = [c for i, c in enumerate(header) if c in header[:i]]
    if missing:
        header_problems.append(f"{path}:1: missing column '{missing[0]}' {columns}")
    if unknown:
        header_problems.append(f"{path}:1: unknown column {shown(unknown[0])} {columns}")
    if twice:
        header_problems.append(f"{path}:1: column {shown(twice[0])} is given twice {columns}")
    if header_problems:
        return header_problems, [], []
    problems: list[str] = []
    rows = []
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                problems.append(f"{path}:{line}: {len(record)} fields, the header has {len(header)}")
                continue
            values = {h: v.strip() for h, v in zip(header, record, strict=True)}
            control = next((h for h, v in values.items() if not v.isprintable()), None)
            if control is not None:  # never echoed: it may be a client reference
                problems.append(f"{path}:{line}: {control}: control characters are not allowed")
                continue
            rows.append(_Row(line, values))
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: {_csv_problem(exc)}") from None
    return [], rows, problems


def _csv_problem(exc: csv.Error) -> str:
    if "field limit" in str(exc):
        return f"a field is longer than {csv.field_size_limit():,} characters (the CSV field limit)"
    return f"not CSV ({exc})"


def import_csv(
    store: SqlStore,
    rules: Rulebook,
    path: Path,
    now: datetime,
    *,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    allow_clash: bool = False,
) -> ImportReport:
    """Create every course in a CSV (columns client, therapist, protocol, start, time, tz and
    an optional id and group) with its plan and reminders. A row with a ``group`` joins that
    group as ``ipt group add`` does (``groups.GroupJoins``): its therapist, protocol, start,
    time and tz may be empty (the group's) or must be the group's.

    All or nothing by default: any bad row (``FILE:LINE: message``) and nothing is written.
    With ``skip_bad`` the good rows are imported and the bad ones reported. A row whose plan
    books its therapist over a stored course's session or an earlier row's is a bad row,
    unless ``allow_clash`` (booked, with a ``schedule_conflict`` alert). The check runs in
    memory against the therapists' bookings read once, inside the import's transaction.
    """
    header, rows, problems = read_csv(path)
    if header:
        raise InvalidInput("\n".join(header))  # not a bad row: the whole file is unreadable
    report = ImportReport(rows=len(rows) + len(problems), problems=problems)
    seen: dict[str, int] = {}
    stored = store.natural_keys()
    by_key = {_stored_key(k): cid for cid, k in stored.items()}
    keys_seen: dict[tuple[str, ...], int] = {}
    taken = set(stored)
    checked: list[_Row] = []
    found: dict[int, tuple[str | None, RowStatus]] = {}
    for row in rows:  # ids and natural keys are checked here, once, before any planning
        key = _row_key(rules, row)
        earlier = by_key.get(key) if key is not None else None
        given = row.values.get("id")
        if given and given in stored and key is not None and _stored_key(stored[given]) == key:
            earlier = given
        if earlier is not None and (not given or given == earlier):
            found[row.line] = (earlier, "existing")  # a former import stored it: left alone
            continue
        problem = _id_problem(row, seen, taken)
        if problem is None and key is not None and key in keys_seen:
            problem = f"the same client, protocol and start (or group) as line {keys_seen[key]}"
        if problem:
            report.problems.append(f"{path}:{row.line}: {problem}")
            found[row.line] = (given or None, "refused")
            continue
        if key is not None:
            keys_seen[key] = row.line
        if not given:
            row.values["id"] = new_course_id()  # known now, so the report can name it
        found[row.line] = (row.values["id"], "imported")
        report.warnings += [f"{path}:{row.line}: {w}" for w in _row_warnings(rules, row)]
        checked.append(row)
    report.existing = sum(status == "existing" for _, status in found.values())
    bad_lines: set[int] = set()
    grouped = [r for r in checked if r.values.get("group")]
    checked = [r for r in checked if not r.values.get("group")]
    joins = None
    if grouped:
        from .groups import GroupJoins

        joins = GroupJoins.read(store, rules, grouped)
        report.problems.extend(f"{path}:{p}" for p in joins.problems)
        bad_lines.update(_lines_of(joins.problems))
    failed = bool(report.problems) and not skip_bad
    sqlite = store.dialect == "sqlite"
    chunks = list(chunked(checked, IMPORT_CHUNK))
    done = 0
    total = len(checked) + len(grouped)

    ledger = Ledger(rules.clinic.buffer())
    therapists = {r.values["therapist"] for r in checked} - {UNASSIGNED}
    if joins is not None:
        therapists |= joins.therapists
    absent: Absent = {}
    for a in store.absences(therapists) if therapists else []:
        absent.setdefault(a.therapist, []).append(a)
    booking = BulkBooking(therapists, rules.clinic.buffer(), ledger.seed)

    def with_groups(
        results: Iterator[tuple[list[str], Rows, list[RowBookings]]],
    ) -> Iterator[tuple[list[str], Rows, list[RowBookings]]]:
        yield from results
        if joins is not None:  # last: their pre-group sessions go where no row so far is booked
            yield joins.plan(ledger, now, sqlite)

    def batches(results: Iterator[tuple[list[str], Rows, list[RowBookings]]]) -> Iterator[Rows]:
        # All or nothing: after the first bad row nothing more is written, but every row is
        # still checked so that every problem is reported; then the transaction rolls back.
        nonlocal done, failed
        for planned_problems, rows_, booked in with_groups(results):
            clashing, rows_ = _check_clashes(ledger, booked, rows_, allow_clash, now, sqlite)
            problems_ = planned_problems + clashing
            report.problems.extend(f"{path}:{p}" for p in problems_)
            bad_lines.update(_lines_of(problems_))
            failed = failed or (bool(problems_) and not skip_bad)
            done += len(rows_.courses) + len(problems_)
            if progress is not None:
                progress(done, total)
            if not failed:
                yield rows_
        if failed:
            raise _Abort

    before = joins.check if joins is not None else None
    workers = _workers(len(checked), rules)
    try:
        # Rows are planned and written in batches inside one transaction: memory stays flat,
        # and a bad row (all or nothing) rolls every batch back. Big files are planned in
        # worker processes while this one writes.
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_all_start_methods, get_context

            # fork where there is one: a spawned worker re-runs the caller's main module, which
            # breaks a library user's script without an `if __name__ == "__main__"` guard. The
            # workers are forked before the write transaction starts, touch no connection, and
            # leave through os._exit, so no inherited SQLite handle is ever closed by them.
            method = "fork" if "fork" in get_all_start_methods() else "spawn"
            context = get_context(method)
            with ProcessPoolExecutor(workers, context, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
                jobs = [(str(rules.directory), chunk, now, sqlite, absent) for chunk in chunks]
                report.imported = store.write_batches(batches(pool.map(_plan_chunk, jobs)), booking, before)
        else:
            chunk_rows = (_plan_chunk_with(rules, c, now, sqlite, absent) for c in chunks)
            report.imported = store.write_batches(batches(chunk_rows), booking, before)
    except _Abort:
        report.imported = 0
        raise InvalidInput("\n".join(sorted(report.problems, key=_line_order))) from None
    except CourseExists:  # another writer stored some of these ids after they were checked
        checked += grouped
        taken = store.existing_ids([r.values["id"] for r in checked if r.values.get("id")])
        lines = [f"{path}:{r.line}: id: course '{r.values['id']}' already exists" for r in checked
                 if r.values.get("id") in taken]  # fmt: skip
        raise CourseExists("\n".join(lines) or f"{path}: a course id was taken meanwhile; nothing imported") from None
    report.problems.sort(key=_line_order)
    report.courses = [
        ImportedRow(line=line, id=cid, status="refused" if line in bad_lines else status)
        for line, (cid, status) in sorted(found.items())
    ]
    return report


def _lines_of(problems: list[str]) -> set[int]:
    """The row lines of ``LINE: message`` problems."""
    head = (p.split(":", 1)[0] for p in problems)
    return {int(h) for h in head if h.isdigit()}


def _row_key(rules: Rulebook, row: _Row) -> tuple[str, ...] | None:
    """The natural key of a row: (client, group) for a group member, else (client,
    protocol id, start date); None when the row cannot have one (left to the checks)."""
    v = row.values
    client = v.get("client", "")
    if v.get("group"):
        return ("group", client, v["group"])
    protocol, start = v.get("protocol", "").partition("@")[0], v.get("start", "")
    if not (client and protocol and start):
        return None
    try:
        return ("course", client, protocol, parse_date(start, "start").isoformat())
    except InvalidInput:
        return None


def _stored_key(key: tuple[str, str, str, str | None]) -> tuple[str, ...]:
    client, protocol, start, group = key
    return ("group", client, group) if group else ("course", client, protocol, start)


def _row_warnings(rules: Rulebook, row: _Row) -> list[str]:
    """``course create``'s warnings for a row's weekly slot (weekend, out of hours)."""
    v = row.values
    if v.get("group") or not v.get("start") or not v.get("time"):
        return []
    try:
        start, slot = parse_date(v["start"], "start"), parse_time(v["time"], "time")
    except InvalidInput:
        return []
    return slot_warnings_at(start, slot, rules.clinic)


def _line_order(problem: str) -> tuple[int, str]:
    """Sort ``FILE:LINE: message`` lines by line number."""
    parts = problem.rsplit(": ", 1)[0].split(":")
    line = next((int(p) for p in reversed(parts) if p.isdigit()), 0)
    return line, problem


IMPORT_CHUNK = 1000
PARALLEL_FROM = 5000


def _workers(rows: int, rules: Rulebook) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if rows < PARALLEL_FROM or cores < 2 or rules.directory is None:
        return 1
    return min(cores, 4)


_WORKER_RULES: dict[str, Rulebook] = {}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """In a worker process: end when the importing process ends, however it ends (a killed
    import must not leave workers asleep on their queue). Linux: the kernel sends SIGKILL
    (``PR_SET_PDEATHSIG``); everywhere: a thread checks the parent every half second."""
    if sys.platform == "linux":
        import ctypes  # import workers only: not loaded by every command

        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it ended before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="ipt-parent-watch", daemon=True).start()


#: A planned row's bookings for the clash check: (line, course id, therapist, zone, slots).
RowBookings = tuple[int, str, str, str, list[tuple[int, int, int]]]


Absent = dict[str, list[Absence]]


def _plan_chunk(
    job: tuple[str, list[_Row], datetime, bool, Absent],
) -> tuple[list[str], Rows, list[RowBookings]]:
    """In a worker process: plan one chunk of rows into database rows."""
    directory, chunk, now, sqlite, absent = job
    rules = _WORKER_RULES.get(directory)
    if rules is None:
        rules = _WORKER_RULES[directory] = load_rules(Path(directory))
    return _plan_chunk_with(rules, chunk, now, sqlite, absent)


def _plan_chunk_with(
    rules: Rulebook, chunk: list[_Row], now: datetime, sqlite: bool, absent: Absent
) -> tuple[list[str], Rows, list[RowBookings]]:
    problems: list[str] = []
    built: list[tuple[Course, list[Session], list[NewReminder]]] = []
    booked: list[RowBookings] = []
    fingerprints: dict[str, str] = {}
    gc.disable()
    try:
        for row in chunk:
            try:
                course, protocol = _new_course(rules, row, now)
            except IptError as exc:
                problems.append(f"{row.line}: {exc}")
                continue
            away = [a for a in absent.get(course.therapist, ()) if a.until >= course.start]
            if away:
                course = course.model_copy(update={"absences": away})
            planned = sessions(course, protocol, rules.clinic)  # a new course: no alerts, no follow-ups yet
            raw = session_reminders(course, protocol, rules.clinic, planned)
            built.append((course, planned, [(rid, kind, aud, due, n, None) for rid, kind, aud, due, n in raw]))
            fingerprints[course.id] = rules_fingerprint(protocol, rules.clinic)
            if course.therapist != UNASSIGNED:
                slots = [(int(s.start.timestamp()), s.duration_minutes, s.number) for s in planned]
                booked.append((row.line, course.id, course.therapist, course.timezone, slots))
        return problems, build_new_rows(built, now, sqlite, fingerprints.get), booked
    finally:
        gc.enable()


def _check_clashes(
    ledger: Ledger, booked: list[RowBookings], rows: Rows, allow_clash: bool, now: datetime, sqlite: bool
) -> tuple[list[str], Rows]:
    """Check a batch's courses against every booking so far (stored, and earlier rows) and
    book them: ``LINE: therapist … is booked …`` for each clashing row, which is left out of
    the rows; with ``allow_clash`` it is booked anyway with a ``schedule_conflict`` alert."""
    problems: list[str] = []
    dropped: set[str] = set()
    for line, course_id, therapist, tz, slots in booked:
        owner, session, hit = ledger.check(course_id, therapist, tz, slots)
        if hit is None or allow_clash:
            ledger.book(therapist, owner, slots)
        if hit is None:
            continue
        if not allow_clash:
            problems.append(f"{line}: {describe(hit)}")
            dropped.add(course_id)
            continue
        rule = f"clash:{hit.course}#{hit.session}"
        rid = reminder_id(course_id, "schedule_conflict", session, hit.local, rule)
        when = to_text(now) if sqlite else now
        rows.reminders.append((course_id, rid, "schedule_conflict", "therapist", when, session, "pending", rule, 0))
    if dropped:
        rows = Rows(
            courses=[r for r in rows.courses if r[0] not in dropped],
            history=[r for r in rows.history if r[0] not in dropped],
            sessions=[r for r in rows.sessions if r[0] not in dropped],
            reminders=[r for r in rows.reminders if r[0] not in dropped],
        )
    return problems, rows


class _Abort(Exception):
    """A bad row in an all-or-nothing import: roll back."""


def _id_problem(row: _Row, seen: dict[str, int], taken: set[str]) -> str | None:
    course_id = row.values.get("id")
    if not course_id:
        return None
    try:
        check_reference(course_id, "id")
    except InvalidInput as exc:
        return str(exc)
    if course_id in seen:
        return f"id: '{course_id}' is also on line {seen[course_id]}"
    seen[course_id] = row.line
    if course_id in taken:
        return f"id: course '{course_id}' already exists"
    return None


def _new_course(rules: Rulebook, row: _Row, now: datetime) -> tuple[Course, Protocol]:
    v = row.values
    for column in CSV_COLUMNS:
        if not v.get(column):
            raise InvalidInput(f"{column}: empty")
    check_reference(v["client"], "client", echo=False)
    check_reference(v["therapist"], "therapist")
    protocol = rules.named(v["protocol"])
    course = new_course(
        protocol, rules.clinic, course_id=v.get("id") or new_course_id(), client=v["client"],
        therapist=v["therapist"], start=parse_date(v["start"], "start"), slot=parse_time(v["time"], "time"),
        timezone=_zone_name(v["tz"], "tz"), now=now,
    )  # fmt: skip
    return course, protocol


def chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
