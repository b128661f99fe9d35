"""The daemon's guarantees (SPEC §8) shown with real processes: killed with SIGKILL at random
points, restarted, several at once on one PostgreSQL database, down for an hour, and racing a
cancellation. Every id reaches the sinks exactly once or is recorded skipped by the policy."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from ipt_workflow import Workflow, testing
from ipt_workflow.delivery.dispatch import LEASE
from ipt_workflow.testing import seed_due
from tests.rulesets import clinic_rules
from tests.sinkfiles import lines, wait_for

from .conftest import sqlalchemy_url

IPT = [str(Path(sys.executable).parent / "ipt")]
T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def statuses(url: str) -> Counter[str]:
    engine: Engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return Counter(dict(conn.execute(text("SELECT status, count(*) FROM ipt_reminders GROUP BY status")).all()))
    finally:
        engine.dispose()


def test_sigkill_fifty_times_while_draining_5000_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Fifty runs of the long-running daemon, each killed with SIGKILL a random moment after
    its first batch reached the file (batches of 5, so every kill lands mid-drain: while
    writing, fsyncing, recording or claiming). A killed run's claims stay leased for
    ``LEASE``; each run's ``--now`` is one lease later, as the wall clock would be."""
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    ids = seed_due(str(db), 5000, T - timedelta(hours=1), T)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    now = T
    kills = 0
    for _ in range(50):
        now += LEASE + timedelta(seconds=1)
        cmd = [*IPT, "--db", str(db), "daemon", "--batch", "5", "--now", now.isoformat(), "--sink", f"file:{out}"]
        size = out.stat().st_size if out.exists() else 0
        with (tmp_path / "daemon.log").open("a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log)  # the long-running daemon
            grown = wait_for(lambda size=size: out.exists() and out.stat().st_size > size, 30, step=0.002)
            assert grown, f"seed {seed}: no line"
            time.sleep(rng.uniform(0, 0.01))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        kills += proc.returncode == -signal.SIGKILL
        left = len(ids) - sum(e["type"] != "digest" for e in lines(out))
        assert left > 0, f"seed {seed}: the drain ended before the kills"
    assert kills == 50, f"seed {seed}: only {kills} runs were killed"
    last = (now + 2 * LEASE).isoformat()
    finish = [*IPT, "--db", str(db), "daemon", "--once", "--now", last, "--sink", f"file:{out}"]
    done = subprocess.run(finish, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    everything = [e["id"] for e in lines(out)]  # the seeded reminders, and a therapist digest
    duplicates = [i for i, n in Counter(everything).items() if n > 1]
    assert not duplicates, f"seed {seed}: written twice: {duplicates[:5]}"
    written = [e["id"] for e in lines(out) if e["type"] != "digest"]
    assert sorted(written) == sorted(ids), f"seed {seed}: {len(set(ids) - set(written))} never written"
    assert statuses(str(db))["delivered"] == 5000


@pytest.mark.external_service
@pytest.mark.parametrize("replicas", [2, 3])
def test_daemons_sharing_one_postgresql_database_deliver_each_of_20000_once(
    postgres_url: str, tmp_path: Path, replicas: int
) -> None:
    """Real clock; the rules have no digests (they would add one id per therapist after
    08:00 on a weekday), so the files hold exactly the seeded reminders at any hour."""
    now = datetime.now(UTC)
    ids = seed_due(postgres_url, 20_000, now - timedelta(hours=1), now - timedelta(seconds=1))
    outs = [tmp_path / f"out{i}.jsonl" for i in range(replicas)]
    logs = [(tmp_path / f"daemon{i}.log").open("w") for i in range(replicas)]
    rules = clinic_rules(tmp_path)
    command = [*IPT, "--db", postgres_url, "--rules", str(rules), "daemon", "--sweep", "0.5"]
    procs = [
        subprocess.Popen([*command, "--sink", f"file:{out}"], stdout=log, stderr=log)
        for out, log in zip(outs, logs, strict=True)
    ]
    try:
        assert wait_for(lambda: statuses(postgres_url)["delivered"] == len(ids), 180), statuses(postgres_url)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in zip(procs, logs, strict=True):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)
                time.sleep(1)
                proc.kill()
                pytest.fail(f"a daemon did not stop:\n{Path(log.name).read_text()[-8000:]}")
            finally:
                log.close()
    assert [p.returncode for p in procs] == [0] * replicas
    per_daemon = [[e["id"] for e in lines(out)] for out in outs]
    written = [i for ids_ in per_daemon for i in ids_]
    assert len(written) == len(set(written)) == len(ids), "an id was delivered by two daemons"
    assert set(written) == set(ids)
    for log in logs:
        assert "Traceback" not in Path(log.name).read_text()


def test_an_hour_of_downtime_skips_past_sessions_sends_alerts_late_and_drops_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """The daemon ran until 09:00 and comes back at 10:30 (UTC, Europe/London in winter).
    Reminders 30 minutes before sessions at 09:20 and 10:00 (sessions now started) are
    skipped; the one for 10:45 goes out late and the one for 11:00 on time; an alert raised at
    09:40 goes out late, and so does the attendance_unrecorded alert of the 09:20 session (due
    15 minutes after its end); nothing due by 10:30 is left pending."""
    out = tmp_path / "out.jsonl"
    rules = clinic_rules(tmp_path, "[30m]")
    day = "2026-03-03"
    with Workflow(db_url, rules=rules, clock=lambda: T - timedelta(days=2)) as wf:
        for cid, slot in (("c-0920", "09:20"), ("c-1000", "10:00"), ("c-1045", "10:45"), ("c-1100", "11:00")):
            wf.create_course(client=f"CL-{cid}", start=day, time=slot, tz="Europe/London", course_id=cid)
    base = [*IPT, "--db", db_url, "--rules", str(rules), "daemon"]

    def run_until(now: str) -> None:
        done = subprocess.run([*base, "--once", "--now", now, "--sink", f"file:{out}"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr

    run_until(f"{day}T08:45:00+00:00")  # the last run before the outage
    before = len(lines(out))
    assert {e["kind"] for e in lines(out)} == {"measure_due"}  # due a day before each first session
    with Workflow(db_url, rules=rules, clock=lambda: datetime(2026, 3, 3, 9, 40, tzinfo=UTC)) as wf:
        wf.apply("c-1100", "record_measure", {"instrument": "phq9", "score": 12, "item9": 2})  # during the outage
    # Back at 10:30, as the long-running daemon this time (its --now is a fixed clock).
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([*base, "--now", f"{day}T10:30:00+00:00", "--sink", f"file:{out}"], stdout=log, stderr=log)
    try:
        assert wait_for(lambda: len(lines(out)) == before + 4, 30), lines(out)
        time.sleep(0.5)  # nothing more comes
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert proc.returncode == 0
    got = {(e["course"], e["kind"]): e for e in lines(out)[before:]}
    assert set(got) == {
        ("c-1045", "session_reminder"), ("c-1100", "session_reminder"), ("c-1100", "safety_alert"),
        ("c-0920", "attendance_unrecorded"),  # the 09:20 session ended at 10:10 unrecorded: due 10:25
    }  # fmt: skip
    assert got[("c-0920", "attendance_unrecorded")]["late"] is True
    assert got[("c-1045", "session_reminder")]["late"] is True
    assert got[("c-1100", "session_reminder")]["late"] is False
    assert got[("c-1100", "safety_alert")]["late"] is True
    assert got[("c-1100", "safety_alert")]["due"] == "2026-03-03T09:40:00+00:00"
    with Workflow(db_url, rules=rules) as wf:
        skipped = wf.reminders(status="skipped")
        assert sorted((r.course, r.session) for r in skipped) == [("c-0920", 1), ("c-1000", 1)]
        until = datetime(2026, 3, 3, 10, 30, tzinfo=UTC)
        assert [r for r in wf.reminders(until=until + timedelta(seconds=1), status="pending")] == []
    listed = subprocess.run([*IPT, "--db", db_url, "reminders", "--status", "skipped", "--json"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert {r["course"] for r in json.loads(listed.stdout)} == {"c-0920", "c-1000"}


def test_a_running_daemon_never_emits_the_reminder_of_a_session_cancelled_just_before(tmp_path: Path) -> None:
    """Real clock. Two courses have a session at the same minute; their 30-minute reminders
    fall due at the next minute boundary at least 8 s away. The daemon is running and armed
    for that instant; 3 s before it, one session is cancelled. The other reminder goes out on
    time; the cancelled one never does."""
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    rules = clinic_rules(tmp_path, "[30m]", calendar=False)
    now = datetime.now(UTC)
    due = (now + timedelta(seconds=68)).replace(second=0, microsecond=0)
    session = due + timedelta(minutes=30)
    with Workflow(str(db), rules=rules, clock=lambda: now.replace(microsecond=0)) as wf:
        for cid in ("keep", "cancel"):
            wf.create_course(client=f"CL-{cid}", start=session.date().isoformat(), time=f"{session:%H:%M}",
                             tz="UTC", course_id=cid)  # fmt: skip
        old = {r.session: r.id for r in wf.reminders(course="cancel") if r.kind == "session_reminder"}
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([*IPT, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "30",
                             "--sink", f"file:{out}"], stdout=log, stderr=log)  # fmt: skip
    try:
        time.sleep(max(0.0, (due - timedelta(seconds=3) - datetime.now(UTC)).total_seconds()))
        with Workflow(str(db), rules=rules) as wf:
            wf.apply("cancel", "cancel_session", {"number": 1})
            moved = {r.session: r.id for r in wf.reminders(course="cancel", status="pending")
                     if r.kind == "session_reminder"}  # fmt: skip
        assert wait_for(lambda: any(e["kind"] == "session_reminder" for e in lines(out)), 10)
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    emitted = [e for e in lines(out) if e["kind"] == "session_reminder"]  # measure_due went out at start
    assert [(e["course"], e["session"]) for e in emitted] == [("keep", 1)]
    lag = datetime.fromisoformat(emitted[0]["emitted_at"]) - due
    assert timedelta(0) <= lag < timedelta(seconds=5), lag  # the armed wake-up, not the 30 s sweep
    assert old[1] not in moved
    with Workflow(str(db), rules=rules) as wf:
        assert old[1] in {r.id for r in wf.reminders(course="cancel", status="cancelled")}


def test_a_running_daemon_never_emits_the_reminder_of_a_session_moved_just_before(tmp_path: Path) -> None:
    """Real clock, real processes. A session's 30-minute reminder falls due at the next minute
    boundary at least 25 s away; the daemon is running (it has sent what was due at start)
    and armed for that instant. Just before it, another process (``ipt course event …
    reschedule_session``) moves the session a day later. The old reminder never goes out; the
    client's ``session_moved`` notice does, once; the new reminder is not due yet."""
    db, out, log_path = tmp_path / "x.sqlite", tmp_path / "out.jsonl", tmp_path / "daemon.log"
    rules = testing.clinic_rules(tmp_path / "rules", "[30m]", calendar=False)  # no digests, no quiet hours
    now = datetime.now(UTC)
    due = (now + timedelta(seconds=85)).replace(second=0, microsecond=0)  # 25 to 85 s away
    session = due + timedelta(minutes=30)
    with Workflow(str(db), rules=rules, clock=lambda: now.replace(microsecond=0)) as wf:
        wf.create_course(client="CL-1", start=session.date().isoformat(), time=f"{session:%H:%M}", tz="UTC",
                         course_id="c-1")  # fmt: skip
        old = next(r for r in wf.reminders(course="c-1") if r.kind == "session_reminder" and r.session == 1)
    assert old.due == due
    log = log_path.open("w")
    proc = subprocess.Popen([*IPT, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "2",
                             "--sink", f"file:{out}"], stdout=log, stderr=log)  # fmt: skip
    later = session + timedelta(days=1)
    move = [*IPT, "--db", str(db), "--rules", str(rules), "course", "event", "c-1", "reschedule_session",
            "--data", json.dumps({"number": 1, "start": f"{later:%Y-%m-%dT%H:%M}"})]  # fmt: skip
    try:
        # started and armed: what was due at start (the PHQ-9 before session 1) went out
        assert wait_for(lambda: any(e["kind"] == "measure_due" for e in lines(out)), 40), log_path.read_text()
        # The move commits about 3 s before the reminder is due: the CLI is started 6 s
        # before, as a process takes a second or more to start on a loaded machine.
        time.sleep(max(0.0, (due - timedelta(seconds=6) - datetime.now(UTC)).total_seconds()))
        moved = subprocess.run(move, capture_output=True, text=True, timeout=60)
        committed = datetime.now(UTC)
        assert moved.returncode == 0, moved.stderr
        assert committed < due, f"the move committed {committed - due} after the reminder was due (machine too loaded)"
        assert wait_for(lambda: any(e["kind"] == "session_moved" for e in lines(out)), 30), log_path.read_text()
        # past the old due instant, with room for an armed wake-up and a sweep or two
        time.sleep(max(0.0, (due + timedelta(seconds=6) - datetime.now(UTC)).total_seconds()))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert proc.returncode == 0, log_path.read_text()
    emitted = lines(out)
    assert old.id not in {e["id"] for e in emitted}
    assert [(e["kind"], e["course"], e["session"]) for e in emitted] == [
        ("measure_due", "c-1", 1),
        ("session_moved", "c-1", 1),
    ]
    with Workflow(str(db), rules=rules) as wf:
        stored = {r.id: r for r in wf.reminders(course="c-1")}
    assert stored[old.id].status == "cancelled"
    new = [r for r in stored.values() if r.kind == "session_reminder" and r.session == 1 and r.status == "pending"]
    assert [r.due for r in new] == [later - timedelta(minutes=30)]


def test_a_moved_session_gets_a_new_reminder_and_the_old_one_never_goes_out(db_url: str, tmp_path: Path) -> None:
    """A pause over two weekly slots moves the later sessions: the reminder of session 2 at its
    old time is cancelled and never emitted, however late the daemon runs; the moved session's
    reminder goes out at its new instant."""
    out = tmp_path / "out.jsonl"
    rules = clinic_rules(tmp_path, "[24h]")
    now = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]
    with Workflow(db_url, rules=rules, clock=lambda: now[-1]) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1")
        before = {r.session: r for r in wf.reminders(course="c-1") if r.kind == "session_reminder"}
        for event, at in (("hold_session", datetime(2026, 3, 2, 10, 50, tzinfo=UTC)),
                          ("pause", datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),
                          ("resume", datetime(2026, 3, 20, 9, 0, tzinfo=UTC))):  # fmt: skip
            now.append(at)  # recorded as it happens
            wf.apply("c-1", event, at=at)
        after = {r.session: r for r in wf.reminders(course="c-1", status="pending") if r.kind == "session_reminder"}
    assert after[2].due > before[2].due and after[2].id != before[2].id
    once = [*IPT, "--db", db_url, "--rules", str(rules), "daemon", "--once", "--sink", f"file:{out}", "--now"]
    subprocess.run([*once, (after[2].due + timedelta(minutes=1)).isoformat()], check=True, capture_output=True)
    emitted = {e["id"]: e for e in lines(out)}
    assert before[2].id not in emitted
    assert emitted[after[2].id]["session"] == 2 and emitted[after[2].id]["late"] is False


@pytest.mark.external_service
def test_on_postgresql_a_change_wakes_the_daemon_at_once(postgres_url: str, tmp_path: Path) -> None:
    """The sweep is a minute apart; an alert recorded by another process goes out within
    seconds because the change is notified (LISTEN/NOTIFY) and the daemon re-arms. Real
    clock; the rules have no digests and no calendar, so the hour and date change nothing."""
    out, log_path = tmp_path / "out.jsonl", tmp_path / "daemon.log"
    rules = clinic_rules(tmp_path, calendar=False)
    start = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    with Workflow(postgres_url, rules=rules) as wf:
        wf.create_course(client="CL-1", start=start, time="10:00", tz="Europe/London", course_id="c-1")
    log = log_path.open("w")
    proc = subprocess.Popen([*IPT, "--db", postgres_url, "--rules", str(rules), "daemon", "--sweep", "60",
                             "--sink", f"file:{out}"], stdout=log, stderr=log)  # fmt: skip
    try:
        assert wait_for(lambda: "listening" in log_path.read_text(), 15)
        time.sleep(1.5)  # the first sweep came and went
        with Workflow(postgres_url, rules=rules) as wf:
            wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 9, "item9": 1})
        recorded = time.monotonic()
        assert wait_for(lambda: any(e["kind"] == "safety_alert" for e in lines(out)), 20)
        assert time.monotonic() - recorded < 10  # far sooner than the 60 s sweep
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert proc.returncode == 0


def test_sigterm_mid_drain_finishes_the_batch_in_flight_and_exits_0(tmp_path: Path) -> None:
    """100,000 due reminders take seconds to drain; SIGTERM once the first lines are written.
    The daemon stops after its current batch: what is in the file is exactly what is recorded
    delivered, the rest stays pending for the next run, and the exit status is 0."""
    db, out = tmp_path / "x.sqlite", tmp_path / "out.jsonl"
    seed_due(str(db), 100_000, T - timedelta(hours=1), T)
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([*IPT, "--db", str(db), "daemon", "--now", T.isoformat(), "--sink", f"file:{out}"],
                            stdout=log, stderr=log)  # fmt: skip
    try:
        assert wait_for(lambda: out.exists() and out.stat().st_size > 0, 30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()
    written = [e["id"] for e in lines(out)]
    counts = statuses(str(db))
    assert len(written) == len(set(written)) == counts["delivered"]
    assert 0 < counts["delivered"] < 100_000
    assert "stopped" in (tmp_path / "daemon.log").read_text()


def test_a_running_daemon_never_emits_a_members_reminder_of_a_group_session_cancelled_just_before(
    tmp_path: Path,
) -> None:
    """Real clock, real processes. A group of three has its first session at a minute whose
    30-minute client reminders fall due at the next minute boundary at least 25 s away; the
    daemon is running and armed. About 3 s before they are due, another process (``ipt group
    event G1 cancel_session``) cancels that group session for everyone. No member gets the
    old reminder; each is told of the cancellation once."""
    db, out, log_path = tmp_path / "x.sqlite", tmp_path / "out.jsonl", tmp_path / "daemon.log"
    rules = testing.clinic_rules(tmp_path / "rules", "[30m]", calendar=False)  # no digests, no quiet hours
    now = datetime.now(UTC)
    due = (now + timedelta(seconds=85)).replace(second=0, microsecond=0)  # 25 to 85 s away
    session = due + timedelta(minutes=30)
    members = ("m1", "m2", "m3")
    with Workflow(str(db), rules=rules, clock=lambda: now.replace(microsecond=0)) as wf:
        wf.create_group(protocol="ipt-g-8", therapist="T-1", start=session.date().isoformat(),
                        time=f"{session:%H:%M}", tz="UTC", group_id="G1", min=1, max=8)  # fmt: skip
        for i, m in enumerate(members):  # pre-group sessions held days ago: nothing of theirs is due now
            pre = (now - timedelta(days=3, hours=i * 2)).replace(second=0, microsecond=0)
            wf.add_member("G1", client=f"CL-{m}", course_id=m, pre=[pre.isoformat()])
        old = {m: next(r for r in wf.reminders(course=m) if r.kind == "session_reminder" and r.session == 2)
               for m in members}  # fmt: skip
    assert {r.due for r in old.values()} == {due}  # member session 2 is group session 1
    log = log_path.open("w")
    proc = subprocess.Popen([*IPT, "--db", str(db), "--rules", str(rules), "daemon", "--sweep", "2",
                             "--sink", f"file:{out}"], stdout=log, stderr=log)  # fmt: skip
    cancel = [*IPT, "--db", str(db), "--rules", str(rules), "group", "event", "G1", "cancel_session"]
    try:
        assert wait_for(lambda: (tmp_path / "daemon.log").stat().st_size > 0 or out.exists(), 40)
        time.sleep(max(0.0, (due - timedelta(seconds=6) - datetime.now(UTC)).total_seconds()))
        done = subprocess.run(cancel, capture_output=True, text=True, timeout=60)
        committed = datetime.now(UTC)
        assert done.returncode == 0, done.stderr
        assert committed < due, (
            f"the cancel committed {committed - due} after the reminders were due (machine too loaded)"
        )
        # past the old due instant, with room for an armed wake-up and a sweep or two
        time.sleep(max(0.0, (due + timedelta(seconds=6) - datetime.now(UTC)).total_seconds()))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert proc.returncode == 0, log_path.read_text()
    emitted = lines(out) if out.exists() else []
    assert not {r.id for r in old.values()} & {e["id"] for e in emitted}
    assert not [e for e in emitted if e["kind"] == "session_reminder" and e["session"] == 2]
    told = sorted(e["course"] for e in emitted if e["kind"] == "session_cancelled" and e["session"] == 2)
    assert told == list(members)  # each member told once
    with Workflow(str(db), rules=rules) as wf:
        for m in members:
            stored = {r.id: r for r in wf.reminders(course=m)}
            assert stored[old[m].id].status == "cancelled"
            assert next(s for s in wf.plan(m).sessions if s.number == 2).status.value == "cancelled"
