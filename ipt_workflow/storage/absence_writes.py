"""Adding or removing a therapist's absence, with the replanned courses it concerns, in one
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, or_, select

from ..core.clashes import BOOKING_STATES
from ..core.errors import ConflictError, UnknownName, shown
from ..core.model import Absence, Course, Effects, Group, Plan, Session
from . import schema as t
from .bookings import BookingCheck
from .groups import GroupStore


@dataclass(frozen=True)
class Replanned:
    """One course an absence change replans: as read, as it becomes, and what to store."""

    before: Course
    after: Course
    plan: Plan
    effects: Effects
    booking: BookingCheck | None


@dataclass(frozen=True)
class GroupReplanned:
    """A group whose sessions an absence change moves: as read, as it becomes, its sessions."""

    before: Group
    after: Group
    sessions: list[Session]
    individual_first: int
    booking: BookingCheck | None


class AbsenceWrites(GroupStore):
    def absence_course_ids(self, therapist: str) -> list[str]:
        """The active and paused courses that ``therapist`` has, or still holds sessions of
        after a handover (``ipt_course_therapists``), by id."""
        c, h = t.courses.c, t.history.c
        states = sorted(s.value for s in BOOKING_STATES)
        handed = select(h.course_id).where(h.event == "change_therapist")
        query = select(c.id).where(c.state.in_(states), or_(c.therapist == therapist, c.id.in_(handed))).order_by(c.id)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def write_absence(
        self,
        absence: Absence,
        add: bool,
        courses: Sequence[str],
        replanned: Sequence[Replanned],
        now: datetime,
        groups: Sequence[GroupReplanned] = (),
    ) -> list[Course]:
        """Store (``add``) or delete ``absence`` with the courses and ``groups`` it replans, all
        or nothing (a group changed since it was read: ConflictError).
        ``courses`` are the ids ``absence_course_ids`` gave: when another writer has added or
        finished one of the therapist's courses since, ConflictError (nothing written)."""
        out: list[Course] = []
        with self._write() as conn:
            self._lock_bookings(conn, [absence.therapist])
            c, held = t.courses.c, t.course_therapists.c
            states = sorted(s.value for s in BOOKING_STATES)
            handed = select(held.course_id).where(held.therapist == absence.therapist)
            found = conn.execute(
                select(c.id, c.version).where(
                    c.state.in_(states), or_(c.therapist == absence.therapist, c.id.in_(handed))
                )
            ).all()
            if sorted(i for i, _ in found) != sorted(courses):
                raise ConflictError(absence.therapist, 0, None)
            if add:
                conn.execute(
                    insert(t.absences).values(
                        id=absence.id,
                        therapist=absence.therapist,
                        start_date=absence.start,
                        until_date=absence.until,
                        reason=absence.reason,
                        created_at=now,
                    )
                )
            else:
                gone = conn.execute(delete(t.absences).where(t.absences.c.id == absence.id))
                if gone.rowcount != 1:
                    raise UnknownName(f"unknown absence {shown(absence.id)}")
            for g in groups:  # the group's own schedule; its members are among ``replanned``
                if g.booking is not None:
                    self._group_clashes(conn, g.after.id, g.booking)
                self._update_group(conn, g.before, g.after, g.sessions, g.individual_first, now)
            for r in replanned:
                out.append(self._save(conn, r.before, r.after, r.plan, r.effects, now, r.booking))
            self._notify(conn)
        return out
