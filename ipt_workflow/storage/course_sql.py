"""The hot path of the course store in plain SQL (``direct``): read courses whole, save one
applied event writing only the rows it changes, add one new course. One implementation for
both dialects, run by ``SqlStore`` on the driver connection under its transaction and by the
SQLAlchemy-free ``lite`` store on sqlite3."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from ..core.clashes import conflict_alert, plan_therapists
from ..core.errors import ConflictError
from ..core.model import (
    Absence,
    Course,
    CourseState,
    Effects,
    GroupPlan,
    HistoryEntry,
    Measurement,
    Pause,
    Plan,
    Reminder,
    Session,
    SessionStatus,
)
from .booking_sql import check_bookings
from .direct import Direct, chunks, marks
from .new_rows import Rows
from .rows import course_values, group_plan_from, plan_lists, reminder_from_row, session_from_row

if TYPE_CHECKING:
    from .booking_sql import BookingCheck

#: What ``save_batch`` takes per course: before, after, plan, effects, booking check.
Saving = tuple[Course, Course, Plan, Effects, "BookingCheck | None"]

#: The columns of the tables new courses are inserted into, in ``new_rows`` order (the tables'
#: order in ``schema``; a test holds them equal).
COURSE_COLUMNS = (
    "id", "client", "therapist", "protocol", "protocol_version", "timezone", "start_date", "slot", "state",
    "planned_sessions", "focus", "current_focus", "foci_worked", "pauses", "fired_rules", "completed_at",
    "created_at", "updated_at", "version", "schema_version", "plan", "group_id", "rules_fingerprint",
)  # fmt: skip
HISTORY_COLUMNS = ("course_id", "seq", "event", "at", "from_state", "to_state", "rule", "data")
SESSION_COLUMNS = (
    "course_id", "number", "phase", "start_utc", "start_local", "status", "step", "duration_minutes", "format",
    "participants", "optional_participants",
)  # fmt: skip
REMINDER_COLUMNS = ("course_id", "id", "kind", "audience", "due", "session", "status", "rule", "attempts")

_READ_COURSE = (
    "SELECT id, client, therapist, protocol, protocol_version, timezone, start_date, slot, state, focus, "
    "current_focus, foci_worked, planned_sessions, pauses, fired_rules, completed_at, created_at, version, "
    "group_id, rules_fingerprint FROM ipt_courses WHERE id IN ({})"
)


def load_chunk(db: Direct, ids: Sequence[str]) -> dict[str, Course]:
    """The stored courses of ``ids`` (at most 500; the others left out), each with its history,
    recorded sessions, measurements, alerts, group plan and absences: one query per table."""
    ids = list(dict.fromkeys(ids))
    where = marks(len(ids))
    rows = {r[0]: r for r in db.rows(_READ_COURSE.format(where), ids)}
    if not rows:
        return {}
    found = list(rows)
    where = marks(len(found))
    hist: dict[str, list[HistoryEntry]] = {i: [] for i in found}
    query = (
        f"SELECT course_id, event, at, from_state, to_state, rule, data FROM ipt_history "
        f"WHERE course_id IN ({where}) ORDER BY course_id, seq"
    )
    for cid, event, at, from_state, to_state, rule, data in db.rows(query, found):
        hist[cid].append(
            HistoryEntry.model_validate(
                {"event": event, "at": db.read_instant(at), "from": from_state, "to": to_state, "rule": rule,
                 "data": db.read_json(data)}
            )
        )  # fmt: skip
    recorded: dict[str, list[Any]] = {i: [] for i in found}
    query = (
        f"SELECT course_id, number, phase, start_local, status, step, duration_minutes, format, participants, "
        f"optional_participants FROM ipt_sessions WHERE course_id IN ({where}) AND status != ? "
        f"ORDER BY course_id, number"
    )
    for r in db.rows(query, [*found, SessionStatus.planned.value]):
        recorded[r[0]].append(
            session_from_row(
                {"number": r[1], "phase": r[2], "start_local": r[3], "status": r[4], "step": r[5],
                 "duration_minutes": r[6], "format": r[7], "participants": db.read_json(r[8]),
                 "optional_participants": db.read_json(r[9])}
            )
        )  # fmt: skip
    measures: dict[str, list[Measurement]] = {i: [] for i in found}
    query = (
        f"SELECT course_id, instrument, score, item9, at, session FROM ipt_measurements "
        f"WHERE course_id IN ({where}) ORDER BY course_id, at, seq"
    )
    for cid, instrument, score, item9, at, session in db.rows(query, found):  # time order: a late entry in place
        measures[cid].append(
            Measurement(instrument=instrument, score=score, item9=item9, at=_instant(db, at), session=session)
        )
    alerts: dict[str, list[Reminder]] = {i: [] for i in found}
    query = (
        f"SELECT course_id, id, kind, audience, due, session, status, rule, detail FROM ipt_reminders "
        f"WHERE course_id IN ({where}) AND rule IS NOT NULL ORDER BY course_id, due, id"
    )
    for r in db.rows(query, found):
        alerts[r[0]].append(
            reminder_from_row(
                {"course_id": r[0], "id": r[1], "kind": r[2], "audience": r[3], "due": db.read_instant(r[4]),
                 "session": r[5], "status": r[6], "rule": r[7], "detail": db.read_json(r[8])}
            )
        )  # fmt: skip
    courses: dict[str, Course] = {}
    for course_id in ids:
        row = rows.get(course_id)
        if row is None:
            continue
        (cid, client, therapist, protocol, protocol_version, timezone, start, slot, state, focus, current_focus,
         foci_worked, planned_sessions, pauses, fired_rules, completed_at, created_at, version, group,
         fingerprint) = row  # fmt: skip
        courses[course_id] = Course(
            id=cid,
            client=client,
            therapist=therapist,
            protocol=protocol,
            protocol_version=protocol_version,
            timezone=timezone,
            start=db.read_date(start),
            slot=time.fromisoformat(slot),
            state=CourseState(state),
            focus=db.read_json(focus),
            current_focus=current_focus,
            foci_worked=db.read_json(foci_worked),
            planned_sessions=planned_sessions,
            sessions=recorded[course_id],
            measurements=measures[course_id],
            pauses=[Pause.model_validate(p) for p in db.read_json(pauses)],
            alerts=alerts[course_id],
            fired_rules=db.read_json(fired_rules),
            completed_at=db.read_instant(completed_at),
            created_at=_instant(db, created_at),
            history=hist[course_id],
            version=version,
            group=group,
            rules_fingerprint=fingerprint,
        )
    groups = {c.group for c in courses.values() if c.group is not None}
    group_plans = {g: group_plan(db, g) for g in sorted(groups)}
    held = {i: {c.therapist} | handover_therapists(c) for i, c in courses.items()}
    every = absences(db, set().union(*held.values())) if held else []
    for course_id, course in courses.items():
        update: dict[str, Any] = {}
        if course.group is not None:
            update["group_plan"] = group_plans[course.group]
        away = [a for a in every if a.therapist in held[course_id] and a.until >= course.start]
        if away:
            update["absences"] = away
        if update:
            courses[course_id] = course.model_copy(update=update)
    return courses


def _instant(db: Direct, value: Any) -> datetime:
    """A NOT NULL instant column's value."""
    found = db.read_instant(value)
    assert found is not None
    return found


