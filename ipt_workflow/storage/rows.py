"""Course rows and back: the values a course, its history, sessions, measurements and
reminders are stored as, and the models read back from rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..core.model import Course, GroupPlan, GroupSlot, HistoryEntry, Reminder, Session, SessionStatus


def plan_lists(sessions: Sequence[Session]) -> list[list[Any]]:
    """Sessions as stored in ``ipt_courses.plan``: one list a session, in PLAN_FIELDS order."""
    return [
        [s.number, s.phase, s.start.isoformat(), s.status.value, s.duration_minutes, s.format,
         list(s.participants), list(s.optional_participants), s.end.isoformat(), s.therapist,
         s.original_start.isoformat() if s.original_start else None]
        for s in sessions
    ]  # fmt: skip


_JSON_LISTS: dict[tuple[str, ...], str] = {}


def json_list(values: list[str]) -> str:
    key = tuple(values)
    text = _JSON_LISTS.get(key)
    if text is None:
        text = _JSON_LISTS[key] = json.dumps(values)
    return text


def course_values(c: Course) -> dict[str, Any]:
    return {
        "client": c.client,
        "therapist": c.therapist,
        "protocol": c.protocol,
        "protocol_version": c.protocol_version,
        "timezone": c.timezone,
        "start_date": c.start,
        "slot": c.slot.strftime("%H:%M"),
        "state": c.state.value,
        "planned_sessions": c.planned_sessions,
        "focus": list(c.focus),
        "current_focus": c.current_focus,
        "foci_worked": list(c.foci_worked),
        "pauses": [p.model_dump(mode="json") for p in c.pauses],
        "fired_rules": list(c.fired_rules),
        "completed_at": c.completed_at,
        "created_at": c.created_at,
        "schema_version": c.schema_version,
        "group_id": c.group,
    }


def history_values(course_id: str, seq: int, h: HistoryEntry) -> dict[str, Any]:
    return {
        "course_id": course_id,
        "seq": seq,
        "event": h.event,
        "at": h.at,
        "from_state": h.from_.value if h.from_ else None,
        "to_state": h.to.value,
        "rule": h.rule,
        "data": h.data,
    }


def session_values(course_id: str, s: Session) -> dict[str, Any]:
    return {
        "course_id": course_id,
        "number": s.number,
        "phase": s.phase,
        "start_utc": s.start,
        "start_local": s.start.isoformat(),
        "status": s.status.value,
        "step": s.step,
        "duration_minutes": s.duration_minutes,
        "format": s.format,
        "participants": list(s.participants),
        "optional_participants": list(s.optional_participants),
    }


def session_from_row(row: Any) -> Session:
    return Session(
        number=row["number"],
        phase=row["phase"],
        start=datetime.fromisoformat(row["start_local"]),
        status=SessionStatus(row["status"]),
        step=row["step"],
        duration_minutes=row["duration_minutes"],
        format=row["format"],
        participants=row["participants"],
        optional_participants=row["optional_participants"],
    )


def reminder_from_row(row: Any) -> Reminder:
    return Reminder(
        id=row["id"],
        course=row["course_id"],
        kind=row["kind"],
        audience=row["audience"],
        due=row["due"],
        session=row["session"],
        status=row["status"],
        rule=row["rule"],
        detail=row.get("detail"),
    )


def group_plan_lists(individual_first: int, sessions: Sequence[Session]) -> dict[str, Any]:
    """A group's sessions as stored in ``ipt_groups.plan``."""
    return {
        "individual_first": individual_first,
        "sessions": [
            [s.number, s.start.isoformat(), s.status.value, s.step, s.therapist,
             s.original_start.isoformat() if s.original_start else None, s.duration_minutes]
            for s in sessions
        ],
    }  # fmt: skip


def group_plan_from(group_id: str, stored: dict[str, Any]) -> GroupPlan:
    """The ``GroupPlan`` of a stored ``ipt_groups.plan``."""
    return GroupPlan(
        group=group_id,
        individual_first=stored["individual_first"],
        sessions=[
            GroupSlot(
                number=n, start=datetime.fromisoformat(start), status=SessionStatus(status), step=step,
                therapist=who, original_start=datetime.fromisoformat(orig) if orig else None,
            )
            for n, start, status, step, who, orig, _ in stored["sessions"]
        ],
    )  # fmt: skip
