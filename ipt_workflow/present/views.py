"""The JSON shapes of SPEC §7, from core values. Fields may be added, never renamed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.model import Absence, Course, HistoryEntry, Plan, Reminder, Session
from ..core.progress import phq9_json
from ..core.wallclock import iso_utc

if TYPE_CHECKING:
    from ..core.protocol import Protocol


def session_json(s: Session) -> dict[str, Any]:
    """``{number, phase, start, end, status, therapist, original_start, ...}``; ``start``,
    ``end`` and ``original_start`` (null unless the session was moved) are local ISO 8601
    with their offsets."""
    return {
        "number": s.number,
        "phase": s.phase,
        "start": s.start.isoformat(),
        "end": s.end.isoformat(),
        "status": s.status.value,
        "therapist": s.therapist,
        "original_start": s.original_start.isoformat() if s.original_start else None,
        "duration_minutes": s.duration_minutes,
        "format": s.format,
        "participants": list(s.participants),
        "optional_participants": list(s.optional_participants),
    }


def reminder_json(r: Reminder) -> dict[str, Any]:
    """``{id, course, kind, audience, due, session, status, rule}``; ``due`` in UTC."""
    return {
        "id": r.id,
        "course": r.course,
        "kind": r.kind,
        "audience": r.audience,
        "due": iso_utc(r.due),
        "session": r.session,
        "status": r.status.value if hasattr(r.status, "value") else str(r.status),
        "rule": r.rule,
        **({"detail": dict(r.detail)} if r.detail else {}),
    }


def history_json(h: HistoryEntry) -> dict[str, Any]:
    """``{event, at, from, to, rule, data}``; ``at`` in UTC."""
    return {
        "event": h.event,
        "at": iso_utc(h.at),
        "from": h.from_.value if h.from_ else None,
        "to": h.to.value,
        "rule": h.rule,
        "data": dict(h.data),
    }


def course_json(course: Course, plan: Plan) -> dict[str, Any]:
    """The course shape: identity, state, focus, every session, the history, and ``phq9``
    (baseline to latest, see ``core.progress.phq9_json``)."""
    return {
        "id": course.id,
        "client": course.client,
        "therapist": course.therapist,
        "protocol": course.protocol,
        "protocol_version": course.protocol_version,
        "timezone": course.timezone,
        "state": course.state.value,
        "focus": list(course.focus),
        "current_focus": course.current_focus,
        "foci_worked": list(course.foci_worked),
        "planned_sessions": course.planned_sessions,
        "version": course.version,
        "sessions": [session_json(s) for s in plan.sessions],
        "measurements": [
            {"instrument": m.instrument, "score": m.score, "item9": m.item9, "at": iso_utc(m.at), "session": m.session}
            for m in course.measurements
        ],
        "history": [history_json(h) for h in course.history],
        "phq9": phq9_json([m.score for m in course.measurements if m.instrument == "phq9"]),
    }


def protocol_json(p: Protocol) -> dict[str, Any]:
    """A protocol as loaded, with its guards and rules."""
    data = p.model_dump(mode="json")
    data["reminder_kinds"] = dict(p.kinds)
    return data


def protocol_summary(p: Protocol) -> dict[str, Any]:
    return {
        "id": p.id,
        "version": p.version,
        "name": p.name,
        "sessions": p.sessions.model_dump(),
        "cadence_weeks": p.cadence_weeks,
        "duration_minutes": p.duration_minutes,
        "assessment": p.phases.assessment.model_dump(),
        "termination": p.phases.termination,
        "focus_limit": p.focus_limit,
    }


def absence_json(a: Absence) -> dict[str, Any]:
    """``{id, therapist, from, until, reason, created_at}``."""
    return {
        "id": a.id,
        "therapist": a.therapist,
        "from": a.start.isoformat(),
        "until": a.until.isoformat(),
        "reason": a.reason,
        "created_at": a.created_at.isoformat() if a.created_at else None,
    }
