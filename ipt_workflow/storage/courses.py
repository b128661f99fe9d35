"""Courses: reading one whole, listing them, adding one, and saving an applied event
(optimistic concurrency on ``version``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, select, tuple_, update

from ..core.clashes import conflict_alert, plan_therapists
from ..core.errors import ConflictError, CourseExists, UnknownName, shown
from ..core.model import (
    ACTIVE_STATES,
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
from . import schema as t
from .absences import AbsenceReads, handover_therapists
from .base import StoreBase, chunks
from .bookings import BookingCheck
from .bulk import BulkWrites, build_rows
from .reads import reminder_documents
from .rows import (
    course_values,
    group_plan_from,
    history_values,
    measure_values,
    plan_lists,
    reminder_from_row,
    reminder_values,
    session_from_row,
    session_values,
)


class CourseStore(BulkWrites, AbsenceReads):
    """Courses with their history, sessions, measurements and reminders."""

    def _group_plan(self, conn: Connection, group_id: str) -> GroupPlan:
        """The stored schedule of a group, as its members' planners take it."""
        stored = conn.execute(select(t.groups.c.plan).where(t.groups.c.id == group_id)).scalar()
        if stored is None:
            raise UnknownName(f"unknown group {shown(group_id)}")
        return group_plan_from(group_id, stored)

    def load(self, course_id: str) -> Course:
        """The stored course; raises UnknownName when there is none."""
        with self._read() as conn:
            return self._load(conn, course_id)

    def _load(self, conn: Connection, course_id: str) -> Course:
        found = self._load_many(conn, [course_id])
        if not found:
            raise UnknownName(f"unknown course {shown(course_id)}")
        return found[0]

    def _load_many(self, conn: Connection, course_ids: Sequence[str]) -> list[Course]:
        """The stored courses of ``course_ids`` (those that exist, in that order), each table
        read once for all of them (500 ids a query)."""
        rows: dict[str, Any] = {}
        parts: dict[str, tuple[list[Any], list[Any], list[Any], list[Any]]] = {}
        for chunk in chunks(list(course_ids), 500):
            for row in conn.execute(select(t.courses).where(t.courses.c.id.in_(chunk))).mappings():
                rows[row["id"]] = row
                parts[row["id"]] = ([], [], [], [])
            for h in conn.execute(
                select(t.history).where(t.history.c.course_id.in_(chunk)).order_by(t.history.c.seq)
            ).mappings():
                parts[h["course_id"]][0].append(h)
            for r in conn.execute(
                select(t.sessions)
                .where(t.sessions.c.course_id.in_(chunk), t.sessions.c.status != SessionStatus.planned.value)
                .order_by(t.sessions.c.number)
            ).mappings():
                parts[r["course_id"]][1].append(r)
            for m in conn.execute(
                select(t.measurements)
                .where(t.measurements.c.course_id.in_(chunk))
                .order_by(t.measurements.c.at, t.measurements.c.seq)  # time order: a late entry sits in place
            ).mappings():
                parts[m["course_id"]][2].append(m)
            for a in conn.execute(
                select(t.reminders)
                .where(t.reminders.c.course_id.in_(chunk), t.reminders.c.rule.is_not(None))
                .order_by(t.reminders.c.due, t.reminders.c.id)
            ).mappings():
                parts[a["course_id"]][3].append(a)
        plans: dict[str, GroupPlan] = {}
        built: list[tuple[Course, set[str]]] = []
        for course_id in course_ids:
            if course_id not in rows:
                continue
            row = rows[course_id]
            hist, recorded, measures, alerts = parts[course_id]
            course = _course_of(row, hist, recorded, measures, alerts)
            if course.group is not None:
                if course.group not in plans:
                    plans[course.group] = self._group_plan(conn, course.group)
                course = course.model_copy(update={"group_plan": plans[course.group]})
            built.append((course, {course.therapist} | handover_therapists(course)))
        if not built:
            return []
        everyone = set().union(*(who for _, who in built))
        away = self._absences(conn, everyone, since=min(c.start for c, _ in built))  # one query for all
        out: list[Course] = []
        for course, who in built:
            absences = [a for a in away if a.therapist in who and a.until >= course.start]
            out.append(course.model_copy(update={"absences": absences}) if absences else course)
        return out

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored courses."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in chunks(list(ids), 500):
                found.update(conn.execute(select(t.courses.c.id).where(t.courses.c.id.in_(chunk))).scalars())
        return found

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
                    stored[0] = _with_alerts(course, plan, [conflict_alert(course, a, b, booking.at) for a, b in found])

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
        expected = before.version
        if booking is not None:
            clashed = self._check_bookings(conn, booking, after.id)
            if clashed:
                alerts = [conflict_alert(after, a, b, booking.at) for a, b in clashed]
                after, plan = _with_alerts(after, plan, alerts)
                effects = effects.model_copy(update={"added": [*effects.added, *alerts]})
        result = conn.execute(
            update(t.courses)
            .where(t.courses.c.id == after.id, t.courses.c.version == expected)
            .values(
                **course_values(after),
                updated_at=now,
                version=expected + 1,
                plan=plan_lists(plan.sessions),
                rules_fingerprint=plan.fingerprint,
            )
        )
        if result.rowcount != 1:
            found = conn.execute(select(t.courses.c.version).where(t.courses.c.id == after.id)).scalar()
            raise ConflictError(after.id, expected, found)
        seq0 = len(before.history)
        if effects.history:
            entries = [history_values(after.id, seq0 + i, h) for i, h in enumerate(effects.history)]
            conn.execute(insert(t.history), entries)
        new_measures = added_measures(before.measurements, after.measurements)
        if new_measures:
            base = len(before.measurements)
            conn.execute(
                insert(t.measurements),
                [measure_values(after.id, base + i, m) for i, m in enumerate(new_measures)],
            )
        if any(h.event == "change_therapist" for h in after.history):
            _save_therapists(conn, after.id, plan_therapists(after.therapist, plan.sessions))
        conn.execute(delete(t.sessions).where(t.sessions.c.course_id == after.id))
        recorded = [session_values(after.id, s) for s in plan.sessions if s.status is not SessionStatus.planned]
        if recorded:
            conn.execute(insert(t.sessions), recorded)
        pending = t.reminders.c.status == "pending"
        if conn.dialect.name == "sqlite":  # a hint so the primary key is used, not the (status, due) index
            pending = func.likely(pending)
        if effects.cancelled:
            for chunk in chunks(effects.cancelled, 500):
                conn.execute(
                    update(t.reminders)
                    .where(t.reminders.c.course_id == after.id, t.reminders.c.id.in_(chunk), pending)
                    .values(status="cancelled", lease_until=None)
                )
        for r in effects.rescheduled:  # kept under its id, due at another instant by the rules in force
            conn.execute(
                update(t.reminders)
                .where(t.reminders.c.course_id == after.id, t.reminders.c.id == r.id, pending)
                # A claim in flight loses its token (the daemon then does not send it at the old
                # instant); it is claimed again at the new one.
                .values(
                    due=r.due,
                    lease_until=None,
                    attempts=t.reminders.c.attempts + case((t.reminders.c.lease_until.is_(None), 0), else_=1),
                )
            )
        if effects.added:
            ids = [r.id for r in effects.added]
            known = set(
                conn.execute(
                    select(t.reminders.c.id).where(t.reminders.c.course_id == after.id, t.reminders.c.id.in_(ids))
                ).scalars()
            )
            fresh = [r for r in effects.added if r.id not in known]
            if fresh:
                conn.execute(insert(t.reminders), [reminder_values(r) for r in fresh])
            for r in effects.added:
                if r.id in known:  # planned again after a cancellation: pending once more
                    conn.execute(
                        update(t.reminders)
                        .where(
                            t.reminders.c.course_id == after.id,
                            t.reminders.c.id == r.id,
                            t.reminders.c.status == "cancelled",
                        )
                        .values(status="pending", due=r.due, last_error=None)
                    )
        return after.model_copy(update={"version": expected + 1, "rules_fingerprint": plan.fingerprint})


