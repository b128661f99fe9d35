"""The daemon's promises about processes, with real ones: two runs and a slow receiver, a
run stopped (SIGSTOP) past its lease, a session cancelled between a webhook's tries, the
database file replaced or deleted under a running daemon, and a database another process
keeps locked. Daemons on the real clock get a copy of the rules with digests off."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

from ipt_workflow import Workflow
from ipt_workflow.testing import seed_due
from tests.integration.test_daemon_reliability import clinic_rules
from tests.sinkfiles import lines, wait_for

from .receiver import Receiver

IPT = [str(Path(sys.executable).parent / "ipt")]
T0 = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """A copy of the rules with digests off and no calendar (the real clock's date is no matter)."""
    return clinic_rules(tmp_path, "[72h, 24h]", calendar=False)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


class Daemon:
    """A long-running ``ipt daemon`` whose log is a file (a full pipe would block it)."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / f"daemon-{time.monotonic_ns()}.log"
        self.log: IO[str] = self.log_path.open("w")
        self.proc = subprocess.Popen([*IPT, *args], stdout=self.log, stderr=self.log)

    def text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.log.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.log.close()


# ------------------------------------------------------------ 1. cancelled while being retried


def test_the_daemon_neither_sends_nor_counts_a_reminder_cancelled_between_tries(
    tmp_path: Path, rules: Path, receivers: list[Receiver]
) -> None:
    db = str(tmp_path / "x.sqlite")
    now = datetime(2026, 2, 27, 10, 0, tzinfo=UTC)  # session 1's 72-hour reminder is due, alone
    with Workflow(db, rules=rules, clock=lambda: T0) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1")
        (rid,) = [r.id for r in wf.reminders(until=now + timedelta(seconds=1))]

    def answer(key: str, n: int) -> int:
        if n == 1:  # the cancellation commits while the first try is being answered
            with Workflow(db, rules=rules, clock=lambda: now) as other:
                other.apply("c-1", "cancel_session", {"number": 1})
            return 500
        return 200

    receiver = Receiver(answer)
    receivers.append(receiver)
    command = [*IPT, "--db", db, "--rules", str(rules), "daemon", "--once", "--now", now.isoformat()]
    done = subprocess.run([*command, "--sink", f"webhook:{receiver.url}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # rid is tried once; the client's session_cancelled notice (SPEC §9), due at the
    # cancellation, goes out in the same run and is the one delivery counted
    assert [k for k in receiver.keys if k == rid] == [rid]
    (notice,) = [k for k in receiver.keys if k != rid]
    assert done.stderr.splitlines()[-1].startswith("delivered 1,")
    assert f"id={rid}" in done.stderr and "reason=cancelled" in done.stderr
    with Workflow(db, rules=rules) as wf:
        assert [r.status for r in wf.reminders() if r.id == rid] == ["cancelled"]
        assert [(r.kind, r.status) for r in wf.reminders() if r.id == notice] == [("session_cancelled", "delivered")]


# ------------------------------------------------------------ 2. leases


def once(db: str, rules: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    command = [*IPT, "--db", db, "--rules", str(rules), "daemon", "--once", "--lease", "1", *extra]
    return subprocess.Popen([*command, "--sink", f"webhook:{url}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_runs_and_a_slow_receiver_post_each_id_once(tmp_path: Path, rules: Path, receivers: list[Receiver]) -> None:
    """A 1 s lease, 6 due alerts and a receiver that takes 0.6 s a request: the first run
    needs 3.6 s. A second run starts 1.2 s in, after the first lease would have run out; it
    claims nothing, because the first run renews its lease as it delivers."""
    db = str(tmp_path / "x.sqlite")
    now = datetime.now(UTC)
    ids = seed_due(db, 6, now - timedelta(minutes=10), now - timedelta(minutes=1))
    receiver = Receiver(delay=0.6)
    receivers.append(receiver)
    first = once(db, rules, receiver.url)
    assert wait_for(lambda: len(receiver.keys) >= 3, 20)
    second = once(db, rules, receiver.url)
    outputs = [p.communicate(timeout=60) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert Counter(receiver.keys) == Counter(ids), "an id was POSTed twice or never"
    assert outputs[0][1].splitlines()[-1].startswith("delivered 6,"), outputs[0][1]
    assert outputs[1][1].splitlines()[-1].startswith("delivered 0,"), outputs[1][1]


def test_a_run_stopped_past_its_lease_sends_nothing_more_when_it_resumes(
    tmp_path: Path, rules: Path, receivers: list[Receiver]
) -> None:
    """Run A is stopped (SIGSTOP) while its second POST is answered, for longer than its 1 s
    lease; run B claims the 6 alerts and delivers them. Resumed, A sends none of the other
    four and records nothing (B's record stands). Only the two ids A had in flight reach the
    receiver twice, as at-least-once allows."""
    db = str(tmp_path / "x.sqlite")
    now = datetime.now(UTC)
    ids = seed_due(db, 6, now - timedelta(minutes=10), now - timedelta(minutes=1))
    stopped = threading.Event()
    pid: list[int] = []

    def answer(key: str, n: int) -> int:
        if n == 2:
            os.kill(pid[0], signal.SIGSTOP)
            stopped.set()
        return 200

    receiver = Receiver(answer)
    receivers.append(receiver)
    a = once(db, rules, receiver.url)
    pid.append(a.pid)
    try:
        assert stopped.wait(20)
        time.sleep(1.5)  # A's lease runs out
        b = once(db, rules, receiver.url)
        _, b_err = b.communicate(timeout=60)
        assert b.returncode == 0, b_err
        assert b_err.splitlines()[-1].startswith("delivered 6,"), b_err
    finally:
        os.kill(a.pid, signal.SIGCONT)
    _, a_err = a.communicate(timeout=60)
    assert a.returncode == 0, a_err
    assert receiver.keys == [*ids[:2], *ids], "A went on sending after it lost its lease"
    assert a_err.splitlines()[-1].startswith("delivered 0,"), a_err
    assert "reason=lease_lost" in a_err
    with Workflow(db) as wf:
        assert len(wf.reminders(status="delivered")) == 6


# ------------------------------------------------------------ 3. the database file replaced or deleted


def alert_course(db: Path, rules: Path, course_id: str) -> None:
    start = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()  # nothing of its own is due
    with Workflow(str(db), rules=rules) as wf:
        wf.create_course(client=f"CL-{course_id}", start=start, time="10:00", tz="UTC", course_id=course_id)


def test_a_database_file_replaced_under_the_running_daemon_is_reopened(
    tmp_path: Path, rules: Path, daemons: list[Daemon]
) -> None:
    """A new database is moved into place while the daemon runs (a restore from a backup);
    an alert recorded in the new one goes out."""
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    alert_course(db, rules, "old")
    daemon = Daemon(tmp_path, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "0.2",
                    "--sink", f"file:{out}")  # fmt: skip
    daemons.append(daemon)
    assert wait_for(lambda: "started" in daemon.text(), 20)
    restored = tmp_path / "restored.sqlite"
    alert_course(restored, rules, "new")
    os.replace(restored, db)
    with Workflow(str(db), rules=rules) as wf:
        wf.apply("new", "record_measure", {"instrument": "phq9", "score": 9, "item9": 1})
    assert wait_for(lambda: [(e["course"], e["kind"]) for e in lines(out)] == [("new", "safety_alert")], 20), (
        daemon.text()
    )
    assert "database file replaced" in daemon.text()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_a_database_file_deleted_under_the_running_daemon_stops_it_with_status_1(
    tmp_path: Path, rules: Path, daemons: list[Daemon]
) -> None:
    db = tmp_path / "x.sqlite"
    alert_course(db, rules, "old")
    daemon = Daemon(tmp_path, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "0.2")
    daemons.append(daemon)
    assert wait_for(lambda: "started" in daemon.text(), 20)
    db.unlink()
    assert wait_for(lambda: daemon.proc.poll() is not None, 20), daemon.text()
    assert daemon.proc.returncode == 1
    assert "database file deleted" in daemon.text() and "Traceback" not in daemon.text()
    assert not db.exists()  # not silently recreated empty


# ------------------------------------------------------------ 5. a database locked for long


def test_the_daemon_rides_out_a_locked_database_and_delivers_after(
    tmp_path: Path, rules: Path, daemons: list[Daemon]
) -> None:
    """Another process holds a write transaction; the daemon logs one line a sweep, keeps
    running, and delivers once the lock is released."""
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    now = datetime.now(UTC)
    ids = seed_due(str(db), 3, now - timedelta(minutes=3), now - timedelta(minutes=1))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        daemon = Daemon(tmp_path, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "0.3",
                        "--lock-wait", "0.5", "--sink", f"file:{out}")  # fmt: skip
        daemons.append(daemon)
        assert wait_for(lambda: daemon.text().count("database locked") >= 2, 20), daemon.text()
        assert daemon.proc.poll() is None and lines(out) == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert wait_for(lambda: sorted(e["id"] for e in lines(out)) == ids, 20), daemon.text()
    assert daemon.stop() == 0
    log = daemon.text()
    assert "Traceback" not in log
    assert all("waited=0.5s" in line for line in log.splitlines() if "database locked" in line)


def test_the_daemon_starts_while_another_process_holds_the_database_exclusively(
    tmp_path: Path, rules: Path, daemons: list[Daemon]
) -> None:
    """An import holding the file exclusively (rollback journal: even reads wait) when the
    daemon starts: it does not die; it delivers once the import is done."""
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    now = datetime.now(UTC)
    ids = seed_due(str(db), 3, now - timedelta(minutes=3), now - timedelta(minutes=1))
    holder = sqlite3.connect(db, isolation_level=None)
    assert holder.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        daemon = Daemon(tmp_path, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "0.3",
                        "--lock-wait", "0.5", "--sink", f"file:{out}")  # fmt: skip
        daemons.append(daemon)
        assert wait_for(lambda: daemon.text().count("database locked") >= 2, 20), daemon.text()
        assert daemon.proc.poll() is None
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert wait_for(lambda: sorted(e["id"] for e in lines(out)) == ids, 20), daemon.text()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()
