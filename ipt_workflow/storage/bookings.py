"""Bookings: which sessions hold each therapist, read off the stored plans, and the lock that
makes "check for a clash, then book" one step.

The check runs inside the write transaction that books: on SQLite ``BEGIN IMMEDIATE`` already
lets one writer in at a time; on PostgreSQL the transaction takes an advisory lock per
therapist (``pg_advisory_xact_lock``, released at commit or rollback; a bulk import takes one
lock over every therapist instead), so two bookings of one therapist queue and the second
sees the first's plan.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, select, text

from ..core.clashes import BOOKING_STATES, Booking, clashes, describe, stored_bookings, stored_group_bookings
from ..core.errors import ScheduleClash
from . import schema as t
from .base import StoreBase, chunks

# Advisory lock keys (two int4 keys): every booking takes (ALL, 0) shared and (THERAPIST,
# hashtext(therapist)) exclusive; a bulk import takes (ALL, 0) exclusive.
_ALL = 0x69707400  # 'ipt\0'
_THERAPIST = 0x69707401


@dataclass(frozen=True)
class BookingCheck:
    """What a write books (``new``: its sessions not booked before) and what to do on a clash:
    refuse (``ScheduleClash``, nothing written) or book anyway, raising alerts due ``at``."""

    new: Sequence[Booking]
    buffer: timedelta
    refuse: bool
    at: datetime


@dataclass(frozen=True)
class BulkBooking:
    """A bulk import's check: ``seed`` gets the stored bookings of ``therapists`` inside the
    import's transaction, after the lock and before the first row is written."""

    therapists: Collection[str]
    buffer: timedelta
    seed: Callable[[list[Booking]], None]


class Bookings(StoreBase):
    """The stored bookings of therapists, read under their booking lock."""

    def booked(self, therapists: Collection[str], buffer: timedelta) -> list[Booking]:
        """The bookings of the active and paused courses of ``therapists``, as stored (read only)."""
        with self._read() as conn:
            return self._booked(conn, therapists, buffer)

    def _lock_bookings(self, conn: Connection, therapists: Collection[str] | None) -> None:
        """Take the booking lock of ``therapists`` (of all when None) until this transaction
        ends; in a sorted order, so two writers never wait for each other in a circle."""
        if self.dialect != "postgresql":
            return  # BEGIN IMMEDIATE already serialises writers
        if therapists is None:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k, 0)"), {"k": _ALL})
            return
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k, 0)"), {"k": _ALL})
        for therapist in sorted(set(therapists)):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(:t))"), {"k": _THERAPIST, "t": therapist})

    def _booked(
        self, conn: Connection, therapists: Collection[str], buffer: timedelta, exclude: str | None = None
    ) -> list[Booking]:
        """The bookings of ``therapists``: each session under its own therapist, so a course
        handed over holds the previous therapist for its sessions before the handover. Its
        courses are found by ``ipt_courses.therapist`` and by ``ipt_course_therapists`` (the
        therapists a course was handed over from), both through an index."""
        c, held = t.courses.c, t.course_therapists.c
        states = sorted(s.value for s in BOOKING_STATES)
        wanted = set(therapists)
        seen: set[str] = set()
        out: list[Booking] = []
        columns = (c.id, c.therapist, c.timezone, c.plan, c.group_id)
        for chunk in chunks(sorted(wanted), 500):
            own = select(*columns).where(c.therapist.in_(chunk), c.state.in_(states))
            handed = (
                select(*columns)
                .join(t.course_therapists, held.course_id == c.id)
                .where(held.therapist.in_(chunk), c.state.in_(states))
            )
            for query in (own, handed):
                if exclude is not None:
                    query = query.where(c.id != exclude)
                for cid, therapist, tz, plan, group in conn.execute(query):
                    if cid in seen:
                        continue
                    seen.add(cid)
                    booked = stored_bookings(cid, therapist, tz, plan, buffer, member=group is not None)
                    out += [b for b in booked if b.therapist in wanted]
            g = t.groups.c
            query = select(g.id, g.therapist, g.cotherapist, g.timezone, g.plan).where(
                or_(g.therapist.in_(chunk), g.cotherapist.in_(chunk)), g.state == "active"
            )
            if exclude is not None:
                query = query.where(g.id != exclude)
            for gid, therapist, cotherapist, tz, plan in conn.execute(query):
                booked = stored_group_bookings(gid, therapist, cotherapist, tz, plan, buffer)
                out += [b for b in booked if b.therapist in wanted]
        return out

    def _check_bookings(self, conn: Connection, check: BookingCheck, course_id: str) -> list[tuple[Booking, Booking]]:
        """Lock the therapists ``check`` books and find its clashes with the stored bookings of
        other courses; raises ScheduleClash naming the first when ``check.refuse``."""
        therapists = {b.therapist for b in check.new}
        if not therapists:
            return []
        self._lock_bookings(conn, therapists)
        found = clashes(check.new, self._booked(conn, therapists, check.buffer, exclude=course_id))
        if found and check.refuse:
            raise ScheduleClash(describe(found[0][1]))
        return found