def group_plan(db: Direct, group_id: str) -> GroupPlan:
    """The stored schedule of a group, as its members' planners take it."""
    from ..core.errors import UnknownName, shown

    found = db.rows("SELECT plan FROM ipt_groups WHERE id = ?", (group_id,))
    if not found or found[0][0] is None:
        raise UnknownName(f"unknown group {shown(group_id)}")
    return group_plan_from(group_id, db.read_json(found[0][0]))


def handover_therapists(course: Course) -> set[str]:
    """The therapists a course was handed from and to (``change_therapist``)."""
    out: set[str] = set()
    for entry in course.history:
        if entry.event == "change_therapist":
            out.update(str(entry.data[k]) for k in ("previous", "therapist") if k in entry.data)
    return out


def absence_from_row(row: Any) -> Absence:
    return Absence.model_validate(
        {
            "id": row["id"],
            "therapist": row["therapist"],
            "from": row["start_date"],
            "until": row["until_date"],
            "reason": row["reason"],
            "created_at": row["created_at"],
        }
    )


def absences(db: Direct, therapists: Collection[str] | None, since: date | None = None) -> list[Absence]:
    """The absences of ``therapists`` (of all when None), by start date, end and id (those
    ending before ``since`` left out)."""
    out: list[Absence] = []
    names = ("id", "therapist", "start_date", "until_date", "reason", "created_at")
    query = "SELECT id, therapist, start_date, until_date, reason, created_at FROM ipt_absences"
    parts = [None] if therapists is None else list(chunks(sorted(set(therapists)), 500))
    for chunk in parts:
        where: list[str] = []
        params: list[Any] = []
        if chunk is not None:
            where.append(f"therapist IN ({marks(len(chunk))})")
            params += chunk
        if since is not None:
            where.append("until_date >= ?")
            params.append(db.day(since))
        sql = query + (" WHERE " + " AND ".join(where) if where else "")
        for r in db.rows(sql, params):
            row = dict(zip(names, r, strict=True))
            row["start_date"], row["until_date"] = db.read_date(r[2]), db.read_date(r[3])
            row["created_at"] = db.read_instant(r[5])
            out.append(absence_from_row(row))
    return sorted(out, key=lambda x: (x.start, x.until, x.id))


