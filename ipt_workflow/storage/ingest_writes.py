"""Several courses changed in one transaction, with the FHIR resource versions that changed
them (``ipt ingest fhir``: a Bundle is applied all or nothing, each version once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from ..core.model import Course, Effects, Plan
from . import schema as t
from .base import chunks
from .bookings import BookingCheck
from .courses import CourseStore


@dataclass(frozen=True)
class CourseChange:
    """One course as read (``before``) and as it becomes, with what to store."""

    before: Course
    after: Course
    plan: Plan
    effects: Effects
    booking: BookingCheck | None


@dataclass(frozen=True)
class Ingested:
    resource_type: str
    resource_id: str
    version_id: str
    course_id: str
    event: str


class IngestWrites(CourseStore):
    def ingested(self, keys: Sequence[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        """Which ``(resource type, id, version)`` were already applied: per type, by resource ids
        500 at a time (the primary key answers that; SQLite scans the whole table for a
        ``(type, id, version) IN (...)``)."""
        wanted = set(keys)
        by_type: dict[str, list[str]] = {}
        for kind, rid, _ in wanted:
            by_type.setdefault(kind, []).append(rid)
        found: set[tuple[str, str, str]] = set()
        c = t.ingested.c
        with self._read() as conn:
            for kind, ids in sorted(by_type.items()):
                for chunk in chunks(sorted(set(ids)), 500):
                    query = select(c.resource_id, c.version_id).where(c.resource_type == kind, c.resource_id.in_(chunk))
                    found.update(k for rid, v in conn.execute(query) if (k := (kind, rid, v)) in wanted)
        return found

    def save_ingest(self, changes: Sequence[CourseChange], applied: Sequence[Ingested], now: datetime) -> list[Course]:
        """Store every course change and record every resource version, all or nothing: a
        ConflictError (another writer saved one of the courses first) or a version recorded
        meanwhile (another ingest of the same Bundle) writes nothing."""
        with self._write() as conn:
            out = self._save_many(conn, [(c.before, c.after, c.plan, c.effects, c.booking) for c in changes], now)
            if applied:
                conn.execute(
                    insert(t.ingested),
                    [{"resource_type": a.resource_type, "resource_id": a.resource_id, "version_id": a.version_id,
                      "course_id": a.course_id, "event": a.event, "ingested_at": now} for a in applied],
                )  # fmt: skip
            if changes:
                self._notify(conn)
        return out
