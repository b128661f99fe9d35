"""Emitting due reminders and digests: claim a batch under a lease, apply the late policy,
write it to every sink, then record it. A crash anywhere leaves the batch pending; its lease
runs out and it is claimed again (at least once), and a file sink never writes an id twice.

A claim counts itself in ``attempts``, so ``(key, attempts)`` is the claim's token. Before
every delivery attempt (each webhook try, each file or stdout write, each call of a library
callable) the sink asks ``Lease.still_due``, which reads whether the run still holds the
item (pending, not claimed again since): one cancelled or taken over meanwhile is not sent.
The same call renews the batch's leases once a third of the lease has passed, so a slow
batch keeps them; and recording a batch only touches rows still holding this run's token,
so a run that lost its lease (stopped past it, while another run claimed the batch) records
nothing of it.

Late policy (SPEC §8): a client reminder whose session has already started is recorded
``skipped``, not sent; a therapist alert (and a digest) is always sent, with ``late: true``
when it goes out more than ``LATE_AFTER`` after its due instant.

Log lines are ``key=value`` and carry counts and ids only, never event data.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, TypeVar

from pydantic import BaseModel

from ..core.wallclock import iso_utc
from ..storage.sql import SqlStore
from .sinks import Sink

LATE_AFTER = timedelta(seconds=60)
LEASE = timedelta(minutes=5)  # renewed while a batch is delivered (see Lease)
MAX_ATTEMPTS = 5  # then a reminder no sink would take is recorded ``failed``
RETRY_BASE = timedelta(seconds=30)  # wait 30 s, 60 s, 120 s ... between attempts

log = logging.getLogger("ipt_workflow.delivery.dispatch")
_K = TypeVar("_K")
Claim = tuple[Any, ...]  # (course_id, id, attempts) of a reminder, (id, attempts) of a digest
Check = Callable[[list[dict[str, Any]], datetime], list[dict[str, Any]]]


class Dispatched(BaseModel):
    """What one dispatch did: counts of reminders delivered, skipped (late policy), to be
    retried, failed for good; batches; digests delivered; items dropped."""

    delivered: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    batches: int = 0
    digests: int = 0
    dropped: int = 0  # claimed, then cancelled or taken over by another run: not recorded by this one
    #: What was recorded, by (outcome, kind): outcome ``delivered``, ``skipped``, ``retried`` or ``failed``.
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class Lease:
    """One batch's claims, by id, for the sinks' re-check before each delivery attempt."""

    store: SqlStore
    table: str  # "reminders" or "digests"
    claims: dict[str, Claim]
    clock: Callable[[], datetime]
    length: timedelta
    renewed: datetime = field(init=False)
    tried: set[str] = field(default_factory=set)  # ids some attempt went ahead with

    def __post_init__(self) -> None:
        self.renewed = self.clock()

    def still_due(self, ids: Sequence[str]) -> Collection[str]:
        """Which of ``ids`` this run still holds (pending, not claimed again since); renews
        the leases of the whole batch when a third of the lease has passed since the last time."""
        wanted = [self.claims[i] for i in ids if i in self.claims]
        now = self.clock()
        if now - self.renewed >= self.length / 3:
            held = self.store.renew(self.table, list(self.claims.values()), now + self.length)
            self.claims = {c[-2]: c for c in held}  # a claim lost is lost for good
            self.renewed = now
            live = {c[-2] for c in wanted if c in held}
        else:
            gone = self.store.lost(self.table, wanted)
            live = {c[-2] for c in wanted if c not in gone}
        self.tried |= live
        return live


def emitted(now: datetime) -> str:
    """``emitted_at``: UTC ISO 8601, to the millisecond when the clock has them."""
    return now.astimezone(UTC).isoformat(timespec="milliseconds" if now.microsecond else "seconds")


def event_of(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The daemon's output line: ``{id, type, kind, course, due, emitted_at, late, audience,
    session}``, then what a receiver needs to act without calling back: the course's
    ``therapist``, ``protocol``, ``protocol_version`` and ``timezone``; for a reminder of a
    session its ``phase``, ``session_start``/``session_end`` (local ISO 8601 with offset),
    ``session_start_utc``/``session_end_utc`` and ``session_therapist``; for a notice of a move
    ``start`` and ``old_start`` (local) and their ``_utc`` twins (schemas: ``ipt schema events``)."""
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
        **_detail(row.get("detail")),
        **_course_fields(row.get("course_info")),
        **_session_fields(row.get("session_info")),
    }


def _course_fields(info: dict[str, Any] | None) -> dict[str, Any]:
    if not info:
        return {}
    return {k: info[k] for k in ("therapist", "protocol", "protocol_version", "timezone")}


