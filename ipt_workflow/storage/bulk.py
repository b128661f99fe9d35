"""Many new courses at once: rows built as plain tuples (in worker processes for a big
import) and written in batches inside one transaction (executemany on SQLite, COPY on
PostgreSQL), all or nothing."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, OperationalError

from ..core.model import Course, Plan, Session, SessionStatus
from . import schema as t
from .bookings import Bookings, BulkBooking
from .rows import course_values, json_list, plan_lists
from .schema import to_text


class BulkWrites(Bookings):
    """Adding new courses (one, or a hundred thousand) in one transaction."""

    def add_many(self, items: Iterable[tuple[Course, Plan]], now: datetime, batch: int = 2000) -> int:
        """Store many new courses in one transaction (all or nothing); returns how many."""
        sqlite = self.dialect == "sqlite"

        def batches() -> Iterator[Rows]:
            pending: list[tuple[Course, Plan]] = []
            for item in items:
                pending.append(item)
                if len(pending) >= batch:
                    yield build_rows(pending, now, sqlite)
                    pending = []
            if pending:
                yield build_rows(pending, now, sqlite)

        return self.write_batches(batches())

    def write_batches(
        self,
        batches: Iterable[Rows],
        booking: BulkBooking | None = None,
        before: Callable[[Connection], None] | None = None,
    ) -> int:
        """Write batches of new-course rows (from ``build_rows``) in one transaction; returns
        how many courses. An exception from ``batches`` rolls every batch back; so does a
        course id another writer took meanwhile (``CourseExists``). With ``booking``, the
        therapists' bookings are locked and handed to ``booking.seed`` before anything is
        written; ``before`` runs then too, on the transaction's connection."""
        done = 0
        gc.disable()  # hundreds of thousands of short-lived objects: the cyclic collector only slows this
        try:
            with self._bulk_journal(), self._write(adding=True) as conn:
                if booking is not None:
                    self._lock_bookings(conn, None)
                    booking.seed(self._booked(conn, booking.therapists, booking.buffer))
                if before is not None:
                    before(conn)
                # Into an empty table, building the due index once at the end (a sort) beats
                # keeping it up to date row by row; it is part of the same transaction.
                rebuild = conn.execute(select(t.reminders.c.id).limit(1)).first() is None
                due_index = next(i for i in t.reminders.indexes if i.name == "ix_ipt_reminders_due")
                if rebuild:
                    due_index.drop(conn)
                for rows in batches:
                    self._insert_rows(conn, t.courses, rows.courses)
                    self._insert_rows(conn, t.history, rows.history)
                    self._insert_rows(conn, t.sessions, rows.sessions)
                    self._insert_rows(conn, t.reminders, rows.reminders, columns=9)
                    done += len(rows.courses)
                if rebuild:
                    due_index.create(conn)
                self._notify(conn)
        finally:
            gc.enable()
        return done

    @contextmanager
    def _bulk_journal(self) -> Iterator[None]:
        """A big SQLite import writes pages once, through a rollback journal, instead of twice
        (WAL, then checkpoint). Only when no one else has the file open; WAL again after."""
        if self.dialect != "sqlite":
            yield
            return
        switched = False
        try:
            with self.engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode=DELETE").scalar()
                switched = mode == "delete"
                # Room to sort the due index in memory when it is built at the end.
                conn.exec_driver_sql("PRAGMA cache_size=-524288")
                conn.exec_driver_sql("PRAGMA temp_store=MEMORY")
        except OperationalError:
            switched = False
        try:
            yield
        finally:
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA cache_size=-65536")
                    conn.exec_driver_sql("PRAGMA temp_store=DEFAULT")
                if switched:
                    with self.engine.connect() as conn:
                        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            except DBAPIError:
                pass  # the import's own outcome is what counts; every new connection asks for WAL


@dataclass
class Rows:
    """Plain rows of new courses, ready for executemany (SQLite) or COPY (PostgreSQL);
    plain tuples, so worker processes can build them and send them over cheaply."""

    courses: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    reminders: list[tuple[Any, ...]] = field(default_factory=list)


NewReminder = tuple[str, str, str, datetime, "int | None", "str | None"]  # id, kind, audience, due, session, rule


def build_rows(items: Iterable[tuple[Course, Plan]], now: datetime, sqlite: bool) -> Rows:
    """The rows that store new courses (at version 1) with their plans and reminders."""
    items = list(items)
    fingerprints = {course.id: plan.fingerprint for course, plan in items}
    return build_new_rows(
        (
            (course, plan.sessions, [(r.id, r.kind, r.audience, r.due, r.session, r.rule) for r in plan.reminders])
            for course, plan in items
        ),
        now,
        sqlite,
        fingerprints.get,
    )


def build_new_rows(
    items: Iterable[tuple[Course, Sequence[Session], Sequence[NewReminder]]],
    now: datetime,
    sqlite: bool,
    fingerprint: Callable[[str], str | None] | None = None,
) -> Rows:
    """Rows for new courses given their sessions (planned ones are not stored) and their
    reminders as plain tuples: the bulk import's path, with no model built per reminder.
    ``fingerprint(course id)`` is the fingerprint of the rules that planned it."""

    def when(d: datetime | None) -> Any:
        return d if not sqlite or d is None else to_text(d)

    js = json.dumps
    out = Rows()
    for course, course_sessions, course_reminders in items:
        v = course_values(course)
        out.courses.append(
            (course.id, v["client"], v["therapist"], v["protocol"], v["protocol_version"], v["timezone"],
             course.start.isoformat() if sqlite else course.start, v["slot"], v["state"], v["planned_sessions"],
             json_list(v["focus"]), v["current_focus"], json_list(v["foci_worked"]),
             js(v["pauses"]) if v["pauses"] else "[]", json_list(v["fired_rules"]),
             when(v["completed_at"]), when(v["created_at"]), when(now), 1, v["schema_version"],
             js(plan_lists(course_sessions)), course.group, fingerprint(course.id) if fingerprint else None)
        )  # fmt: skip
        for i, h in enumerate(course.history):
            out.history.append(
                (course.id, i, h.event, when(h.at), h.from_.value if h.from_ else None, h.to.value, h.rule,
                 js(h.data) if h.data else "{}")
            )  # fmt: skip
        for s in course_sessions:
            if s.status is SessionStatus.planned:
                continue
            out.sessions.append(
                (course.id, s.number, s.phase, when(s.start), s.start.isoformat(), s.status.value, s.step,
                 s.duration_minutes, s.format, json_list(s.participants), json_list(s.optional_participants))
            )  # fmt: skip
        cid = course.id
        for rid, kind, audience, due, session, rule in course_reminders:
            out.reminders.append((cid, rid, kind, audience, when(due), session, "pending", rule, 0))
    return out