def existing_ids(db: Direct, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are stored courses."""
    found: set[str] = set()
    for chunk in chunks(list(ids), 500):
        found.update(r[0] for r in db.rows(f"SELECT id FROM ipt_courses WHERE id IN ({marks(len(chunk))})", chunk))
    return found


def with_alerts(course: Course, plan: Plan, alerts: list[Reminder]) -> tuple[Course, Plan]:
    """The course and plan with ``alerts`` added (an alert raised twice is kept once)."""
    known = {a.id for a in course.alerts}
    fresh = [a for a in alerts if a.id not in known]
    course = course.model_copy(update={"alerts": sorted([*course.alerts, *fresh], key=lambda a: (a.due, a.id))})
    reminders = sorted([*plan.reminders, *fresh], key=lambda r: (r.due, r.id))
    return course, Plan(sessions=plan.sessions, reminders=reminders, fingerprint=plan.fingerprint)


def insert_new(db: Direct, rows: Rows) -> None:
    """Insert the rows of new courses (``new_rows.build_rows``) with executemany."""
    for table, names, values in (
        ("ipt_courses", COURSE_COLUMNS, rows.courses),
        ("ipt_history", HISTORY_COLUMNS, rows.history),
        ("ipt_sessions", SESSION_COLUMNS, rows.sessions),
        ("ipt_reminders", REMINDER_COLUMNS, rows.reminders),
    ):
        db.many(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks(len(names))})", values)


# The course columns an event writes (all but id, version and the plan's), in this order.
_COURSE_SET = (
    "client", "therapist", "protocol", "protocol_version", "timezone", "start_date", "slot", "state",
    "planned_sessions", "focus", "current_focus", "foci_worked", "pauses", "fired_rules", "completed_at",
    "created_at", "schema_version", "group_id",
)  # fmt: skip
_JSON = frozenset({"focus", "foci_worked", "pauses", "fired_rules"})
_INSTANT = frozenset({"completed_at", "created_at"})
_UPDATE_COURSE = (
    "UPDATE ipt_courses SET "
    + ", ".join(f"{c} = ?" for c in _COURSE_SET)
    + ", updated_at = ?, version = ?, plan = ?, rules_fingerprint = ? WHERE id = ? AND version = ?"
)


def _course_params(db: Direct, before: Course, after: Course, plan: Plan, now: datetime) -> list[Any]:
    values = course_values(after)
    out: list[Any] = []
    for name in _COURSE_SET:
        v = values[name]
        if name in _JSON:
            v = db.json(v)
        elif name in _INSTANT:
            v = db.instant(v)
        elif name == "start_date":
            v = db.day(v)
        out.append(v)
    plan_json = db.json(plan_lists(plan.sessions))
    return [*out, db.instant(now), before.version + 1, plan_json, plan.fingerprint, after.id, before.version]


def save_batch(db: Direct, items: Sequence[Saving], now: datetime) -> list[Course]:
    """Write applied events of several courses in the current transaction; returns them at
    their new versions. Raises ConflictError (the caller rolls back) when one is no longer at
    the version read, ScheduleClash when a booking check refuses a clash; a clash it finds
    otherwise is written as ``schedule_conflict`` alerts. Writes only what changed: the new
    history and measurement rows, the recorded sessions that differ from the stored ones, the
    reminders the event cancels, moves or adds."""
    if not items:
        return []
    ready: list[tuple[Course, Course, Plan, Effects]] = []
    for before, after, plan, effects, booking in items:
        if booking is not None:
            clashed = check_bookings(db, booking, after.id)
            if clashed:
                alerts = [conflict_alert(after, a, b, booking.at) for a, b in clashed]
                after, plan = with_alerts(after, plan, alerts)
                effects = effects.model_copy(update={"added": [*effects.added, *alerts]})
        ready.append((before, after, plan, effects))
    if len(ready) == 1:  # the update is the version check (and takes the row's lock)
        before, after, plan, _ = ready[0]
        if not db.run(_UPDATE_COURSE, _course_params(db, before, after, plan, now)):
            found = db.rows("SELECT version FROM ipt_courses WHERE id = ?", (after.id,))
            raise ConflictError(after.id, before.version, found[0][0] if found else None)
    else:
        _check_versions(db, ready)
        db.many(_UPDATE_COURSE, [_course_params(db, before, after, plan, now) for before, after, plan, _ in ready])
    db.many(
        f"INSERT INTO ipt_history ({', '.join(HISTORY_COLUMNS)}) VALUES ({marks(len(HISTORY_COLUMNS))})",
        [
            (after.id, len(before.history) + i, h.event, db.instant(h.at), h.from_.value if h.from_ else None,
             h.to.value, h.rule, db.json(h.data))
            for before, after, _, effects in ready
            for i, h in enumerate(effects.history)
        ],
    )  # fmt: skip
    measures = []
    for before, after, _, _ in ready:
        base = len(before.measurements)
        new = added_measures(before.measurements, after.measurements)
        measures += [
            (after.id, base + i, m.instrument, m.score, m.item9, db.instant(m.at), m.session) for i, m in enumerate(new)
        ]
    db.many(
        "INSERT INTO ipt_measurements (course_id, seq, instrument, score, item9, at, session) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        measures,
    )
    for _, after, plan, _ in ready:
        if any(h.event == "change_therapist" for h in after.history):
            _save_therapists(db, after.id, plan_therapists(after.therapist, plan.sessions))
    _save_sessions(db, ready)
    _save_reminders(db, ready)
    return [
        after.model_copy(update={"version": before.version + 1, "rules_fingerprint": plan.fingerprint})
        for before, after, plan, _ in ready
    ]


def _check_versions(db: Direct, ready: Sequence[tuple[Course, Course, Plan, Effects]]) -> None:
    """Raise ConflictError unless every course is still at the version read; the rows are
    locked in id order (FOR UPDATE on PostgreSQL), so two batches never wait in a circle."""
    versions: dict[str, int] = {}
    lock = "" if db.sqlite else " FOR UPDATE"
    for chunk in chunks(sorted(after.id for _, after, _, _ in ready), 500):
        sql = f"SELECT id, version FROM ipt_courses WHERE id IN ({marks(len(chunk))}){lock}"
        versions.update({i: v for i, v in db.rows(sql, chunk)})
    for before, after, _, _ in ready:
        if versions.get(after.id) != before.version:
            raise ConflictError(after.id, before.version, versions.get(after.id))


def _save_sessions(db: Direct, ready: Sequence[tuple[Course, Course, Plan, Effects]]) -> None:
    """Make the recorded sessions stored for each course those of its new plan: insert the new
    ones, update the changed ones, delete those no longer recorded. The stored ones are the
    course's as read (``before.sessions``: its version was checked), so an event that records
    no session writes no session row."""

    def values(course_id: str, s: Session) -> tuple[Any, ...]:
        return (course_id, s.number, s.phase, s.start, s.start.isoformat(), s.status.value, s.step,
                s.duration_minutes, s.format, list(s.participants), list(s.optional_participants))  # fmt: skip

    stored = {(after.id, s.number): values(after.id, s) for before, after, _, _ in ready for s in before.sessions}
    wanted = {
        (after.id, s.number): values(after.id, s)
        for _, after, plan, _ in ready
        for s in plan.sessions
        if s.status is not SessionStatus.planned
    }
    db.many("DELETE FROM ipt_sessions WHERE course_id = ? AND number = ?", [key for key in stored if key not in wanted])

    def bound(v: tuple[Any, ...]) -> list[Any]:
        return [*v[:3], db.instant(v[3]), *v[4:9], db.json(v[9]), db.json(v[10])]

    new = [bound(v) for key, v in wanted.items() if key not in stored]
    db.many(f"INSERT INTO ipt_sessions ({', '.join(SESSION_COLUMNS)}) VALUES ({marks(len(SESSION_COLUMNS))})", new)
    changed = [[*bound(v)[2:], *key] for key, v in wanted.items() if key in stored and stored[key] != v]
    db.many(
        "UPDATE ipt_sessions SET " + ", ".join(f"{c} = ?" for c in SESSION_COLUMNS[2:])
        + " WHERE course_id = ? AND number = ?",
        changed,
    )  # fmt: skip


def _save_reminders(db: Direct, ready: Sequence[tuple[Course, Course, Plan, Effects]]) -> None:
    """The reminders an event cancels (pending ones), moves (kept under their ids, due at
    another instant) and adds (new, or pending again after a cancellation)."""
    # SQLite: a hint so the primary key is used, not the (status, due) index.
    pending = "likely(status = 'pending')" if db.sqlite else "status = 'pending'"
    one = "course_id = ? AND id = ?"
    db.many(
        f"UPDATE ipt_reminders SET status = 'cancelled', lease_until = NULL WHERE {one} AND {pending}",
        [(after.id, i) for _, after, _, effects in ready for i in effects.cancelled],
    )
    # A claim in flight loses its token (the daemon then does not send it at the old instant);
    # it is claimed again at the new one.
    db.many(
        "UPDATE ipt_reminders SET due = ?, lease_until = NULL, "
        f"attempts = attempts + CASE WHEN lease_until IS NULL THEN 0 ELSE 1 END WHERE {one} AND {pending}",
        [(db.instant(x.due), after.id, x.id) for _, after, _, effects in ready for x in effects.rescheduled],
    )
    added = [(after.id, x) for _, after, _, effects in ready for x in effects.added]
    if not added:
        return
    known: set[tuple[str, str]] = set()
    for part in chunks(added, 500):
        known |= stored_keys(db, [(cid, x.id) for cid, x in part])
    db.many(
        "INSERT INTO ipt_reminders (id, course_id, kind, audience, due, session, status, rule, attempts, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, 0, ?)",
        [
            (x.id, x.course, x.kind, x.audience, db.instant(x.due), x.session, x.rule, db.json(x.detail))
            for cid, x in added
            if (cid, x.id) not in known
        ],
    )
    db.many(  # planned again after a cancellation: pending once more
        f"UPDATE ipt_reminders SET status = 'pending', due = ?, last_error = NULL WHERE {one} AND status = 'cancelled'",
        [(db.instant(x.due), cid, x.id) for cid, x in added if (cid, x.id) in known],
    )


def stored_keys(db: Direct, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which ``(course_id, id)`` of ``keys`` are in ``ipt_reminders``: every reminder key of
    their courses is read, which the primary key answers (SQLite scans the whole table for
    ``(course_id, id) IN (...)``), and only the keys asked for are kept."""
    courses = sorted({k[0] for k in keys})
    wanted = set(keys)
    sql = f"SELECT course_id, id FROM ipt_reminders WHERE course_id IN ({marks(len(courses))})"
    return {(c, i) for c, i in db.rows(sql, courses) if (c, i) in wanted}


def _save_therapists(db: Direct, course_id: str, therapists: set[str]) -> None:
    """Keep ``ipt_course_therapists`` of a course handed over: the therapists besides its own
    that its plan still books."""
    stored = {r[0] for r in db.rows("SELECT therapist FROM ipt_course_therapists WHERE course_id = ?", (course_id,))}
    db.many(
        "DELETE FROM ipt_course_therapists WHERE course_id = ? AND therapist = ?",
        [(course_id, x) for x in sorted(stored - therapists)],
    )
    db.many(
        "INSERT INTO ipt_course_therapists (course_id, therapist) VALUES (?, ?)",
        [(course_id, x) for x in sorted(therapists - stored)],
    )


def added_measures(before: list[Measurement], after: list[Measurement]) -> list[Measurement]:
    """The measurements in ``after`` that ``before`` lacks (``after`` is in time order, so a
    questionnaire entered late is not at its end)."""
    left = list(before)
    out = []
    for m in after:
        if m in left:
            left.remove(m)
        else:
            out.append(m)
    return out
