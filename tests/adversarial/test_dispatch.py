"""What a hostile or careless user did to the dispatcher, in process and through `ipt daemon
--once`: a session cancelled while its reminder was being retried, a batch slower than its
lease, a run that lost its lease, `--now` taken for a what-if, a database locked for longer
than the daemon waits, and sweep intervals that are not numbers of seconds.

The long-running daemon as a real process (killed, stopped, two at once, its database file
replaced) is in test_dispatch_processes.py."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ipt_workflow import Workflow
from ipt_workflow.delivery.dispatch import LEASE, dispatch_due
from ipt_workflow.delivery.sinks import CallableSink, WebhookSink
from ipt_workflow.testing import seed_due
from tests.e2e import conftest as e2e
from tests.e2e.conftest import RunIpt, error_line, usage_error
from tests.integration import conftest as stores
from tests.integration.conftest import sqlalchemy_url

from .receiver import Receiver

# Fixtures of other folders: the CLI in a subprocess, and a database on SQLite and PostgreSQL.
ipt, db_url = e2e.ipt, stores.db_url
postgres_url, postgres_unreachable = stores.postgres_url, stores.postgres_unreachable

T0 = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)
T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday: the 08:00 digest has fired


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every reminder and digest row, in key order."""
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return {
                table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
                for table in ("ipt_reminders", "ipt_digests")
            }
    finally:
        engine.dispose()


def status_of(url: str, rid: str) -> str:
    with Workflow(url) as wf:
        return next(r.status for r in wf.reminders() if r.id == rid)


# ------------------------------------------------------------ 1. cancelled while being retried


def test_a_session_cancelled_while_its_reminder_is_retried_is_not_sent(db_url: str, receivers: list[Receiver]) -> None:
    """The receiver refuses the first POST; before it answers, the session is cancelled (the
    transaction commits). The webhook's retry re-checks the reminder and does not send it;
    the run does not count it delivered."""
    with Workflow(db_url, clock=lambda: T0) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1")
        now = datetime(2026, 2, 27, 10, 0, tzinfo=UTC)  # session 1's 72-hour reminder is due, alone
        (rid,) = [r.id for r in wf.reminders(until=now + timedelta(seconds=1))]

    def answer(key: str, n: int) -> int:
        if n == 1:
            with Workflow(db_url, clock=lambda: now) as other:
                other.apply("c-1", "cancel_session", {"number": 1})
            return 500
        return 200

    receiver = Receiver(answer)
    receivers.append(receiver)
    with Workflow(db_url) as wf:
        sink = WebhookSink(receiver.url, tries=3, timeout=5)
        result = dispatch_due(wf.store, now, [sink])
        sink.close()
    # the first try only: no retry after the cancellation; the client's session_cancelled
    # notice (SPEC §9), due at the cancellation, goes out in the same run
    assert [k for k in receiver.keys if k == rid] == [rid]
    notices = [k for k in receiver.keys if k != rid]
    assert len(notices) == 1 and status_of(db_url, notices[0]) == "delivered"
    assert (result.delivered, result.retried, result.failed) == (1, 0, 0)
    assert result.dropped == 1
    assert status_of(db_url, rid) == "cancelled"


# ------------------------------------------------------------ 2. leases


