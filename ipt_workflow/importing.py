"""Courses imported from a CSV file (``ipt import``, ``Workflow.import_csv``): rows read and
checked, planned in worker processes for large files, clash-checked and written in chunks;
run twice, the rows an earlier import stored are left alone."""

from __future__ import annotations

import csv
import gc
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from time import sleep
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from .core.clashes import UNASSIGNED, Ledger, describe
from .core.errors import CourseExists, InvalidInput, IptError, shown
from .core.lifecycle import new_course
from .core.model import Absence, Course, Session, check_reference
from .core.planner import (
    reminder_id,
    rules_fingerprint,
    session_reminders,
    sessions,
    slot_warnings_at,
)
from .core.protocol import Protocol
from .core.wallclock import parse_date, parse_time
from .inputs import read_regular_file
from .rulebook.files import Rulebook, load_rules
from .storage.booking_sql import BulkBooking
from .storage.direct import to_text
from .storage.new_rows import NewReminder, Rows, build_new_rows

if TYPE_CHECKING:  # the store is passed in: on the CLI's write path, one without SQLAlchemy (storage.lite)
    from .storage.sql import SqlStore

from .services import _zone_name, new_course_id

CSV_COLUMNS = ("client", "therapist", "protocol", "start", "time", "tz")
CSV_OPTIONAL = ("id", "group")


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
