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
MAX_ATTEMPTS = 5  # then a reminder no sink would take is recorded ``failed``
RETRY_BASE = timedelta(seconds=30)  # wait 30 s, 60 s, 120 s ... between attempts


@dataclass
class Dispatched:
    delivered: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
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
        refused: dict[str, str] = {}
        for sink in sinks:
            refused.update(sink.deliver(events))
        attempts = {row["id"]: row["attempts"] for row in rows}
        done = [k for k in delivered if k[1] not in refused]
        gave_up = [k for k in delivered if k[1] in refused and attempts[k[1]] >= MAX_ATTEMPTS]
        again = [k for k in delivered if k[1] in refused and attempts[k[1]] < MAX_ATTEMPTS]
        store.finish(now, done, skipped, gave_up)
        for key in again:  # exponential backoff by attempt, in the store: it survives restarts
            wait = RETRY_BASE * 2 ** (attempts[key[1]] - 1)
            store.retry_later([key], now + wait, refused[key[1]])
        result.delivered += len(done)
        result.skipped += len(skipped)
        result.retried += len(again)
        result.failed += len(gave_up)
        result.batches += 1
