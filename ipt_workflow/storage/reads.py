"""Read-only views of stored courses and reminders as the JSON shapes of SPEC §7, built
straight from rows with plain SQL: no models, no rules, no planner. On an SQLite file at the
current schema they run on the standard library's sqlite3 alone, so `ipt course show` and
`ipt reminders` start in a fraction of the time SQLAlchemy takes to import; anything else
(PostgreSQL, a new or older database) goes through the store's engine."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..core.errors import UnknownName, shown
from ..core.progress import phq9_json
from ..core.wallclock import iso_utc
from . import HEAD_REVISION, PLAN_FIELDS, lock_timeout
from .files import make_private, sqlite_path

if TYPE_CHECKING:
    from sqlalchemy import Engine

REMINDER_STATUSES = ("pending", "delivered", "skipped", "cancelled", "failed")
Query = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


@contextmanager
def open_query(db: str | Engine) -> Iterator[Query]:
    """A function that runs SQL (``:name`` parameters) and returns rows as dicts. Never
    creates a database: a missing SQLite file is a StoreError. A failure of the database
    (busy past the lock wait, I/O) is a one-line StoreError."""
    path = sqlite_path(db) if isinstance(db, str) else None
    if path is not None and path.is_file():
        make_private(path)
        conn = sqlite3.connect(path, timeout=lock_timeout())  # only SELECTs run on it
        try:
            conn.row_factory = sqlite3.Row
            if _revision(conn) == HEAD_REVISION:
                yield lambda sql, params: [dict(r) for r in conn.execute(sql, params)]
                return
        except sqlite3.Error as exc:
            from .engine import database_error

            raise database_error(exc, f"sqlite:///{path}") from None
        finally:
            conn.close()
    yield from _engine_query(db)


def _engine_query(db: str | Engine) -> Iterator[Query]:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from .engine import database_error, engine_for, ensure_schema

    engine = engine_for(db, create=False) if isinstance(db, str) else db  # an engine passed in is set up already
    try:
        if isinstance(db, str):
            ensure_schema(engine)
        with engine.connect() as conn:
            yield lambda sql, params: [dict(r) for r in conn.execute(text(sql), params).mappings()]
    except DBAPIError as exc:
        raise database_error(exc, engine) from None
    finally:
        if isinstance(db, str):
            engine.dispose()


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM ipt_alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return str(row[0]) if row else None


def _instant(value: Any) -> str | None:
    """An instant as stored (UTC text on SQLite, timestamptz elsewhere) in ISO 8601 UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return iso_utc(value)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _reminder_sql(
    course: str | None, start: datetime | None, until: datetime | None, status: str | None, limit: int | None
) -> tuple[str, dict[str, Any]]:
    statuses = [status] if status else list(REMINDER_STATUSES)
    params: dict[str, Any] = {f"s{i}": s for i, s in enumerate(statuses)}
    # Always name the status, so the (status, due) index serves the due window too.
    where = [f"status IN ({', '.join(':' + k for k in params)})"]
    if course:
        where.append("course_id = :course")
        params["course"] = course
    if start:
        where.append("due >= :start")
        params["start"] = start
    if until:
        where.append("due < :until")
        params["until"] = until
    sql = (
        "SELECT id, course_id, kind, audience, due, session, status, rule, detail FROM ipt_reminders "
        f"WHERE {' AND '.join(where)} ORDER BY due, id" + (f" LIMIT {int(limit)}" if limit else "")
    )
    return sql, params


