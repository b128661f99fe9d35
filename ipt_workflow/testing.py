"""Load-test helpers for embedding engineers, the test suite and ``bench/``: fill a database
with many reminders due in a given window, to drain with the daemon.

The reminders are therapist ``follow_up`` alerts (no session, so the late policy never skips
them) belonging to a few real courses created through the normal path; those courses start
in 2035, so their own reminders are not due in any window a test uses.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import insert

from .storage import schema as t
from .workflow import Workflow

SEED_COURSE_START = "2035-01-08"


def seed_due(url: str, n: int, first: datetime, last: datetime, per_course: int = 1000, prefix: str = "s") -> list[str]:
    """Add ``n`` pending reminders due evenly from ``first`` to ``last`` (aware instants) to the
    database at ``url``; returns their ids in due order."""
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    ids: list[str] = []
    with Workflow(url, clock=lambda: clock) as wf:
        step = (last - first) / max(n - 1, 1)
        rows = []
        for c in range(math.ceil(n / per_course)):
            course_id = f"seed-{prefix}-{c}"
            wf.create_course(client=f"LOAD-{c}", start=SEED_COURSE_START, time="10:00", tz="UTC", course_id=course_id)
            for i in range(c * per_course, min(n, (c + 1) * per_course)):
                rid = f"rem_{prefix}{i:08d}"
                ids.append(rid)
                rows.append({
                    "course_id": course_id, "id": rid, "kind": "follow_up", "audience": "therapist",
                    "due": (first + step * i).astimezone(UTC), "session": None, "status": "pending",
                    "rule": "seed", "attempts": 0,
                })  # fmt: skip
        with wf.store.engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(t.reminders), rows[start : start + 5000])
    return ids