def _session_fields(session: list[Any] | None) -> dict[str, Any]:
    """A session's plan list (PLAN_FIELDS order) as event fields."""
    if not session:
        return {}
    start = datetime.fromisoformat(session[2])
    end = (
        datetime.fromisoformat(session[8]) if len(session) > 8 and session[8] else start + timedelta(minutes=session[4])
    )
    return {
        "phase": session[1],
        "session_status": session[3],
        "session_start": start.isoformat(),
        "session_end": end.isoformat(),
        "session_start_utc": iso_utc(start),
        "session_end_utc": iso_utc(end),
        "session_therapist": session[9] if len(session) > 9 else None,
    }


def _detail(detail: Any) -> dict[str, Any]:
    """A notice's ``start`` and ``old_start`` (local ISO 8601), with their UTC instants, for the output line."""
    if isinstance(detail, str):
        detail = json.loads(detail)
    if not isinstance(detail, dict):
        return {}
    local = {k: detail[k] for k in ("start", "old_start") if isinstance(detail.get(k), str)}
    return {**local, **{f"{k}_utc": iso_utc(datetime.fromisoformat(v)) for k, v in local.items()}}


def too_late(row: dict[str, Any], now: datetime) -> bool:
    """The late policy: a client reminder whose session has started by ``now`` is skipped."""
    start = row["session_start"]
    return row["audience"] == "client" and bool(start) and datetime.fromisoformat(start).astimezone(UTC) <= now


def deliver(
    sinks: Sequence[Sink], events: list[dict[str, Any]], still_due: Callable[[Sequence[str]], Collection[str]]
) -> dict[str, str]:
    """Write ``events`` to every sink, each attempt only for the ids ``still_due`` allows; the
    ids some sink refused, with why."""
    refused: dict[str, str] = {}
    for sink in sinks:
        refused.update(sink.deliver(events, still_due=still_due))
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


def running_from(now: datetime) -> Callable[[], datetime]:
    """A clock that reads ``now`` at once and runs on at real speed (leases are renewed by it)."""
    t0 = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - t0)


def dispatch_due(
    store: SqlStore,
    now: datetime,
    sinks: Sequence[Sink],
    batch: int = 1000,
    stop: Callable[[], bool] | None = None,
    lease: timedelta = LEASE,
    clock: Callable[[], datetime] | None = None,
    check: Check | None = None,
) -> Dispatched:
    """Emit everything due at ``now`` to every sink, batch by batch, until nothing is left
    (or ``stop()`` is true: then after the batch in flight). Leases run for ``lease`` on
    ``clock`` (default: ``now``, running on at real speed). ``check(rows, now)`` sees each
    claimed batch first and returns the rows to go on with (``rulechanges.RulesWatch``: no
    reminder goes out of a plan made under other rules); it settles the rows it leaves out."""
    clock = clock or running_from(now)
    result = Dispatched()
    while not (stop and stop()) and (claimed := store.claim_due(now, batch, lease, clock())):
        rows = check(claimed, now) if check is not None else claimed
        if not rows:
            result.batches += 1
            continue
        claims: dict[str, Claim] = {row["id"]: (row["course_id"], row["id"], row["attempts"]) for row in rows}
        events: list[dict[str, Any]] = []
        skipped: list[Claim] = []
        for row in rows:
            if too_late(row, now):
                skipped.append(claims[row["id"]])
            else:
                events.append(event_of(row, now))
        held = Lease(store, "reminders", {e["id"]: claims[e["id"]] for e in events}, clock, lease)
        refused = deliver(sinks, events, held.still_due)
        attempts = {row["id"]: row["attempts"] for row in rows}
        sent = [claims[e["id"]] for e in events]
        done, gave_up, again = settle(sent, itemgetter(1), attempts, refused, now)
        recorded = store.finish(now, done, skipped, gave_up) | store.retry_later(again)
        for key, _, error in again:
            if key in recorded:
                log.warning("retry course=%s id=%s attempt=%d error=%s", *key[:2], attempts[key[1]], error)
        for key in gave_up:
            if key in recorded:
                log.error("failed course=%s id=%s attempts=%d error=%s", *key[:2], attempts[key[1]], refused[key[1]])
        dropped = report_dropped(store, "reminders", [c for c in sent if c not in recorded], held.tried)
        counts = [sum(c in recorded for c in group) for group in (done, skipped, [a[0] for a in again], gave_up)]
        log.info(
            "batch delivered=%d skipped=%d retried=%d failed=%d dropped=%d first=%s last=%s",
            *counts, dropped, rows[0]["id"], rows[-1]["id"],
        )  # fmt: skip
        kinds = {row["id"]: row["kind"] for row in rows}
        for outcome, group in zip(("delivered", "skipped", "retried", "failed"),
                                  (done, skipped, [a[0] for a in again], gave_up), strict=True):  # fmt: skip
            result.by_kind.update((outcome, kinds[c[1]]) for c in group if c in recorded)
        result.delivered += counts[0]
        result.skipped += counts[1]
        result.retried += counts[2]
        result.failed += counts[3]
        result.dropped += dropped
        result.batches += 1
    if not (stop and stop()):
        dispatch_digests(store, now, sinks, result, lease, clock)
    return result


