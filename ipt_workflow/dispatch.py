"""Emitting due reminders: claim a batch under a lease, apply the late policy, write it to
every sink, then record it. A crash anywhere leaves the batch pending; its lease runs out
and it is claimed again (at least once), and a file sink never writes an id twice.

Late policy (SPEC §8): a client reminder whose session has already started is recorded
``skipped``, not sent; a therapist alert is always sent, with ``late: true`` when it goes out
more than ``LATE_AFTER`` after its due instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .sinks import Sink
from .storage.sql import SqlStore
from .wallclock import iso_utc

LATE_AFTER = timedelta(seconds=60)
LEASE = timedelta(minutes=5)


@dataclass
class Dispatched:
    delivered: int = 0
    skipped: int = 0
    batches: int = 0


def event_of(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The daemon's output line: ``{id, type, kind, course, due, emitted_at, late, audience, session}``."""
    kind = row["kind"]
    kind_type = "digest" if kind == "digest" else ("reminder" if row["audience"] == "client" else "alert")
    return {
        "id": row["id"],
        "type": kind_type,
        "kind": kind,
        "course": row["course_id"],
        "due": iso_utc(row["due"]),
        "emitted_at": iso_utc(now),
        "late": now - row["due"] > LATE_AFTER,
        "audience": row["audience"],
        "session": row["session"],
    }


def dispatch_due(store: SqlStore, now: datetime, sinks: Sequence[Sink], batch: int = 500) -> Dispatched:
    """Emit everything due at ``now`` to every sink, batch by batch, until nothing is left."""
    result = Dispatched()
    while True:
        rows = store.claim_due(now, batch, LEASE)
        if not rows:
            return result
        events: list[dict[str, Any]] = []
        delivered: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []
        for row in rows:
            key = (row["course_id"], row["id"])
            started = row["session_start"] and datetime.fromisoformat(row["session_start"]).astimezone(UTC) <= now
            if row["audience"] == "client" and started:
                skipped.append(key)
                continue
            events.append(event_of(row, now))
            delivered.append(key)
        for sink in sinks:
            sink.deliver(events)
        store.finish(now, delivered, skipped)
        result.delivered += len(delivered)
        result.skipped += len(skipped)
        result.batches += 1
