"""Therapists' absences as stored: read with each course (the planner moves its sessions out
of them) and listed by therapist."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

from sqlalchemy import Connection, select

from ..core.model import Absence, Course
from . import schema as t
from .base import StoreBase, chunks


def handover_therapists(course: Course) -> set[str]:
    """The therapists a course was handed from and to (``change_therapist``)."""
    out: set[str] = set()
    for entry in course.history:
        if entry.event == "change_therapist":
            out.update(str(entry.data[k]) for k in ("previous", "therapist") if k in entry.data)
    return out


def absence_from_row(row: Any) -> Absence:
    return Absence.model_validate(
        {
            "id": row["id"],
            "therapist": row["therapist"],
            "from": row["start_date"],
            "until": row["until_date"],
            "reason": row["reason"],
            "created_at": row["created_at"],
        }
    )


class AbsenceReads(StoreBase):
    """The stored absences."""

    def _absences(self, conn: Connection, therapists: Collection[str], since: date | None = None) -> list[Absence]:
        a = t.absences.c
        out: list[Absence] = []
        for chunk in chunks(sorted(set(therapists)), 500):
            query = select(t.absences).where(a.therapist.in_(chunk))
            if since is not None:
                query = query.where(a.until_date >= since)
            out += [absence_from_row(r) for r in conn.execute(query).mappings()]
        return sorted(out, key=lambda x: (x.start, x.until, x.id))

    def absences(self, therapists: Collection[str] | None = None) -> list[Absence]:
        """The absences of ``therapists`` (of all when None), by start date."""
        with self._read() as conn:
            if therapists is not None:
                return self._absences(conn, therapists)
            rows = conn.execute(select(t.absences)).mappings()
            return sorted((absence_from_row(r) for r in rows), key=lambda x: (x.start, x.therapist, x.id))

    def absence(self, absence_id: str) -> Absence | None:
        with self._read() as conn:
            row = conn.execute(select(t.absences).where(t.absences.c.id == absence_id)).mappings().first()
            return None if row is None else absence_from_row(row)