def _with_alerts(course: Course, plan: Plan, alerts: list[Reminder]) -> tuple[Course, Plan]:
    """The course and plan with ``alerts`` added (an alert raised twice is kept once)."""
    known = {a.id for a in course.alerts}
    fresh = [a for a in alerts if a.id not in known]
    course = course.model_copy(update={"alerts": sorted([*course.alerts, *fresh], key=lambda a: (a.due, a.id))})
    reminders = sorted([*plan.reminders, *fresh], key=lambda r: (r.due, r.id))
    return course, Plan(sessions=plan.sessions, reminders=reminders, fingerprint=plan.fingerprint)


def _save_therapists(conn: Connection, course_id: str, therapists: set[str]) -> None:
    """Keep ``ipt_course_therapists`` of a course handed over: the therapists besides its own
    that its plan still books."""
    held = t.course_therapists.c
    stored = set(conn.execute(select(held.therapist).where(held.course_id == course_id)).scalars())
    if stored - therapists:
        conn.execute(
            delete(t.course_therapists).where(held.course_id == course_id, held.therapist.in_(stored - therapists))
        )
    if therapists - stored:
        conn.execute(
            insert(t.course_therapists), [{"course_id": course_id, "therapist": x} for x in sorted(therapists - stored)]
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


def _course_of(row: Any, hist: list[Any], recorded: list[Any], measures: list[Any], alerts: list[Any]) -> Course:
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
        alerts=[reminder_from_row(r) for r in alerts],
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
                query = select(r.course_id, r.id, r.status, r.due, r.attempts).where(
                    tuple_(r.course_id, r.id).in_(list(chunk))
                )
                for course_id, rid, status, due, attempts in conn.execute(query):
                    row = wanted[(course_id, rid)]
                    if status == "pending" and due == row["due"] and attempts == row["attempts"]:
                        same.add((course_id, rid))
        return same


class RuleWrites(CourseStore, RuleReads):
    """Many courses read and replanned together (``ipt replan``)."""

    def load_many(
        self, ids: Sequence[str]
    ) -> tuple[dict[str, Course], dict[str, list[Reminder]], dict[str, list[list[Any]]]]:
        """The courses ``ids`` (those stored), each with its stored reminders and stored plan,
        read in one transaction."""
        r = t.reminders.c
        courses: dict[str, Course] = {}
        reminders: dict[str, list[Reminder]] = {i: [] for i in ids}
        plans: dict[str, list[list[Any]]] = {}
        with self._read() as conn:
            for course_id in ids:
                try:
                    courses[course_id] = self._load(conn, course_id)
                except UnknownName:
                    continue
            for row in conn.execute(select(t.reminders).where(r.course_id.in_(list(ids))).order_by(r.due, r.id)):
                reminders[row.course_id].append(reminder_from_row(row._mapping))
            query = select(t.courses.c.id, t.courses.c.plan).where(t.courses.c.id.in_(list(ids)))
            plans = {cid: list(p or []) for cid, p in conn.execute(query)}
        return courses, reminders, plans

    def save_many(self, items: Sequence[tuple[Course, Course, Plan, Effects]], now: datetime) -> None:
        """``save`` of several courses in one transaction: all or none (ConflictError when
        another writer saved one of them first)."""
        if not items:
            return
        with self._write() as conn:
            for before, after, plan, effects in items:
                self._save(conn, before, after, plan, effects, now)
            self._notify(conn)
