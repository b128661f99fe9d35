"""Read-only views of stored courses and reminders as the JSON shapes of SPEC §7, built
straight from rows: no models, no rules, no planner, so `ipt course show` and
`ipt reminders` start quickly. ``SqlStore`` shares the reminder query."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, select

from ..errors import UnknownName
from ..wallclock import iso_utc
from . import schema as t

REMINDER_STATUSES = ("pending", "delivered", "skipped", "cancelled", "failed")


def reminders_query(
    course: str | None = None,
    start: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> Select[Any]:
    """Reminders in due order, filtered by course, ``start <= due < until`` and status."""
    r = t.reminders.c
    query = select(t.reminders).order_by(r.due, r.id)
    if course:
        query = query.where(r.course_id == course)
    if start:
        query = query.where(r.due >= start)
    if until:
        query = query.where(r.due < until)
    # Always name the status, so the (status, due) index serves the due window too.
    query = query.where(r.status.in_([status] if status else list(REMINDER_STATUSES)))
    if limit:
        query = query.limit(limit)
    return query


def reminder_documents(engine: Engine, **filters: Any) -> list[dict[str, Any]]:
    """``{id, course, kind, audience, due, session, status, rule}`` for each matching reminder."""
    with engine.connect() as conn:
        return [
            {
                "id": row["id"],
                "course": row["course_id"],
                "kind": row["kind"],
                "audience": row["audience"],
                "due": iso_utc(row["due"]),
                "session": row["session"],
                "status": row["status"],
                "rule": row["rule"],
            }
            for row in conn.execute(reminders_query(**filters)).mappings()
        ]


def course_document(engine: Engine, course_id: str) -> dict[str, Any] | None:
    """The course shape of SPEC §7 from the stored rows; raises UnknownName for an unknown id,
    and returns None for a course stored before its plan was (then ask the planner)."""
    with engine.connect() as conn:
        row = conn.execute(select(t.courses).where(t.courses.c.id == course_id)).mappings().first()
        if row is None:
            raise UnknownName(f"unknown course '{course_id}'")
        if row["plan"] is None:
            return None
        measures = conn.execute(
            select(t.measurements).where(t.measurements.c.course_id == course_id).order_by(t.measurements.c.seq)
        ).mappings()
        history = conn.execute(
            select(t.history).where(t.history.c.course_id == course_id).order_by(t.history.c.seq)
        ).mappings()
        return {
            "id": row["id"],
            "client": row["client"],
            "therapist": row["therapist"],
            "protocol": row["protocol"],
            "protocol_version": row["protocol_version"],
            "timezone": row["timezone"],
            "state": row["state"],
            "focus": list(row["focus"]),
            "current_focus": row["current_focus"],
            "planned_sessions": row["planned_sessions"],
            "version": row["version"],
            "sessions": [dict(zip(t.PLAN_FIELDS, s, strict=True)) for s in row["plan"]],
            "measurements": [
                {"instrument": m["instrument"], "score": m["score"], "item9": m["item9"], "at": iso_utc(m["at"]),
                 "session": m["session"]}
                for m in measures
            ],
            "history": [
                {"event": h["event"], "at": iso_utc(h["at"]), "from": h["from_state"], "to": h["to_state"],
                 "rule": h["rule"], "data": dict(h["data"])}
                for h in history
            ],
        }