def test_a_batch_slower_than_its_lease_keeps_it_and_no_id_is_posted_twice(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    """A 2 s lease and a receiver that takes 0.5 s a request: the batch of 8 takes 4 s.
    A second run starting after the first lease would have run out claims nothing, because
    the first run renews its lease while it delivers. (A 0.6 s lease was too short for a
    loaded 2-core machine: a stall of the first run's thread past it is a real expiry.)"""
    db = str(tmp_path / "x.sqlite")
    ids = seed_due(db, 8, T - timedelta(minutes=8), T - timedelta(minutes=1))
    receiver = Receiver(delay=0.5)
    receivers.append(receiver)
    lease = timedelta(seconds=2)
    results = {}
    start = time.monotonic()

    def run(name: str, now: datetime) -> None:
        with Workflow(db) as wf:
            sink = WebhookSink(receiver.url, tries=1, timeout=5)
            results[name] = dispatch_due(wf.store, now, [sink], lease=lease)
            sink.close()

    first = threading.Thread(target=run, args=("first", T))
    first.start()
    deadline = time.monotonic() + 10
    while len(receiver.keys) < 5 and time.monotonic() < deadline:  # 2 s in: past the first lease
        time.sleep(0.01)
    run("second", T + timedelta(seconds=time.monotonic() - start))
    first.join(30)
    assert Counter(receiver.keys) == Counter(ids), "an id was POSTed twice or never"
    assert (results["first"].delivered, results["second"].delivered) == (8, 0)
    with Workflow(db) as wf:
        assert len(wf.reminders(status="delivered")) == 8


def test_a_run_that_lost_its_lease_sends_and_records_nothing_more(db_url: str) -> None:
    """Run 1 stalls on its first event past its lease; run 2 claims the batch and delivers
    it. When run 1 goes on it sends none of the rest and records nothing: run 2's record
    stands, and run 1 counts nothing delivered."""
    ids = seed_due(db_url, 6, T - timedelta(minutes=6), T - timedelta(minutes=1))
    later = T + LEASE + timedelta(seconds=1)
    first: list[str] = []
    second: list[str] = []
    results = {}

    def stall(event: dict[str, Any]) -> None:
        first.append(str(event["id"]))
        if len(first) == 1:  # run 1 is "stopped" here, past its lease; run 2 comes
            with Workflow(db_url) as other:
                results["second"] = dispatch_due(other.store, later, [CallableSink(lambda e: second.append(e["id"]))])

    with Workflow(db_url) as wf:
        results["first"] = dispatch_due(wf.store, T, [CallableSink(stall)])
        delivered = {r.id: r for r in wf.reminders(status="delivered")}
    assert first == ids[:1]  # the event in flight when it stalled, and no other
    assert second == ids
    assert (results["second"].delivered, results["first"].delivered, results["first"].dropped) == (6, 0, 6)
    assert sorted(delivered) == sorted(ids)
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with engine.connect() as conn:
            attempts = conn.execute(text("SELECT DISTINCT attempts FROM ipt_reminders WHERE rule = 'seed'")).all()
    finally:
        engine.dispose()
    assert attempts == [(2,)]  # two claims each, one delivery recorded


# ------------------------------------------------------------ 4. --dry-run


def test_dry_run_prints_what_would_go_out_and_records_nothing(ipt: RunIpt, tmp_path: Path) -> None:
    db = str(tmp_path / "x.sqlite")
    measured = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = [T0]
    with Workflow(db, clock=lambda: clock[0]) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1")
        clock[0] = measured  # an event is recorded when it happens (at most a day ahead of now)
        wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 9, "item9": 1}, at=measured)
    before = rows(db)
    dry = ipt("--db", db, "daemon", "--once", "--dry-run", "--now", T.isoformat())
    assert dry.returncode == 0, dry.stderr
    assert rows(db) == before  # no status, attempt, lease or digest row changed
    assert "dry run" in dry.stderr and "Traceback" not in dry.stderr
    would = [json.loads(line) for line in dry.stdout.splitlines()]
    assert sorted(e["kind"] for e in would) == [
        "digest", "measure_due", "safety_alert", "session_reminder", "session_reminder",
    ]  # fmt: skip
    real = ipt("--db", db, "daemon", "--once", "--now", T.isoformat())
    assert real.returncode == 0, real.stderr
    sent = [json.loads(line) for line in real.stdout.splitlines()]
    assert [e for e in sent if e["type"] != "digest"] == [e for e in would if e["type"] != "digest"]
    assert [e["id"] for e in sent] == [e["id"] for e in would]  # the digest too (its alerts are delivered now)
    assert rows(db) != before


def test_dry_run_is_for_once_and_stdout_only(ipt: RunIpt, tmp_path: Path) -> None:
    db = str(tmp_path / "x.sqlite")
    out = tmp_path / "out.jsonl"
    assert "--dry-run" in usage_error(ipt("--db", db, "daemon", "--dry-run", "--now", T.isoformat()))
    assert "--dry-run" in usage_error(ipt("--db", db, "daemon", "--once", "--dry-run", "--sink", f"file:{out}"))
    assert not out.exists()


# ------------------------------------------------------------ 5. a database locked for long


def test_once_waits_for_a_locked_database_then_fails_with_one_line(ipt: RunIpt, tmp_path: Path) -> None:
    """Another process holds a write transaction (a big import): `--once` waits `--lock-wait`
    seconds, then exits 1 with one error line; nothing was claimed."""
    db = str(tmp_path / "x.sqlite")
    seed_due(db, 3, T - timedelta(minutes=3), T - timedelta(minutes=1))
    before = rows(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        result = ipt("--db", db, "daemon", "--once", "--lock-wait", "1", "--now", T.isoformat())
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = error_line(result)
    assert "locked" in line and "1 s" in line, line
    assert waited >= 1
    assert rows(db) == before


# ------------------------------------------------------------ 6. sweep intervals


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e308", "-1"])
def test_sweep_and_lock_wait_must_be_seconds(ipt: RunIpt, tmp_path: Path, value: str) -> None:
    db = str(tmp_path / "x.sqlite")
    assert "--sweep" in usage_error(ipt("--db", db, "daemon", "--sweep", value))
    assert "--lock-wait" in usage_error(ipt("--db", db, "daemon", "--once", "--lock-wait", value))
    assert "--sweep" in usage_error(ipt("--db", db, "daemon", "--sweep", "0"))
    assert not Path(db).exists()
