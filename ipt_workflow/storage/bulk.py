"""Many new courses at once: rows built as plain tuples (in worker processes for a big
import) and written in batches inside one transaction (executemany on SQLite, COPY on
PostgreSQL), all or nothing."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, OperationalError

from ..core.model import Course, Plan
from . import schema as t
from .bookings import Bookings, BulkBooking
from .new_rows import Rows, build_rows


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
