"""The store of ``ipt course create`` and ``ipt course event`` on an SQLite file at the current
schema, on the standard library's sqlite3 alone: the course store's hot path (``course_sql``,
the very statements ``SqlStore`` runs) in transactions of its own, opened as ``engine.py``
opens a file (private to its owner, WAL, the lock wait, ``BEGIN IMMEDIATE`` for writes) and
failing with the same one-line errors. What it does not cover (a group member's event, say) goes
to a ``SqlStore`` on the same file, opened on first use; a new file, another schema revision or
another database is ``SqlStore``'s alone (``open_lite`` says None)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.clashes import conflict_alert
from ..core.errors import CourseExists, UnknownName, shown
from ..core.model import Absence, Course, Effects, Plan, Reminder
from . import HEAD_REVISION, lock_timeout, sqlite_pragmas
from .booking_sql import BookingCheck, check_bookings
from .course_sql import absences, existing_ids, insert_new, load_chunk, save_batch, with_alerts
from .direct import Direct
from .failures import database_failure
from .files import make_private, sqlite_path
from .new_rows import build_rows

if TYPE_CHECKING:
    from .sql import SqlStore


def open_lite(url: str, fallback: Callable[[], SqlStore]) -> LiteStore | None:
    """A ``LiteStore`` on the SQLite file ``url`` names (a path or an ``sqlite:///`` URL
    without options) when it exists and holds the schema at ``HEAD_REVISION``; else None (the
    caller opens a ``SqlStore``, which creates or upgrades it). ``fallback`` opens the
    ``SqlStore`` that anything else goes to."""
    if "?" in url:
        return None
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return None
    where, wait = f"sqlite:///{path}", lock_timeout()
    make_private(path)
    try:
        conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    except sqlite3.Error as exc:
        raise database_failure(exc, where, wait) from None
    try:
        for pragma in sqlite_pragmas(wait):
            conn.execute(f"PRAGMA {pragma}")
        try:
            found = conn.execute("SELECT version_num FROM ipt_alembic_version").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            found = []
    except sqlite3.Error as exc:
        conn.close()
        raise database_failure(exc, where, wait) from None
    if [r[0] for r in found] != [HEAD_REVISION]:
        conn.close()
        return None
    return LiteStore(conn, path, where, wait, fallback)


class LiteStore:
    """``SqlStore``'s course methods on one sqlite3 connection (see the module's note); any
    other attribute is the ``SqlStore``'s, opened on first use."""

    dialect = "sqlite"

    def __init__(
        self, conn: sqlite3.Connection, path: Path, where: str, wait: float, fallback: Callable[[], SqlStore]
    ) -> None:
        self.conn = conn
        self.path = path
        self.where = where
        self.wait = wait
        self._fallback = fallback
        self._full: SqlStore | None = None
        self._db = Direct(conn, "sqlite")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._full is None:
            self._full = self._fallback()
            self._full.ensure_schema()
        return getattr(self._full, name)

    def ensure_schema(self) -> None:
        """Checked when opened."""

    def close(self) -> None:
        self.conn.close()
        if self._full is not None:
            self._full.close()

    @contextmanager
    def _transaction(self, write: bool = False, adding: bool = False) -> Iterator[Direct]:
        """One transaction (``BEGIN IMMEDIATE`` to write); a failure of the database is the
        one-line StoreError ``SqlStore`` gives, a key taken when ``adding`` is CourseExists."""
        try:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.rollback()
                raise
            self.conn.commit()
        except sqlite3.IntegrityError as exc:
            if adding:
                raise CourseExists("a course id is already taken") from None
            raise database_failure(exc, self.where, self.wait) from None
        except sqlite3.Error as exc:
            raise database_failure(exc, self.where, self.wait) from None

    def load(self, course_id: str) -> Course:
        """The stored course; raises UnknownName when there is none."""
        with self._transaction() as db:
            found = load_chunk(db, [course_id]).get(course_id)
        if found is None:
            raise UnknownName(f"unknown course {shown(course_id)}")
        return found

    def absences(self, therapists: Collection[str] | None = None) -> list[Absence]:
        """The absences of ``therapists`` (of all when None), by start date."""
        with self._transaction() as db:
            found = absences(db, therapists)
        return found if therapists is not None else sorted(found, key=lambda x: (x.start, x.therapist, x.id))

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        with self._transaction() as db:
            return existing_ids(db, ids)

    def reminders(
        self,
        course: str | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Reminder]:
        """As ``SqlStore.reminders``: the query of ``reads.reminder_documents``, as models."""
        from .reads import reminder_documents

        documents = reminder_documents(self.where, course, start, until, status, limit)
        return [Reminder.model_validate(d) for d in documents]

    def add(self, course: Course, plan: Plan, now: datetime, booking: BookingCheck | None = None) -> Course:
        """As ``SqlStore.add``."""
        try:
            with self._transaction(write=True, adding=True) as db:
                if booking is not None:
                    found = check_bookings(db, booking, course.id)
                    if found:
                        alerts = [conflict_alert(course, a, b, booking.at) for a, b in found]
                        course, plan = with_alerts(course, plan, alerts)
                insert_new(db, build_rows([(course, plan)], now, True))
        except CourseExists:
            raise CourseExists(f"course_id: course {shown(course.id)} already exists") from None
        return course.model_copy(update={"version": 1, "rules_fingerprint": plan.fingerprint})

    def save(
        self,
        before: Course,
        after: Course,
        plan: Plan,
        effects: Effects,
        now: datetime,
        booking: BookingCheck | None = None,
    ) -> Course:
        """As ``SqlStore.save``."""
        with self._transaction(write=True) as db:
            return save_batch(db, [(before, after, plan, effects, booking)], now)[0]