def report_dropped(store: SqlStore, table: str, lost: Sequence[Claim], tried: set[str]) -> int:
    """Log each claimed item this run did not record, and why: ``cancelled`` meanwhile, or
    ``lease_lost`` (another run claimed it since); ``sent`` says whether an attempt went ahead."""
    if not lost:
        return 0
    status = store.statuses(table, [c[:-1] for c in lost])
    for claim in lost:
        reason = "cancelled" if status.get(claim[:-1]) == "cancelled" else "lease_lost"
        where = f"course={claim[0]} " if table == "reminders" else ""
        sent = "yes" if claim[-2] in tried else "no"
        log.warning("not recorded %sid=%s reason=%s sent=%s", where, claim[-2], reason, sent)
    return len(lost)


def dispatch_digests(
    store: SqlStore,
    now: datetime,
    sinks: Sequence[Sink],
    result: Dispatched,
    lease: timedelta = LEASE,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Emit the recorded digests due at ``now`` (see ``digests``)."""
    clock = clock or running_from(now)
    while rows := store.claim_digests(now, 50, lease, clock()):
        events = [digest_event(store, row, now) for row in rows]
        claims: dict[str, Claim] = {row["id"]: (row["id"], row["attempts"]) for row in rows}
        held = Lease(store, "digests", claims, clock, lease)
        refused = deliver(sinks, events, held.still_due)
        attempts = {row["id"]: row["attempts"] for row in rows}
        done, gave_up, again = settle(list(claims.values()), itemgetter(0), attempts, refused, now)
        recorded = store.finish_digests(now, done, gave_up) | store.retry_digests_later(again)
        for key, _, error in again:
            if key in recorded:
                log.warning("retry digest=%s attempt=%d error=%s", key[0], attempts[key[0]], error)
        for key in done:
            if key in recorded:
                log.info("digest id=%s delivered", key[0])
        result.dropped += report_dropped(store, "digests", [c for c in claims.values() if c not in recorded],
                                         held.tried)  # fmt: skip
        result.by_kind.update(("delivered", "digest") for c in done if c in recorded)
        result.by_kind.update(("retried", "digest") for c, _, _ in again if c in recorded)
        result.by_kind.update(("failed", "digest") for c in gave_up if c in recorded)
        result.digests += sum(c in recorded for c in done)
        result.failed += sum(c in recorded for c in gave_up)
        result.batches += 1


def digest_event(store: SqlStore, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A digest's output line (``{..., therapist, date, sessions, alerts}``)."""
    from .digests import digest_body

    common = {"id": row["id"], "type": "digest", "kind": "digest", "course": None, "due": iso_utc(row["due"])}
    extra = {"emitted_at": emitted(now), "late": now - row["due"] > LATE_AFTER, "audience": "therapist",
             "session": None}  # fmt: skip
    return {**common, **extra, **digest_body(store, row)}


def preview(
    store: SqlStore, now: datetime, new_digests: Sequence[dict[str, Any]], check: Check | None = None
) -> tuple[list[dict[str, Any]], int]:
    """What ``dispatch_due`` at ``now`` would send, and how many reminders it would skip by the
    late policy, read only (``ipt daemon --dry-run``): nothing is claimed, counted or recorded.
    ``new_digests`` are the digest rows a run would record first (``digests.unrecorded_digests``);
    ``check`` (read only too) leaves out the rows a run would not send (``RulesWatch.preview``:
    those a replan under the rules in force would cancel or move)."""
    events: list[dict[str, Any]] = []
    skipped = 0
    rows = store.due_reminders(now)
    if check is not None and rows:
        rows = check(rows, now)
    for row in rows:
        if too_late(row, now):
            skipped += 1
        else:
            events.append(event_of(row, now))
    digests = {row["id"]: row for row in [*store.due_digests(now), *new_digests] if row["due"] <= now}
    for row in sorted(digests.values(), key=lambda row: (row["due"], row["id"])):
        events.append(digest_event(store, row, now))
    return events, skipped
