"""The SQL store: courses and their reminders in SQLite (default) or PostgreSQL.

``SqlStore`` is composed of one part per concern: ``base`` (the engine and its
transactions), ``courses`` (load, list, add, save), ``bulk`` (many new courses in one
transaction) and ``outbox`` (the dispatch queue: claims, leases, outcomes, digests). Callers
import it, and the names below, from here.
"""

from __future__ import annotations

from . import HEAD_REVISION
from .absence_writes import AbsenceWrites, GroupReplanned, Replanned
from .base import NOTIFY_CHANNEL
from .courses import RuleWrites
from .engine import engine_for, upgrade
from .groups import GroupStore, MemberChange
from .ingest_writes import CourseChange, Ingested, IngestWrites
from .new_rows import NewReminder, Rows, build_new_rows, build_rows
from .outbox import Outbox


class SqlStore(AbsenceWrites, GroupStore, IngestWrites, Outbox, RuleWrites):
    """Courses, history, sessions, measurements and reminders in one SQL database."""


__all__ = [
    "HEAD_REVISION",
    "NOTIFY_CHANNEL",
    "CourseChange",
    "GroupReplanned",
    "Ingested",
    "MemberChange",
    "NewReminder",
    "Replanned",
    "Rows",
    "SqlStore",
    "build_new_rows",
    "build_rows",
    "engine_for",
    "upgrade",
]
