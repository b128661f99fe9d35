"""Courses: reading one whole, listing them, adding one, and saving an applied event
(optimistic concurrency on ``version``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, insert, select, update

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
        rows = {r["id"]: r for r in conn.execute(select(t.courses).where(t.courses.c.id.in_(ids))).mappings()}
        if not rows:
            return {}
        found = list(rows)
        hist: dict[str, list[HistoryEntry]] = {i: [] for i in found}
        h = t.history.c
        for r in conn.execute(select(t.history).where(h.course_id.in_(found)).order_by(h.course_id, h.seq)).mappings():
            hist[r["course_id"]].append(
                HistoryEntry.model_validate(
                    {"event": r["event"], "at": r["at"], "from": r["from_state"], "to": r["to_state"],
                     "rule": r["rule"], "data": r["data"]}
                )
            )  # fmt: skip
        recorded: dict[str, list[Any]] = {i: [] for i in found}
        s = t.sessions.c
        query = (
            select(t.sessions)
            .where(s.course_id.in_(found), s.status != SessionStatus.planned.value)
            .order_by(s.course_id, s.number)
        )
        for r in conn.execute(query).mappings():
            recorded[r["course_id"]].append(session_from_row(r))
        measures: dict[str, list[Measurement]] = {i: [] for i in found}
        m = t.measurements.c
        query = select(t.measurements).where(m.course_id.in_(found)).order_by(m.course_id, m.at, m.seq)
        for r in conn.execute(query).mappings():  # time order: a late entry sits in place
            measures[r["course_id"]].append(
                Measurement(instrument=r["instrument"], score=r["score"], item9=r["item9"], at=r["at"],
                            session=r["session"])
            )  # fmt: skip
        alerts: dict[str, list[Reminder]] = {i: [] for i in found}
        c = t.reminders.c
        query = (
            select(t.reminders).where(c.course_id.in_(found), c.rule.is_not(None)).order_by(c.course_id, c.due, c.id)
        )
        for r in conn.execute(query).mappings():
            alerts[r["course_id"]].append(reminder_from_row(r))
        courses: dict[str, Course] = {}
        for course_id in ids:
            row = rows.get(course_id)
            if row is None:
                continue
            courses[course_id] = Course(
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
                sessions=recorded[course_id],
                measurements=measures[course_id],
                pauses=[Pause.model_validate(p) for p in row["pauses"]],
                alerts=alerts[course_id],
                fired_rules=row["fired_rules"],
                completed_at=row["completed_at"],
                created_at=row["created_at"],
                history=hist[course_id],
                version=row["version"],
                group=row["group_id"],
                rules_fingerprint=row["rules_fingerprint"],
            )
        groups = {c.group for c in courses.values() if c.group is not None}
        group_plans = {g: self._group_plan(conn, g) for g in sorted(groups)}
        therapists = {i: {c.therapist} | handover_therapists(c) for i, c in courses.items()}
        every = self._absences(conn, set().union(*therapists.values())) if therapists else []
        for course_id, course in courses.items():
            update: dict[str, Any] = {}
            if course.group is not None:
                update["group_plan"] = group_plans[course.group]
            absences = [a for a in every if a.therapist in therapists[course_id] and a.until >= course.start]
            if absences:
                update["absences"] = absences
            if update:
                courses[course_id] = course.model_copy(update=update)
        return courses

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
        if not items:
            return []
        ready: list[tuple[Course, Course, Plan, Effects]] = []
        for before, after, plan, effects, booking in items:
            if booking is not None:
                clashed = self._check_bookings(conn, booking, after.id)
                if clashed:
                    alerts = [conflict_alert(after, a, b, booking.at) for a, b in clashed]
                    after, plan = _with_alerts(after, plan, alerts)
                    effects = effects.model_copy(update={"added": [*effects.added, *alerts]})
            ready.append((before, after, plan, effects))
        c = t.courses.c
        ids = [after.id for _, after, _, _ in ready]
        versions: dict[str, int] = {}
        for chunk in chunks(sorted(ids), 500):  # locked in id order (FOR UPDATE on PostgreSQL)
            query = select(c.id, c.version).where(c.id.in_(chunk)).with_for_update()
            versions.update({i: v for i, v in conn.execute(query)})
        for before, after, _, _ in ready:
            if versions.get(after.id) != before.version:
                raise ConflictError(after.id, before.version, versions.get(after.id))
        conn.execute(
            update(t.courses).where(c.id == bindparam("_id"), c.version == bindparam("_expected")),
            [
                {**course_values(after), "_id": after.id, "_expected": before.version, "updated_at": now,
                 "version": before.version + 1, "plan": plan_lists(plan.sessions),
                 "rules_fingerprint": plan.fingerprint}
                for before, after, plan, _ in ready
            ],
        )  # fmt: skip
        entries = [
            history_values(after.id, len(before.history) + i, h)
            for before, after, _, effects in ready
            for i, h in enumerate(effects.history)
        ]
        if entries:
            conn.execute(insert(t.history), entries)
        measures = []
        for before, after, _, _ in ready:
            base = len(before.measurements)
            new = added_measures(before.measurements, after.measurements)
            measures += [measure_values(after.id, base + i, m) for i, m in enumerate(new)]
        if measures:
            conn.execute(insert(t.measurements), measures)
        for _, after, plan, _ in ready:
            if any(h.event == "change_therapist" for h in after.history):
                _save_therapists(conn, after.id, plan_therapists(after.therapist, plan.sessions))
        for chunk in chunks(ids, 500):
            conn.execute(delete(t.sessions).where(t.sessions.c.course_id.in_(chunk)))
        recorded = [
            session_values(after.id, s)
            for _, after, plan, _ in ready
            for s in plan.sessions
            if s.status is not SessionStatus.planned
        ]
        if recorded:
            conn.execute(insert(t.sessions), recorded)
        r = t.reminders.c
        pending = r.status == "pending"
        if conn.dialect.name == "sqlite":  # a hint so the primary key is used, not the (status, due) index
            pending = func.likely(pending)
        one = (r.course_id == bindparam("_course"), r.id == bindparam("_id"))
        cancelled = [{"_course": after.id, "_id": i} for _, after, _, effects in ready for i in effects.cancelled]
        if cancelled:
            conn.execute(
                update(t.reminders).where(*one, pending).values(status="cancelled", lease_until=None), cancelled
            )
        rescheduled = [
            {"_course": after.id, "_id": x.id, "_due": x.due}
            for _, after, _, effects in ready
            for x in effects.rescheduled
        ]
        if rescheduled:  # kept under its id, due at another instant by the rules in force
            conn.execute(
                update(t.reminders)
                .where(*one, pending)
                # A claim in flight loses its token (the daemon then does not send it at the old
                # instant); it is claimed again at the new one.
                .values(
                    due=bindparam("_due"),
                    lease_until=None,
                    attempts=r.attempts + case((r.lease_until.is_(None), 0), else_=1),
                ),
                rescheduled,
            )
        added = [(after.id, x) for _, after, _, effects in ready for x in effects.added]
        if added:
            known: set[tuple[str, str]] = set()
            for part in chunks(added, 500):
                known |= _stored_keys(conn, [(cid, x.id) for cid, x in part])
            fresh = [reminder_values(x) for cid, x in added if (cid, x.id) not in known]
            if fresh:
                conn.execute(insert(t.reminders), fresh)
            again = [{"_course": cid, "_id": x.id, "_due": x.due} for cid, x in added if (cid, x.id) in known]
            if again:  # planned again after a cancellation: pending once more
                conn.execute(
                    update(t.reminders)
                    .where(*one, r.status == "cancelled")
                    .values(status="pending", due=bindparam("_due"), last_error=None),
                    again,
                )
        return [
            after.model_copy(update={"version": before.version + 1, "rules_fingerprint": plan.fingerprint})
            for before, after, plan, _ in ready
        ]


#: What ``_save_many`` takes per course: before, after, plan, effects, booking check.
Saving = tuple[Course, Course, Plan, Effects, "BookingCheck | None"]


def _keys_in(keys: Sequence[tuple[str, str]]) -> Any:
    """A condition on ``ipt_reminders`` that its primary key answers, matching the ``(course_id,
    id)`` of ``keys`` among others: every reminder of their courses (SQLite scans the whole table
    for ``(course_id, id) IN (...)``, and probes every pair for ``course_id IN (...) AND id IN
    (...)``). Callers keep only the keys they asked for."""
    return t.reminders.c.course_id.in_(sorted({k[0] for k in keys}))


def _stored_keys(conn: Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which ``(course_id, id)`` of ``keys`` are in ``ipt_reminders``."""
    r = t.reminders.c
    wanted = set(keys)
    return {(c, i) for c, i in conn.execute(select(r.course_id, r.id).where(_keys_in(keys))) if (c, i) in wanted}


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
            self._save_many(conn, [(before, after, plan, effects, None) for before, after, plan, effects in items], now)
            self._notify(conn)
