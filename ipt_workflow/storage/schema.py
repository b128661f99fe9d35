"""The database schema (SQLAlchemy Core), mapped explicitly to the core's models.

Tables carry an ``ipt_`` prefix so they can live in a host application's database. Instants
are timestamptz on PostgreSQL and fixed-format UTC text on SQLite (which sorts in time order).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from .direct import from_text, to_text

__all__ = ["SCHEMA_VERSION", "UTCDateTime", "from_text", "metadata", "to_text"]

SCHEMA_VERSION = 1

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC: timestamptz on PostgreSQL, 'YYYY-MM-DD HH:MM:SS[.ffffff]'
    text elsewhere. Reads back aware, in UTC."""

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
        if dialect.name == "postgresql":
            return value
        return to_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return from_text(value)


meta = Table(
    "ipt_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

courses = Table(
    "ipt_courses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client", String(64), nullable=False),
    Column("therapist", String(64), nullable=False),
    Column("protocol", String(64), nullable=False),
    Column("protocol_version", String(32), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("slot", String(5), nullable=False),
    Column("state", String(16), nullable=False),
    Column("planned_sessions", Integer, nullable=False),
    Column("focus", JSON, nullable=False),
    Column("current_focus", String(64)),
    Column("foci_worked", JSON, nullable=False),
    Column("pauses", JSON, nullable=False),
    Column("fired_rules", JSON, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("schema_version", Integer, nullable=False),
    # Every session of the plan as last written, one list a session in PLAN_FIELDS order, so
    # a course can be shown without the rules; NULL in rows written before revision 0002.
    Column("plan", JSON),
    # The group (SPEC §10) this course is a member of; NULL for an individual course.
    Column("group_id", String(64)),
    # The fingerprint of the rules that plan was made under (``planner.rules_fingerprint``);
    # NULL in rows written before revision 0007 (then the plan counts as made under other rules).
    Column("rules_fingerprint", String(32)),
    Index("ix_ipt_courses_state", "state"),
    Index("ix_ipt_courses_therapist", "therapist"),
    Index("ix_ipt_courses_therapist_state", "therapist", "state"),
    Index("ix_ipt_courses_group", "group_id"),
)

# A group's shared schedule (SPEC §10): its recorded sessions and calendar history as JSON,
# and every session as last planned (``plan``: {individual_first, sessions: [[number, start,
# status, step, therapist, original_start, duration], ..]}), which members' planners read.
groups = Table(
    "ipt_groups",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("protocol", String(64), nullable=False),
    Column("protocol_version", String(32), nullable=False),
    Column("therapist", String(64), nullable=False),
    Column("cotherapist", String(64)),
    Column("timezone", String(64), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("slot", String(5), nullable=False),
    Column("min_size", Integer, nullable=False),
    Column("max_size", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("sessions", JSON, nullable=False),
    Column("history", JSON, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_ipt_groups_therapist", "therapist"),
    Index("ix_ipt_groups_cotherapist", "cotherapist"),
)

# The therapists other than the course's own (``ipt_courses.therapist``) who hold planned
# sessions of it: after a handover, the previous therapist until those sessions are past. The
# clash check finds a therapist's courses by the column and by this table; a course never
# handed over has no rows, so a bulk import writes none.
course_therapists = Table(
    "ipt_course_therapists",
    metadata,
    Column("course_id", String(64), ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True),
    Column("therapist", String(64), primary_key=True),
    Index("ix_ipt_course_therapists_therapist", "therapist"),
)

history = Table(
    "ipt_history",
    metadata,
    Column("course_id", String(64), ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("event", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("rule", String(64)),
    Column("data", JSON, nullable=False),
)

# Recorded sessions only (held, missed, cancelled): planned ones are derived from the rules
# and recomputed on every read, so they can never disagree with them.
sessions = Table(
    "ipt_sessions",
    metadata,
    Column("course_id", String(64), ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("start_utc", UTCDateTime, nullable=False),
    Column("start_local", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("duration_minutes", Integer, nullable=False),
    Column("format", String(16), nullable=False),
    Column("participants", JSON, nullable=False),
    Column("optional_participants", JSON, nullable=False),
    Index("ix_ipt_sessions_start", "start_utc"),
)

measurements = Table(
    "ipt_measurements",
    metadata,
    Column("course_id", String(64), ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("instrument", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("item9", Integer),
    Column("at", UTCDateTime, nullable=False),
    Column("session", Integer),
)

# Clustered by course (the primary key leads with it), so a course's reminders sit together
# and one course's import or replan touches one place; the daemon reads by (status, due).
reminders = Table(
    "ipt_reminders",
    metadata,
    Column("course_id", String(64), ForeignKey("ipt_courses.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("audience", String(16), nullable=False),
    Column("due", UTCDateTime, nullable=False),
    Column("session", Integer),
    Column("status", String(16), nullable=False),
    Column("rule", String(160)),  # a clash alert names the other session: clash:COURSE#N
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_until", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("last_error", Text),
    Column("detail", JSON),  # a notice's old and new session start
    Index("ix_ipt_reminders_due", "status", "due"),
    # Only claimed or retrying reminders carry a lease: a small partial index the daemon's
    # "when is the next one claimable" reads, which bulk inserts (no lease) never touch.
    Index(
        "ix_ipt_reminders_lease",
        "lease_until",
        sqlite_where=text("lease_until IS NOT NULL"),
        postgresql_where=text("lease_until IS NOT NULL"),
    ),
    sqlite_with_rowid=False,
)

# One row per therapist and firing of the clinic's digest cron; ``fire_local`` is the naive
# local time of the firing in ``timezone``, so a repeated firing (an overlap hour, a second
# daemon, a --once run every minute) has the same id and is emitted once.
digests = Table(
    "ipt_digests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("therapist", String(64), nullable=False),
    Column("fire_local", String(19), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("due", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_until", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("last_error", Text),
    Column("site", String(64)),  # the site its id was made with (NULL: recorded before 0010)
    Index("ix_ipt_digests_due", "status", "due"),
)

# A therapist's leave (SPEC §9): the planner moves their sessions out of these days.
absences = Table(
    "ipt_absences",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("therapist", String(64), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("until_date", Date, nullable=False),
    Column("reason", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_ipt_absences_therapist", "therapist", "until_date"),
)

# FHIR resource versions already applied by ``ipt ingest fhir``: the same version twice is applied once.
ingested = Table(
    "ipt_ingested",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", String(64), primary_key=True),
    Column("course_id", String(64)),
    Column("event", String(32)),
    Column("ingested_at", UTCDateTime, nullable=False),
)
