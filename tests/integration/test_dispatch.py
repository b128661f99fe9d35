"""`ipt daemon --once`: what is due goes out once, by the late policy of SPEC §8, to every
sink; a file sink never holds an id twice, even after a crash or with two runs at once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ipt_workflow import Workflow
from ipt_workflow.delivery.dispatch import LEASE, dispatch_due
from ipt_workflow.delivery.sinks import FileSink, sink_for
from tests.sinkfiles import lines

IPT = [str(Path(sys.executable).parent / "ipt")]
T0 = datetime(2026, 2, 20, 9, 0, tzinfo=UTC)


def course_with_alert(wf: Workflow, course_id: str = "c-1") -> None:
    wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id=course_id)
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    wf.clock = lambda: at  # recorded as it happens: an event is never dated ahead of now
    wf.apply(course_id, "record_measure", {"instrument": "phq9", "score": 9, "item9": 1}, at=at)


def test_due_reminders_go_out_once_with_the_late_policy(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with Workflow(db_url, clock=lambda: T0) as wf:
        course_with_alert(wf)
        now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # session 1 starts at 10:00 UTC
        sink = FileSink(out)
        result = dispatch_due(wf.store, now, [sink])
        sink.close()
        events = lines(out)
        assert result.delivered == 4 and result.skipped == 0
        kinds = sorted(e["kind"] for e in events)
        assert kinds == ["measure_due", "safety_alert", "session_reminder", "session_reminder"]
        alert = next(e for e in events if e["kind"] == "safety_alert")
        assert (alert["type"], alert["audience"], alert["late"]) == ("alert", "therapist", True)
        assert alert["due"] == "2026-03-01T12:00:00+00:00" and alert["emitted_at"] == "2026-03-02T09:00:00+00:00"
        assert {r.status for r in wf.reminders(until=now + timedelta(seconds=1))} == {"delivered"}

        again = FileSink(out)
        assert dispatch_due(wf.store, now, [again]).delivered == 0  # nothing twice
        again.close()
        # Ten days later session 2 (2026-03-09) has started: its client reminders are skipped.
        later = datetime(2026, 3, 9, 11, 0, tzinfo=UTC)
        third = sink_for(f"file:{out}")
        result = dispatch_due(wf.store, later, [third])
        third.close()
        assert result.skipped == 2
        skipped = [r for r in wf.reminders(status="skipped")]
        assert {r.session for r in skipped} == {2} and all(r.audience == "client" for r in skipped)
        assert len(lines(out)) == len({e["id"] for e in lines(out)}) == 4 + result.delivered


def test_a_withdrawn_course_emits_nothing_more(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with Workflow(db_url, clock=lambda: T0) as wf:
        wf.create_course(client="CL-1", start="2026-03-02", time="10:00", tz="Europe/London", course_id="c-1")
        wf.apply("c-1", "withdraw", at=T0 + timedelta(hours=1))
        sink = FileSink(out)
        assert dispatch_due(wf.store, datetime(2026, 6, 1, tzinfo=UTC), [sink]).delivered == 0
        sink.close()
        assert out.read_text() == ""


def test_after_a_crash_the_file_sink_neither_loses_nor_repeats(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with Workflow(db_url, clock=lambda: T0) as wf:
        course_with_alert(wf)
        now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        # A run wrote the batch and died before recording it; a second one died mid-line.
        rows = wf.store.claim_due(now, 10, LEASE)
        first = {"id": rows[0]["id"], "kind": rows[0]["kind"]}
        out.write_text(json.dumps(first) + "\n" + '{"id": "rem_cut sho')
        assert wf.store.claim_due(now, 10, LEASE) == []  # leased: another run leaves them alone
        sink = FileSink(out)
        result = dispatch_due(wf.store, now + LEASE + timedelta(seconds=1), [sink])  # the lease ran out
        sink.close()
        ids = [e["id"] for e in lines(out)]
        assert len(ids) == len(set(ids)) == 4
        assert result.delivered == 4  # all recorded delivered, the one already in the file too


def test_two_runs_at_once_emit_each_reminder_once(db_url: str, tmp_path: Path) -> None:
    with Workflow(db_url, clock=lambda: T0) as wf:
        for i in range(40):
            wf.create_course(client=f"CL-{i}", start="2026-03-02", time="10:00", tz="Europe/London", course_id=f"c-{i}")
        due = len(wf.reminders(until=datetime(2026, 5, 1, tzinfo=UTC)))
    now = "2026-04-30T23:59"  # everything due by May is out; sessions after 10:00 that day are not started
    procs = [
        subprocess.Popen(
            [*IPT, "--db", db_url, "daemon", "--once", "--now", now, "--sink", f"file:{tmp_path / name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a.jsonl", "b.jsonl")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ids = [e["id"] for name in ("a.jsonl", "b.jsonl") for e in lines(tmp_path / name)]
    with Workflow(db_url) as wf:
        skipped = len(wf.reminders(status="skipped"))
        delivered = len(wf.reminders(status="delivered"))
    assert len(ids) == len(set(ids)) == delivered
    assert delivered + skipped == due


def test_daemon_command_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "x.sqlite")]
    bad_sinks = ((["daemon", "--once", "--sink", "carrier-pigeon"], "--sink"), (["daemon", "--sink", "x"], "--sink"))
    for args, fragment in bad_sinks:
        result = subprocess.run([*IPT, *db, *args], capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert fragment in result.stderr.strip().splitlines()[-1]


def test_sink_specs(tmp_path: Path) -> None:
    for spec in ("stdout", f"file:{tmp_path / 'x.jsonl'}"):
        sink = sink_for(spec)
        sink.deliver([{"id": "rem_1"}, {"id": "rem_1"}])
        sink.close()
    assert lines(tmp_path / "x.jsonl") == [{"id": "rem_1"}]


def test_a_library_callable_receives_each_due_event_and_can_refuse(db_url: str) -> None:
    received: list[dict[str, object]] = []
    refusals = {"left": 1}

    def deliver(event: dict[str, object]) -> None:
        if event["kind"] == "safety_alert" and refusals["left"]:
            refusals["left"] -= 1
            raise ConnectionError("pager down")
        received.append(event)

    with Workflow(db_url, clock=lambda: T0) as wf:
        course_with_alert(wf)
        now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        first = wf.dispatch([deliver], now=now)
        assert (first.delivered, first.retried) == (3, 1)
        assert wf.dispatch([deliver], now=now).delivered == 0  # backing off
        assert wf.dispatch([deliver], now=now + timedelta(minutes=5)).delivered == 1
    kinds = sorted(str(e["kind"]) for e in received)
    # and the therapist's digest of the clinic's 08:00 firing that Monday (dispatch sends digests too)
    assert kinds == ["digest", "measure_due", "safety_alert", "session_reminder", "session_reminder"]
