"""Storage: SQL tables, migrations, the store, and quick row-level reads."""

import os

#: The Alembic revision this version of ipt-workflow writes and reads.
HEAD_REVISION = "0010"

#: The fields of a session in ``ipt_courses.plan`` (the SPEC §7 session shape, as lists).
#: Plans stored before SPEC §9 hold the first eight; ``reads`` fills in the last three.
PLAN_FIELDS = (
    "number", "phase", "start", "status", "duration_minutes", "format", "participants", "optional_participants",
    "end", "therapist", "original_start",
)  # fmt: skip

#: How long a command waits for another process's lock on the database before it gives up
#: (SQLite busy timeout, PostgreSQL ``lock_timeout``), in seconds; ``IPT_LOCK_TIMEOUT`` sets it.
DEFAULT_LOCK_TIMEOUT = 30.0
LOCK_TIMEOUT_ENV = "IPT_LOCK_TIMEOUT"


def lock_timeout() -> float:
    """The lock wait bound in seconds: ``IPT_LOCK_TIMEOUT`` when it is a number from 0 to
    3600, else ``DEFAULT_LOCK_TIMEOUT``. The one place that defines it."""
    try:
        seconds = float(os.environ.get(LOCK_TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT
    return seconds if 0 <= seconds <= 3600 else DEFAULT_LOCK_TIMEOUT


def sqlite_pragmas(wait: float) -> tuple[str, ...]:
    """The pragmas every SQLite connection of the store gets, in order (the SQLAlchemy engine's
    and the SQLAlchemy-free path's alike): WAL, foreign keys, a lock wait of ``wait`` seconds."""
    return ("journal_mode=WAL", "foreign_keys=ON", f"busy_timeout={int(wait * 1000)}", "synchronous=NORMAL",
            "cache_size=-65536")  # fmt: skip
