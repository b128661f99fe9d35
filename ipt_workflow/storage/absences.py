"""Therapists' absences as stored: read with each course (the planner moves its sessions out
of them) and listed by therapist (the SQL is ``course_sql.absences``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from sqlalchemy import Connection, select

from ..core.model import Absence
from . import schema as t
from .base import StoreBase
from .course_sql import absence_from_row, absences, handover_therapists
from .direct import Direct

__all__ = ["AbsenceReads", "absence_from_row", "handover_therapists"]


class AbsenceReads(StoreBase):
    """The stored absences."""

    def _absences(self, conn: Connection, therapists: Collection[str], since: date | None = None) -> list[Absence]:
        return absences(Direct.of(conn), therapists, since)

    def absences(self, therapists: Collection[str] | None = None) -> list[Absence]:
        """The absences of ``therapists`` (of all when None), by start date."""
        with self._read() as conn:
            found = absences(Direct.of(conn), therapists)
        if therapists is not None:
            return found
        return sorted(found, key=lambda x: (x.start, x.therapist, x.id))

    def absence(self, absence_id: str) -> Absence | None:
        with self._read() as conn:
            row = conn.execute(select(t.absences).where(t.absences.c.id == absence_id)).mappings().first()
            return None if row is None else absence_from_row(row)
