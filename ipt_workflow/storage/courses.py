"""Courses: reading one whole, listing them, adding one, and saving an applied event
(optimistic concurrency on ``version``)."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Text, bindparam, delete, insert, select, type_coerce, update

from ..core.clashes import Booking, conflict_alert
from ..core.errors import ConflictError, CourseExists, UnknownName, shown
from ..core.model import (
    ACTIVE_STATES,
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
    SessionStatus,
)
from ..core.planner import reminder_id
from . import schema as t
from .absences import AbsenceReads, handover_therapists
from .base import StoreBase, chunks
from .bookings import BookingCheck
from .bulk import BulkWrites
from .course_sql import Saving, existing_ids, group_plan, load_chunk, save_batch, with_alerts
from .direct import Direct
from .new_rows import build_rows
from .reads import reminder_documents
from .rows import (
    reminder_from_row,
    session_from_row,
)
from .schema import from_text, to_text


class CourseStore(BulkWrites, AbsenceReads):
    """Courses with their history, sessions, measurements and reminders."""

    def _group_plan(self, conn: Connection, group_id: str) -> GroupPlan:
        """The stored schedule of a group, as its members' planners take it."""
        return group_plan(Direct.of(conn), group_id)

    def load(self, course_id: str) -> Course:
        """The stored course; raises UnknownName when there is none."""
        with self._read() as conn:
            return self._load(conn, course_id)

    def load_courses(self, ids: Sequence[str]) -> dict[str, Course]:
        """The stored courses of ``ids`` (the others are left out), read in one transaction
        with a few queries per 500 ids, not several per course."""
        with self._read() as conn:
            return self._load_many(conn, ids)

    def _load(self, conn: Connection, course_id: str) -> Course:
        found = self._load_many(conn, [course_id]).get(course_id)
        if found is None:
            raise UnknownName(f"unknown course {shown(course_id)}")
        return found

    def _load_many(self, conn: Connection, ids: Sequence[str]) -> dict[str, Course]:
        out: dict[str, Course] = {}
        for chunk in chunks(list(dict.fromkeys(ids)), 500):
            out.update(self._load_chunk(conn, list(chunk)))
        return out

    def _load_chunk(self, conn: Connection, ids: list[str]) -> dict[str, Course]:
        return load_chunk(Direct.of(conn), ids)

    def reminders_of(self, ids: Sequence[str]) -> dict[str, list[Reminder]]:
        """The stored reminders of each course of ``ids``, in due order (as ``reminders``)."""
        r = t.reminders.c
        out: dict[str, list[Reminder]] = {i: [] for i in ids}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(ids)), 500):
                query = select(t.reminders).where(r.course_id.in_(chunk)).order_by(r.due, r.id)
                for row in conn.execute(query).mappings():
                    out[row["course_id"]].append(reminder_from_row(row))
        return out

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored courses."""
        with self._read() as conn:
            return existing_ids(Direct.of(conn), ids)

    def natural_keys(self) -> dict[str, tuple[str, str, str, str | None]]:
        """``{id: (client, protocol, start date ISO, group)}`` of every stored course: what an
        import matches its rows against (one read of four columns)."""
        c = t.courses.c
        with self._read() as conn:
            rows = conn.execute(select(c.id, c.client, c.protocol, c.start_date, c.group_id))
            return {r[0]: (r[1], r[2], r[3].isoformat(), r[4]) for r in rows}

    def courses(self, state: str | None = None, therapist: str | None = None) -> list[dict[str, Any]]:
        """Summaries ``{id, client, therapist, protocol, state, version, created_at}`` by id."""
        c = t.courses.c
        query = select(c.id, c.client, c.therapist, c.protocol, c.state, c.version, c.created_at).order_by(c.id)
        if state:
            query = query.where(c.state == state)
        if therapist:
            query = query.where(c.therapist == therapist)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def reminders(
        self,
        course: str | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Reminder]:
        """Reminders in due order, filtered by course, ``start <= due < until`` and status
        (the query of ``reads.reminder_documents``, as models)."""
        self.ensure_schema()
        documents = reminder_documents(self.engine, course, start, until, status, limit)
        return [Reminder.model_validate(d) for d in documents]

    def add(self, course: Course, plan: Plan, now: datetime, booking: BookingCheck | None = None) -> Course:
        """Store a new course with its plan and reminders; returns it at version 1 (with any
        ``schedule_conflict`` alerts ``booking`` raised). Raises CourseExists (nothing written)
        when its id is taken, even by a writer racing this one, and ScheduleClash when
        ``booking`` refuses a clash; the clash check and the write are one transaction."""
        sqlite = self.dialect == "sqlite"
        stored: list[tuple[Course, Plan]] = [(course, plan)]

        def check(conn: Connection) -> None:
            if booking is not None:
                found = self._check_bookings(conn, booking, course.id)
                if found:
                    stored[0] = with_alerts(course, plan, [conflict_alert(course, a, b, booking.at) for a, b in found])

        try:
            self.write_batches((build_rows(stored, now, sqlite) for _ in (1,)), before=check)
        except CourseExists:
            raise CourseExists(f"course_id: course {shown(course.id)} already exists") from None
        return stored[0][0].model_copy(update={"version": 1, "rules_fingerprint": stored[0][1].fingerprint})

    def save(
        self,
        before: Course,
        after: Course,
        plan: Plan,
        effects: Effects,
        now: datetime,
        booking: BookingCheck | None = None,
    ) -> Course:
        """Write one applied event atomically; ``before`` is the course as it was read.

        Raises ConflictError (nothing written) when another writer got there first, and
        ScheduleClash when ``booking`` refuses a clash; else a clash it finds is written as
        ``schedule_conflict`` alerts, which the returned course carries.
        """
        with self._write() as conn:
            after = self._save(conn, before, after, plan, effects, now, booking)
            self._notify(conn)
        return after

    def _save(
        self,
        conn: Connection,
        before: Course,
        after: Course,
        plan: Plan,
        effects: Effects,
        now: datetime,
        booking: BookingCheck | None = None,
    ) -> Course:
        """``save`` inside the transaction ``conn``."""
        return self._save_many(conn, [(before, after, plan, effects, booking)], now)[0]

    def _save_many(self, conn: Connection, items: Sequence[Saving], now: datetime) -> list[Course]:
        """``save`` of several courses inside the transaction ``conn``, in order, with a few
        statements per batch rather than several per course. A course whose ``booking`` is
        checked is written after every course before it (its check sees them) and alone."""
        out: list[Course] = []
        batch: list[Saving] = []
        for item in items:
            if item[4] is not None:
                out += self._save_batch(conn, batch, now)
                batch = []
                out += self._save_batch(conn, [item], now)
            else:
                batch.append(item)
        return out + self._save_batch(conn, batch, now)

    def _save_batch(self, conn: Connection, items: Sequence[Saving], now: datetime) -> list[Course]:
        return save_batch(Direct.of(conn), items, now)


def _keys_in(keys: Sequence[tuple[str, str]]) -> Any:
    """A condition on ``ipt_reminders`` that its primary key answers, matching the ``(course_id,
    id)`` of ``keys`` among others: every reminder of their courses (SQLite scans the whole table
    for ``(course_id, id) IN (...)``, and probes every pair for ``course_id IN (...) AND id IN
    (...)``). Callers keep only the keys they asked for."""
    return t.reminders.c.course_id.in_(sorted({k[0] for k in keys}))


def course_from_rows(
    row: Any, hist: Iterable[Any], recorded: Iterable[Any], measures: Iterable[Any], alerts: list[Reminder]
) -> Course:
    """The ``Course`` of its ``ipt_courses`` row and its history, recorded session and
    measurement rows (each in order) and its alerts (without group plan and absences)."""
    return Course(
        id=row["id"],
        client=row["client"],
        therapist=row["therapist"],
        protocol=row["protocol"],
        protocol_version=row["protocol_version"],
        timezone=row["timezone"],
        start=row["start_date"],
        slot=time.fromisoformat(row["slot"]),
        state=CourseState(row["state"]),
        focus=row["focus"],
        current_focus=row["current_focus"],
        foci_worked=row["foci_worked"],
        planned_sessions=row["planned_sessions"],
        sessions=[session_from_row(r) for r in recorded],
        measurements=[
            Measurement(
                instrument=m["instrument"], score=m["score"], item9=m["item9"], at=m["at"], session=m["session"]
            )
            for m in measures
        ],
        pauses=[Pause.model_validate(p) for p in row["pauses"]],
        alerts=alerts,
        fired_rules=row["fired_rules"],
        completed_at=row["completed_at"],
        created_at=row["created_at"],
        history=[
            HistoryEntry.model_validate(
                {
                    "event": h["event"],
                    "at": h["at"],
                    "from": h["from_state"],
                    "to": h["to_state"],
                    "rule": h["rule"],
                    "data": h["data"],
                }
            )
            for h in hist
        ],
        version=row["version"],
        group=row["group_id"],
        rules_fingerprint=row["rules_fingerprint"],
    )


class RuleReads(StoreBase):
    """What rule changes read: which courses run, under which rules their plans were made,
    their stored plans, and which claimed reminders a replan left as they were."""

    def running(
        self, protocol: str | None = None, ids: Sequence[str] | None = None
    ) -> list[tuple[str, str, str, str, str | None]]:
        """``(id, protocol, protocol_version, state, rules_fingerprint)`` of running courses
        (active or paused), by id: of ``protocol``, or those of ``ids`` (any state), or all."""
        c = t.courses.c
        columns = (c.id, c.protocol, c.protocol_version, c.state, c.rules_fingerprint)
        out: list[tuple[str, str, str, str, str | None]] = []
        with self._read() as conn:
            if ids is not None:
                for chunk in chunks(list(ids), 500):
                    out += [tuple(r) for r in conn.execute(select(*columns).where(c.id.in_(chunk)))]
            else:
                running = sorted([s.value for s in ACTIVE_STATES] + [CourseState.paused.value])
                query = select(*columns).where(c.state.in_(running))
                if protocol is not None:
                    query = query.where(c.protocol == protocol)
                out = [tuple(r) for r in conn.execute(query)]
        return sorted(out)

    def fingerprints(self, ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        """``{id: (protocol, protocol_version, rules_fingerprint)}`` of the courses ``ids``:
        one indexed read per 500 ids (the daemon asks once per claimed batch)."""
        c = t.courses.c
        found: dict[str, tuple[str, str, str | None]] = {}
        with self._read() as conn:
            for chunk in chunks(list(ids), 500):
                query = select(c.id, c.protocol, c.protocol_version, c.rules_fingerprint).where(c.id.in_(chunk))
                found.update({r[0]: (r[1], r[2], r[3]) for r in conn.execute(query)})
        return found

    def stored_plan(self, course_id: str) -> list[list[Any]]:
        """The course's plan as last written (``ipt_courses.plan``: one list a session)."""
        with self._read() as conn:
            value = conn.execute(select(t.courses.c.plan).where(t.courses.c.id == course_id)).scalar()
        return list(value or [])

    def unchanged_claims(self, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
        """Of claimed reminder rows (``course_id, id, due, attempts``), the keys still pending
        with the same due instant and claim count: untouched by a replan since the claim."""
        if not rows:
            return set()
        r = t.reminders.c
        wanted = {(row["course_id"], row["id"]): row for row in rows}
        same: set[tuple[str, str]] = set()
        with self._read() as conn:
            for chunk in chunks(list(wanted), 500):
                query = select(r.course_id, r.id, r.status, r.due, r.attempts).where(_keys_in(chunk))
                for course_id, rid, status, due, attempts in conn.execute(query):
                    row = wanted.get((course_id, rid))
                    if row is None:
                        continue
                    if status == "pending" and due == row["due"] and attempts == row["attempts"]:
                        same.add((course_id, rid))
        return same


#: A stored reminder as a replan compares it: (id, kind, audience, due, session, status, rule);
#: ``due`` as the database holds it (UTC text on SQLite, a datetime on PostgreSQL).
StoredReminder = tuple[str, str, str, Any, "int | None", str, "str | None"]


@dataclass
class ReplanWrite:
    """What a replan writes for one course, as plain values (built in a worker process):
    the plan and fingerprint (the course at ``version`` goes to ``version + 1``), the
    reminders to cancel (id, due as stored), move (id, due), insert (rows of the first 9
    columns) and make pending again (id, due), and the recorded sessions when they changed
    (None: as stored). Instants in the database's form (``to_text`` on SQLite)."""

    course: str
    version: int
    plan: str  # JSON text
    fingerprint: str
    cancel: list[tuple[str, Any]] = field(default_factory=list)  # (id, due as stored)
    move: list[tuple[str, Any]] = field(default_factory=list)
    insert: list[tuple[Any, ...]] = field(default_factory=list)
    repend: list[tuple[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] | None = None
    values: dict[str, Any] | None = None  # the course's columns when it changed too (a migration)
    history: list[dict[str, Any]] = field(default_factory=list)  # history rows to add
    # The clash check (SPEC §9) of the times the new plan books that the stored plan did not:
    # those new bookings, and every booking of the new plan (what the others are checked against).
    new_bookings: list[Booking] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)


#: SQLite page cache (KiB) while a batch of replans is written, and the usual one (engine.py).
BATCH_CACHE_KIB = 524288
CACHE_KIB = 65536


class RuleWrites(CourseStore, RuleReads):
    """Many courses read and replanned together (``ipt replan``, ``ipt rules migrate``): one
    read per table for a chunk of courses, and one write transaction a chunk with a statement
    per kind of change (executemany), not per course."""

    def read_chunk(self, ids: Sequence[str]) -> list[tuple[Course, list[StoredReminder], Any]]:
        """The stored courses of ``ids`` (in that order; those not stored left out), each as a
        ``Course`` (alerts, group plan and absences attached, as ``load`` gives it), with every
        reminder stored for it and its stored plan (``ipt_courses.plan``: JSON text on SQLite,
        decoded on PostgreSQL, None before revision 0002); one transaction, one query per table."""
        ids = list(ids)
        c, h, s, m = t.courses.c, t.history.c, t.sessions.c, t.measurements.c
        by_course: dict[str, dict[str, list[Any]]] = {}
        with self._read() as conn:
            # The stored plan as the driver gives it: JSON text on SQLite (compared as text with
            # the new plan's before anyone decodes it), decoded on PostgreSQL.
            columns = [x for x in t.courses.c if x.name != "plan"] + [type_coerce(c.plan, Text).label("plan")]
            rows = {row["id"]: row for row in conn.execute(select(*columns).where(c.id.in_(ids))).mappings()}
            for cid in rows:
                by_course[cid] = {"history": [], "sessions": [], "measures": [], "reminders": []}
            for row in conn.execute(
                select(t.history).where(h.course_id.in_(ids)).order_by(h.course_id, h.seq)
            ).mappings():
                by_course[row["course_id"]]["history"].append(row)
            query = select(t.sessions).where(s.course_id.in_(ids), s.status != SessionStatus.planned.value)
            for row in conn.execute(query.order_by(s.course_id, s.number)).mappings():
                by_course[row["course_id"]]["sessions"].append(row)
            query = select(t.measurements).where(m.course_id.in_(ids)).order_by(m.course_id, m.at, m.seq)
            for row in conn.execute(query).mappings():
                by_course[row["course_id"]]["measures"].append(row)
            # The reminders as plain values straight from the driver, the instant as stored (no
            # conversion per row): a course holds dozens, a chunk tens of thousands.
            mark = "?" if self.dialect == "sqlite" else "%s"
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                if not rows:
                    return []
                cursor.execute(
                    "SELECT course_id, id, kind, audience, due, session, status, rule, detail FROM ipt_reminders "
                    f"WHERE course_id IN ({', '.join(mark for _ in rows)})",
                    list(rows),
                )
                for values in cursor.fetchall():
                    by_course[values[0]]["reminders"].append(values)
            finally:
                cursor.close()
            groups = {row["group_id"] for row in rows.values() if row["group_id"] is not None}
            group_plans = {g: self._group_plan(conn, g) for g in sorted(groups)}
            therapists = {row["therapist"] for row in rows.values()}
            for parts in by_course.values():
                therapists.update(
                    str(x["data"][k]) for x in parts["history"] if x["event"] == "change_therapist"
                    for k in ("previous", "therapist") if k in x["data"]
                )  # fmt: skip
            absences: dict[str, list[Absence]] = {}
            for a in self._absences(conn, therapists):
                absences.setdefault(a.therapist, []).append(a)
        out: list[tuple[Course, list[StoredReminder], Any]] = []
        for cid in ids:
            found = rows.get(cid)
            if found is None:
                continue
            parts = by_course[cid]
            stored = [x[1:8] for x in parts["reminders"]]
            alerts = sorted(
                (_alert(cid, x) for x in parts["reminders"] if x[7] is not None), key=lambda a: (a.due, a.id)
            )
            course = course_from_rows(found, parts["history"], parts["sessions"], parts["measures"], alerts)
            if course.group is not None:
                course = course.model_copy(update={"group_plan": group_plans[course.group]})
            held = {course.therapist} | handover_therapists(course)
            away = sorted(
                (a for x in held for a in absences.get(x, ()) if a.until >= course.start),
                key=lambda a: (a.start, a.until, a.id),
            )
            if away:
                course = course.model_copy(update={"absences": away})
            out.append((course, stored, found["plan"]))
        return out

    def write_replans(
        self, writes: Sequence[ReplanWrite], now: datetime, buffer: timedelta = timedelta(0)
    ) -> dict[str, list[Reminder]]:
        """Write the replans of a chunk of courses in one transaction, all or none: raises
        ConflictError (nothing written) when one of them is no longer at the version read.
        A reminder the daemon sent meanwhile is left as it is (only pending ones are cancelled
        or moved). A course whose new plan books its therapist over another booking (stored, or
        of another course of the chunk as replanned) is booked anyway with a
        ``schedule_conflict`` alert (due ``now``), as for a forced fact; returns those alerts
        by course."""
        if not writes:
            return {}
        sqlite = self.dialect == "sqlite"
        mark = "?" if sqlite else "%s"
        c = t.courses.c
        with self._write() as conn:
            if sqlite:  # room for the pages of the due index a big batch touches, for this batch
                conn.exec_driver_sql(f"PRAGMA cache_size=-{BATCH_CACHE_KIB}")
            expected = {w.course: w.version for w in writes}
            query = select(c.id, c.version).where(c.id.in_(list(expected)))
            if not sqlite:
                query = query.with_for_update()
            found = {row[0]: row[1] for row in conn.execute(query)}
            for cid, version in expected.items():
                if found.get(cid) != version:
                    raise ConflictError(cid, version, found.get(cid))
            when = to_text(now) if sqlite else now
            conn.exec_driver_sql(
                f"UPDATE ipt_courses SET plan = {mark}, rules_fingerprint = {mark}, updated_at = {mark}, "
                f"version = version + 1 WHERE id = {mark} AND version = {mark}",
                [(w.plan, w.fingerprint, when, w.course, w.version) for w in writes],
            )
            changed = [w for w in writes if w.values is not None]
            if changed:
                keys = sorted(changed[0].values or {})
                conn.execute(
                    update(t.courses).where(c.id == bindparam("b_id")).values({k: bindparam(f"v_{k}") for k in keys}),
                    [{"b_id": w.course, **{f"v_{k}": (w.values or {})[k] for k in keys}} for w in changed],
                )
            history = [row for w in writes for row in w.history]
            if history:
                conn.execute(insert(t.history), history)
            pending = "likely(status = 'pending')" if sqlite else "status = 'pending'"
            # In due order: the (status, due) index is then walked, not hit at random (each of
            # its pages is read and dirtied once for the batch), while the rows themselves lie
            # together anyway (the table is clustered by course, a batch is a run of courses).
            cancel = [
                (cid, rid) for _, cid, rid in sorted((due, w.course, rid) for w in writes for rid, due in w.cancel)
            ]
            if cancel:
                conn.exec_driver_sql(
                    f"UPDATE ipt_reminders SET status = 'cancelled', lease_until = NULL "
                    f"WHERE course_id = {mark} AND id = {mark} AND {pending}",
                    cancel,
                )
            move = sorted((due, w.course, rid) for w in writes for rid, due in w.move)
            if move:
                # A claim in flight loses its token (the daemon then does not send it at the old
                # instant); it is claimed again at the new one.
                conn.exec_driver_sql(
                    f"UPDATE ipt_reminders SET due = {mark}, attempts = attempts + "
                    f"CASE WHEN lease_until IS NULL THEN 0 ELSE 1 END, lease_until = NULL "
                    f"WHERE course_id = {mark} AND id = {mark} AND {pending}",
                    move,
                )
            repend = [(due, w.course, rid) for w in writes for rid, due in w.repend]
            if repend:
                conn.exec_driver_sql(
                    f"UPDATE ipt_reminders SET status = 'pending', due = {mark}, last_error = NULL "
                    f"WHERE course_id = {mark} AND id = {mark} AND status = 'cancelled'",
                    repend,
                )
            self._insert_rows(conn, t.reminders, [row for w in writes for row in w.insert], columns=9)
            for w in writes:
                if w.sessions is not None:
                    conn.execute(delete(t.sessions).where(t.sessions.c.course_id == w.course))
                    if w.sessions:
                        conn.execute(insert(t.sessions), w.sessions)
            raised = self._chunk_clashes(conn, writes, now, buffer)
            rows = [
                (a.course, a.id, a.kind, a.audience, when, a.session, "pending", a.rule, 0)
                for alerts in raised.values()
                for a in alerts
            ]
            if rows:
                names = "course_id, id, kind, audience, due, session, status, rule, attempts"
                conn.exec_driver_sql(
                    f"INSERT INTO ipt_reminders ({names}) VALUES ({', '.join(mark for _ in range(9))}) "
                    "ON CONFLICT DO NOTHING",  # an alert raised before is kept once
                    rows,
                )
            self._notify(conn)
        if sqlite:
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"PRAGMA cache_size=-{CACHE_KIB}")
        return raised

    def _chunk_clashes(
        self, conn: Connection, writes: Sequence[ReplanWrite], now: datetime, buffer: timedelta
    ) -> dict[str, list[Reminder]]:
        """The ``schedule_conflict`` alerts of the writes' new bookings: each checked against
        the stored bookings of its therapists, those of the chunk's courses taken as replanned
        (one read of the therapists' bookings for the chunk, after locking them)."""
        checked = [w for w in writes if w.new_bookings]
        if not checked:
            return {}
        therapists = {b.therapist for w in checked for b in w.new_bookings}
        self._lock_bookings(conn, therapists)
        mine = {w.course for w in writes}
        booked = [b for b in self._booked(conn, therapists, buffer) if b.owner != "course" or b.course not in mine]
        booked += [b for w in writes for b in w.bookings if b.therapist in therapists]
        by_therapist: dict[str, list[Booking]] = {}
        for b in booked:
            by_therapist.setdefault(b.therapist, []).append(b)
        for items in by_therapist.values():
            items.sort()
        out: dict[str, list[Reminder]] = {}
        for w in checked:
            found = [(b, hit) for b in sorted(w.new_bookings)
                     if (hit := _first_other(by_therapist.get(b.therapist, []), b, w.course)) is not None]  # fmt: skip
            alerts = {}
            for b, other in found:
                rule = f"clash:{other.course}#{other.session}"
                rid = reminder_id(w.course, "schedule_conflict", b.session, b.local, rule)
                alerts[rid] = Reminder(id=rid, course=w.course, kind="schedule_conflict", audience="therapist",
                                       due=now, session=b.session, rule=rule)  # fmt: skip
            if alerts:
                out[w.course] = list(alerts.values())
        return out


def _first_other(booked: list[Booking], b: Booking, course: str) -> Booking | None:
    """``clashes.first_overlap`` of ``b`` in ``booked`` (sorted), its own course's left out."""
    i = bisect_left(booked, b.start - timedelta(days=1), key=lambda x: x.start)
    for other in booked[i:]:
        if other.start >= b.end:
            break
        if other.end > b.start and (other.owner != "course" or other.course != course):
            return other
    return None


def _alert(course_id: str, x: tuple[Any, ...]) -> Reminder:
    _, rid, kind, audience, due, session, status, rule, detail = x
    if isinstance(detail, str):
        detail = json.loads(detail)
    return Reminder(
        id=rid, course=course_id, kind=kind, audience=audience,
        due=from_text(due) if isinstance(due, str) else due, session=session, status=status, rule=rule,
        detail=detail,
    )  # fmt: skip
