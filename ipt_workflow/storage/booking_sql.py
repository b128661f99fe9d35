"""Bookings in plain SQL (``direct``): which sessions hold each therapist, read off the stored
plans, the lock that makes "check for a clash, then book" one step, and the check itself; one
implementation for ``SqlStore`` and the SQLAlchemy-free write path.

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

from ..core.clashes import BOOKING_STATES, Booking, clashes, describe, stored_bookings, stored_group_bookings
from ..core.errors import ScheduleClash
from .direct import Direct, chunks, marks

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


def lock_bookings(db: Direct, therapists: Collection[str] | None) -> None:
    """Take the booking lock of ``therapists`` (of all when None) until this transaction
    ends; in a sorted order, so two writers never wait for each other in a circle."""
    if db.dialect != "postgresql":
        return  # BEGIN IMMEDIATE already serialises writers
    if therapists is None:
        db.rows("SELECT pg_advisory_xact_lock(?, 0)", (_ALL,))
        return
    db.rows("SELECT pg_advisory_xact_lock_shared(?, 0)", (_ALL,))
    for therapist in sorted(set(therapists)):
        db.rows("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_THERAPIST, therapist))


def booked(db: Direct, therapists: Collection[str], buffer: timedelta, exclude: str | None = None) -> list[Booking]:
    """The bookings of ``therapists``: each session under its own therapist, so a course
    handed over holds the previous therapist for its sessions before the handover. Its
    courses are found by ``ipt_courses.therapist`` and by ``ipt_course_therapists`` (the
    therapists a course was handed over from), both through an index."""
    states = sorted(s.value for s in BOOKING_STATES)
    wanted = set(therapists)
    seen: set[str] = set()
    out: list[Booking] = []
    other = "" if exclude is None else " AND c.id != ?"
    tail = () if exclude is None else (exclude,)
    for chunk in chunks(sorted(wanted), 500):
        who, states_in = marks(len(chunk)), marks(len(states))
        own = (
            f"SELECT c.id, c.therapist, c.timezone, c.plan, c.group_id FROM ipt_courses c "
            f"WHERE c.therapist IN ({who}) AND c.state IN ({states_in}){other}"
        )
        handed = (
            f"SELECT c.id, c.therapist, c.timezone, c.plan, c.group_id FROM ipt_courses c "
            f"JOIN ipt_course_therapists h ON h.course_id = c.id "
            f"WHERE h.therapist IN ({who}) AND c.state IN ({states_in}){other}"
        )
        for sql in (own, handed):
            for cid, therapist, tz, plan, group in db.rows(sql, (*chunk, *states, *tail)):
                if cid in seen:
                    continue
                seen.add(cid)
                found = stored_bookings(cid, therapist, tz, db.read_json(plan), buffer, member=group is not None)
                out += [b for b in found if b.therapist in wanted]
        sql = (
            f"SELECT id, therapist, cotherapist, timezone, plan FROM ipt_groups "
            f"WHERE (therapist IN ({who}) OR cotherapist IN ({who})) AND state = 'active'"
            + ("" if exclude is None else " AND id != ?")
        )
        for gid, therapist, cotherapist, tz, plan in db.rows(sql, (*chunk, *chunk, *tail)):
            found = stored_group_bookings(gid, therapist, cotherapist, tz, db.read_json(plan), buffer)
            out += [b for b in found if b.therapist in wanted]
    return out


def check_bookings(db: Direct, check: BookingCheck, course_id: str) -> list[tuple[Booking, Booking]]:
    """Lock the therapists ``check`` books and find its clashes with the stored bookings of
    other courses; raises ScheduleClash naming the first when ``check.refuse``."""
    therapists = {b.therapist for b in check.new}
    if not therapists:
        return []
    lock_bookings(db, therapists)
    found = clashes(check.new, booked(db, therapists, check.buffer, exclude=course_id))
    if found and check.refuse:
        raise ScheduleClash(describe(found[0][1]))
    return found