def reminder_documents(
    db: str | Engine,
    course: str | None = None,
    start: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """``{id, course, kind, audience, due, session, status, rule}`` for each reminder with
    ``start <= due < until``, in due order."""
    sql, params = _reminder_sql(course, start, until, status, limit)
    with open_query(db) as query:
        sqlite = sqlite_path(db) is not None if isinstance(db, str) else db.dialect.name == "sqlite"
        if sqlite:
            params = {k: _sqlite_instant(v) for k, v in params.items()}
        rows = query(sql, params)
    return [
        {
            "id": r["id"],
            "course": r["course_id"],
            "kind": r["kind"],
            "audience": r["audience"],
            "due": _instant(r["due"]),
            "session": r["session"],
            "status": r["status"],
            "rule": r["rule"],
            **({"detail": d} if (d := _json(r["detail"])) else {}),
        }
        for r in rows
    ]


def _sqlite_instant(value: Any) -> Any:
    """Bind an instant the way SQLite stores it (see ``schema.to_text``)."""
    if isinstance(value, datetime):
        return str(value.astimezone(UTC).replace(tzinfo=None))
    return value


def _plan_session(values: list[Any], therapist: str) -> dict[str, Any]:
    """One stored plan entry as the session shape; one stored before SPEC §9 gets its end,
    the course's therapist and no original start."""
    session = dict(zip(PLAN_FIELDS, values, strict=False))
    if "end" not in session:
        start = datetime.fromisoformat(session["start"])
        session["end"] = (start + timedelta(minutes=session["duration_minutes"])).isoformat()
        session["therapist"] = therapist
        session["original_start"] = None
    return {name: session[name] for name in _SESSION_ORDER}


_SESSION_ORDER = (
    "number",
    "phase",
    "start",
    "end",
    "status",
    "therapist",
    "original_start",
    "duration_minutes",
    "format",
    "participants",
    "optional_participants",
)  # fmt: skip  (the order of present.views.session_json)


def course_document(db: str | Engine, course_id: str) -> dict[str, Any] | None:
    """The course shape of SPEC §7 from the stored rows; raises UnknownName for an unknown id,
    and returns None for a course stored before its plan was (then ask the planner)."""
    with open_query(db) as query:
        found = query("SELECT * FROM ipt_courses WHERE id = :id", {"id": course_id})
        if not found:
            raise UnknownName(f"unknown course {shown(course_id)}")
        row = found[0]
        if row["plan"] is None:
            return None
        measures = query("SELECT * FROM ipt_measurements WHERE course_id = :id ORDER BY at, seq", {"id": course_id})
        history = query("SELECT * FROM ipt_history WHERE course_id = :id ORDER BY seq", {"id": course_id})
    return {
        "id": row["id"],
        "client": row["client"],
        "therapist": row["therapist"],
        "protocol": row["protocol"],
        "protocol_version": row["protocol_version"],
        "timezone": row["timezone"],
        "state": row["state"],
        "focus": list(_json(row["focus"])),
        "current_focus": row["current_focus"],
        "foci_worked": list(_json(row["foci_worked"])),
        "planned_sessions": row["planned_sessions"],
        "version": row["version"],
        "sessions": [_plan_session(s, row["therapist"]) for s in _json(row["plan"])],
        "measurements": [
            {
                "instrument": m["instrument"],
                "score": m["score"],
                "item9": m["item9"],
                "at": _instant(m["at"]),
                "session": m["session"],
            }
            for m in measures
        ],
        "history": [
            {
                "event": h["event"],
                "at": _instant(h["at"]),
                "from": h["from_state"],
                "to": h["to_state"],
                "rule": h["rule"],
                "data": dict(_json(h["data"])),
            }
            for h in history
        ],
        "phq9": phq9_json([m["score"] for m in measures if m["instrument"] == "phq9"]),
    }


def plan_sessions(plan: Any, therapist: str) -> list[dict[str, Any]] | None:
    """The sessions of a stored ``ipt_courses.plan`` as the session shape (None for a course
    stored before plans were); ``therapist`` is the course's, for plans stored before SPEC §9."""
    if plan is None:
        return None
    return [_plan_session(s, therapist) for s in _json(plan)]


_CALENDAR_COLUMNS = "id, client, therapist, state, timezone, plan, group_id"


def calendar_courses(db: str | Engine, therapist: str | None) -> list[dict[str, Any]]:
    """``{id, client, therapist, state, timezone, sessions}`` of every course with a session
    that ``therapist`` gives (of every course when None); ``sessions`` as ``plan_sessions``.

    A therapist's courses are those they hold now (indexed) and those handed to or from them
    (``change_therapist`` in the history); the caller keeps the sessions that are theirs."""
    with open_query(db) as query:
        if therapist is None:
            rows = query(f"SELECT {_CALENDAR_COLUMNS} FROM ipt_courses", {})
        else:
            rows = query(f"SELECT {_CALENDAR_COLUMNS} FROM ipt_courses WHERE therapist = :t", {"t": therapist})
            held = {r["id"] for r in rows}
            handed = query("SELECT course_id, data FROM ipt_history WHERE event = 'change_therapist'", {})
            others = sorted(
                {
                    h["course_id"]
                    for h in handed
                    if h["course_id"] not in held and therapist in _json(h["data"]).values()
                }
            )
            for i in range(0, len(others), 500):
                params = {f"c{j}": c for j, c in enumerate(others[i : i + 500])}
                names = ", ".join(f":{k}" for k in params)
                rows += query(f"SELECT {_CALENDAR_COLUMNS} FROM ipt_courses WHERE id IN ({names})", params)
    return [
        {
            "id": r["id"],
            "client": r["client"],
            "therapist": r["therapist"],
            "state": r["state"],
            "timezone": r["timezone"],
            "sessions": plan_sessions(r["plan"], r["therapist"]),
            "group": r["group_id"],
        }
        for r in rows
    ]


def delivery_documents(db: str | Engine, course_id: str) -> list[dict[str, Any]]:
    """Every stored reminder of the course as ``reminder_documents`` gives it, with
    ``delivered_at`` (ISO 8601 UTC or null) and ``attempts``, in due order (for reports)."""
    sql = (
        "SELECT id, course_id, kind, audience, due, session, status, rule, detail, delivered_at, attempts "
        "FROM ipt_reminders WHERE course_id = :course ORDER BY due, id"
    )
    with open_query(db) as query:
        rows = query(sql, {"course": course_id})
    return [
        {
            "id": r["id"],
            "course": r["course_id"],
            "kind": r["kind"],
            "audience": r["audience"],
            "due": _instant(r["due"]),
            "session": r["session"],
            "status": r["status"],
            "rule": r["rule"],
            "delivered_at": _instant(r["delivered_at"]),
            "attempts": r["attempts"],
            **({"detail": d} if (d := _json(r["detail"])) else {}),
        }
        for r in rows
    ]


def course_ids(db: str | Engine, states: tuple[str, ...], therapist: str | None = None) -> list[str]:
    """The ids of the courses in ``states`` (of ``therapist``, the course's current one, when
    given), in id order."""
    params: dict[str, Any] = {f"s{i}": s for i, s in enumerate(states)}
    sql = f"SELECT id FROM ipt_courses WHERE state IN ({', '.join(':' + k for k in params)})"
    if therapist is not None:
        sql += " AND therapist = :therapist"
        params["therapist"] = therapist
    with open_query(db) as query:
        return [r["id"] for r in query(sql + " ORDER BY id", params)]


def calendar_groups(db: str | Engine, therapist: str | None) -> list[dict[str, Any]]:
    """``{id, therapist, cotherapist, state, timezone, sessions}`` of every group (those
    ``therapist`` leads or co-leads, or was handed a session of, when given); ``sessions``
    as stored in ``ipt_groups.plan``: ``{number, start, end, status, therapist,
    original_start}`` each."""
    with open_query(db) as query:
        rows = query("SELECT id, therapist, cotherapist, state, timezone, plan FROM ipt_groups ORDER BY id", {})
    out = []
    for r in rows:
        stored = _json(r["plan"])
        sessions = []
        for number, start, status, _step, who, original, minutes in (tuple(x[:7]) for x in stored["sessions"]):
            end = (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()
            sessions.append({"number": number, "start": start, "end": end, "status": status, "therapist": who,
                             "original_start": original})  # fmt: skip
        theirs = therapist is None or therapist in {r["therapist"], r["cotherapist"]}
        if not theirs and not any(s["therapist"] == therapist for s in sessions):
            continue
        out.append({"id": r["id"], "therapist": r["therapist"], "cotherapist": r["cotherapist"],
                    "state": r["state"], "timezone": r["timezone"], "individual_first": stored["individual_first"],
                    "sessions": sessions})  # fmt: skip
    return out
