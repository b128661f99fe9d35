"""The rows of new courses as plain tuples (built in worker processes for a big import), in
the columns' order: what ``bulk`` and the SQLAlchemy-free write path insert."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.model import Course, Plan, Session, SessionStatus
from .direct import to_text
from .rows import course_values, json_list, plan_lists


@dataclass
class Rows:
    """Plain rows of new courses, ready for executemany (SQLite) or COPY (PostgreSQL);
    plain tuples, so worker processes can build them and send them over cheaply."""

    courses: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    reminders: list[tuple[Any, ...]] = field(default_factory=list)


NewReminder = tuple[str, str, str, datetime, "int | None", "str | None"]  # id, kind, audience, due, session, rule


def build_rows(items: Iterable[tuple[Course, Plan]], now: datetime, sqlite: bool) -> Rows:
    """The rows that store new courses (at version 1) with their plans and reminders."""
    items = list(items)
    fingerprints = {course.id: plan.fingerprint for course, plan in items}
    return build_new_rows(
        (
            (course, plan.sessions, [(r.id, r.kind, r.audience, r.due, r.session, r.rule) for r in plan.reminders])
            for course, plan in items
        ),
        now,
        sqlite,
        fingerprints.get,
    )


def build_new_rows(
    items: Iterable[tuple[Course, Sequence[Session], Sequence[NewReminder]]],
    now: datetime,
    sqlite: bool,
    fingerprint: Callable[[str], str | None] | None = None,
) -> Rows:
    """Rows for new courses given their sessions (planned ones are not stored) and their
    reminders as plain tuples: the bulk import's path, with no model built per reminder.
    ``fingerprint(course id)`` is the fingerprint of the rules that planned it."""

    def when(d: datetime | None) -> Any:
        return d if not sqlite or d is None else to_text(d)

    js = json.dumps
    out = Rows()
    for course, course_sessions, course_reminders in items:
        v = course_values(course)
        out.courses.append(
            (course.id, v["client"], v["therapist"], v["protocol"], v["protocol_version"], v["timezone"],
             course.start.isoformat() if sqlite else course.start, v["slot"], v["state"], v["planned_sessions"],
             json_list(v["focus"]), v["current_focus"], json_list(v["foci_worked"]),
             js(v["pauses"]) if v["pauses"] else "[]", json_list(v["fired_rules"]),
             when(v["completed_at"]), when(v["created_at"]), when(now), 1, v["schema_version"],
             js(plan_lists(course_sessions)), course.group, fingerprint(course.id) if fingerprint else None)
        )  # fmt: skip
        for i, h in enumerate(course.history):
            out.history.append(
                (course.id, i, h.event, when(h.at), h.from_.value if h.from_ else None, h.to.value, h.rule,
                 js(h.data) if h.data else "{}")
            )  # fmt: skip
        for s in course_sessions:
            if s.status is SessionStatus.planned:
                continue
            out.sessions.append(
                (course.id, s.number, s.phase, when(s.start), s.start.isoformat(), s.status.value, s.step,
                 s.duration_minutes, s.format, json_list(s.participants), json_list(s.optional_participants))
            )  # fmt: skip
        cid = course.id
        for rid, kind, audience, due, session, rule in course_reminders:
            out.reminders.append((cid, rid, kind, audience, when(due), session, "pending", rule, 0))
    return out
