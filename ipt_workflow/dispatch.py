"""Emitting due reminders and digests: claim a batch under a lease, apply the late policy,
write it to every sink, then record it. A crash anywhere leaves the batch pending; its lease
runs out and it is claimed again (at least once), and a file sink never writes an id twice.

Late policy (SPEC §8): a client reminder whose session has already started is recorded
``skipped``, not sent; a therapist alert (and a digest) is always sent, with ``late: true``
when it goes out more than ``LATE_AFTER`` after its due instant.

Log lines are ``key=value`` and carry counts and ids only, never event data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, TypeVar

from .sinks import Sink
from .storage.sql import SqlStore
from .wallclock import iso_utc

LATE_AFTER = timedelta(seconds=60)
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5  # then a reminder no sink would take is recorded ``failed``
RETRY_BASE = timedelta(seconds=30)  # wait 30 s, 60 s, 120 s ... between attempts

log = logging.getLogger("ipt_workflow.dispatch")
_K = TypeVar("_K")


@dataclass
class Dispatched:
    delivered: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    batches: int = 0
    digests: int = 0


def emitted(now: datetime) -> str:
    """``emitted_at``: UTC ISO 8601, to the millisecond when the clock has them."""
    return now.astimezone(UTC).isoformat(timespec="milliseconds" if now.microsecond else "seconds")


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
        "emitted_at": emitted(now),
        "late": now - row["due"] > LATE_AFTER,
        "audience": row["audience"],
        "session": row["session"],
    }


def deliver(sinks: Sequence[Sink], events: list[dict[str, Any]]) -> dict[str, str]:
    """Write ``events`` to every sink; the ids some sink refused, with why."""
    refused: dict[str, str] = {}
    for sink in sinks:
        refused.update(sink.deliver(events))
    return refused


def settle(
    keys: Sequence[_K], id_of: Callable[[_K], str], attempts: dict[str, int], refused: dict[str, str], now: datetime
) -> tuple[list[_K], list[_K], list[tuple[_K, datetime, str]]]:
    """Sort a delivered batch: (taken by every sink, refused for the last time, refused and to
    be tried again ``(key, not before, why)``)."""
    done = [k for k in keys if id_of(k) not in refused]
    gave_up = [k for k in keys if id_of(k) in refused and attempts[id_of(k)] >= MAX_ATTEMPTS]
    again = [
        (k, now + retry_wait(attempts[id_of(k)]), refused[id_of(k)])
        for k in keys
        if id_of(k) in refused and attempts[id_of(k)] < MAX_ATTEMPTS
    ]
    return done, gave_up, again


def retry_wait(attempts: int) -> timedelta:
    """Exponential backoff by attempt, kept in the store so it survives restarts."""
    factor: int = 2 ** (attempts - 1)
    return RETRY_BASE * factor


def dispatch_due(
    store: SqlStore,
    now: datetime,
    sinks: Sequence[Sink],
    batch: int = 1000,
    stop: Callable[[], bool] | None = None,
) -> Dispatched:
    """Emit everything due at ``now`` to every sink, batch by batch, until nothing is left
    (or ``stop()`` is true: then after the batch in flight)."""
    result = Dispatched()
    while not (stop and stop()) and (rows := store.claim_due(now, batch, LEASE)):
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
        refused = deliver(sinks, events)
        attempts = {row["id"]: row["attempts"] for row in rows}
        done, gave_up, again = settle(delivered, itemgetter(1), attempts, refused, now)
        store.finish(now, done, skipped, gave_up)
        store.retry_later(again)
        for key, _, error in again:
            log.warning("retry course=%s id=%s attempt=%d error=%s", *key, attempts[key[1]], error)
        for key in gave_up:
            log.error("failed course=%s id=%s attempts=%d error=%s", *key, attempts[key[1]], refused[key[1]])
        log.info(
            "batch delivered=%d skipped=%d retried=%d failed=%d first=%s last=%s",
            len(done), len(skipped), len(again), len(gave_up), rows[0]["id"], rows[-1]["id"],
        )  # fmt: skip
        result.delivered += len(done)
        result.skipped += len(skipped)
        result.retried += len(again)
        result.failed += len(gave_up)
        result.batches += 1
    if not (stop and stop()):
        dispatch_digests(store, now, sinks, result)
    return result


def dispatch_digests(store: SqlStore, now: datetime, sinks: Sequence[Sink], result: Dispatched) -> None:
    """Emit the recorded digests due at ``now`` (see ``digests``)."""
    from .digests import digest_body

    while rows := store.claim_digests(now, 50, LEASE):
        events = []
        for row in rows:
            late = now - row["due"] > LATE_AFTER
            common = {"id": row["id"], "type": "digest", "kind": "digest", "course": None, "due": iso_utc(row["due"])}
            extra = {"emitted_at": emitted(now), "late": late, "audience": "therapist", "session": None}
            events.append({**common, **extra, **digest_body(store, row)})
        refused = deliver(sinks, events)
        attempts = {row["id"]: row["attempts"] for row in rows}
        done, gave_up, again = settle([row["id"] for row in rows], str, attempts, refused, now)
        store.finish_digests(now, done, gave_up)
        store.retry_digests_later(again)
        for i, _, error in again:
            log.warning("retry digest=%s attempt=%d error=%s", i, attempts[i], error)
        for i in done:
            log.info("digest id=%s delivered", i)
        result.digests += len(done)
        result.failed += len(gave_up)
        result.batches += 1
