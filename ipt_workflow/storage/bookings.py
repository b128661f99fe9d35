"""Bookings: which sessions hold each therapist, read off the stored plans, and the lock that
makes "check for a clash, then book" one step.

The check runs inside the write transaction that books: on SQLite ``BEGIN IMMEDIATE`` already
lets one writer in at a time; on PostgreSQL the transaction takes an advisory lock per
therapist (``pg_advisory_xact_lock``, released at commit or rollback; a bulk import takes one
lock over every therapist instead), so two bookings of one therapist queue and the second
sees the first's plan.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import Connection

from ..core.clashes import Booking
from .base import StoreBase
from .booking_sql import BookingCheck, BulkBooking, booked, check_bookings, lock_bookings
from .direct import Direct

__all__ = ["BookingCheck", "Bookings", "BulkBooking"]


class Bookings(StoreBase):
    """The stored bookings of therapists, read under their booking lock."""

    def booked(self, therapists: Collection[str], buffer: timedelta) -> list[Booking]:
        """The bookings of the active and paused courses of ``therapists``, as stored (read only)."""
        with self._read() as conn:
            return self._booked(conn, therapists, buffer)

    def _lock_bookings(self, conn: Connection, therapists: Collection[str] | None) -> None:
        """``booking_sql.lock_bookings`` in the transaction ``conn``."""
        lock_bookings(Direct.of(conn), therapists)

    def _booked(
        self, conn: Connection, therapists: Collection[str], buffer: timedelta, exclude: str | None = None
    ) -> list[Booking]:
        """``booking_sql.booked`` in the transaction ``conn``."""
        return booked(Direct.of(conn), therapists, buffer, exclude)

    def _check_bookings(self, conn: Connection, check: BookingCheck, course_id: str) -> list[tuple[Booking, Booking]]:
        """``booking_sql.check_bookings`` in the transaction ``conn``."""
        return check_bookings(Direct.of(conn), check, course_id)
