"""The long-running daemon as a real process: it emits what is already due on start, an
alert recorded while it runs goes out within seconds, it touches its health file, and
SIGTERM / SIGINT end it with status 0 after the batch in flight.

The daemon runs on the real clock, so it gets rules with no digests and no calendar
(``tests.rulesets.clinic_rules``): at any hour, weekday or date the file holds exactly the
two alerts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ipt_workflow import Workflow
from tests.rulesets import clinic_rules
from tests.sinkfiles import lines, wait_for

IPT = [str(Path(sys.executable).parent / "ipt")]


def ids(path: Path) -> list[str]:
    return [e["id"] for e in lines(path)]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_daemon_emits_on_time_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    db, out, health = tmp_path / "x.sqlite", tmp_path / "out.jsonl", tmp_path / "health"
    rules = clinic_rules(tmp_path, calendar=False)
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now + timedelta(days=10)).date().isoformat()
    with Workflow(str(db), rules=rules) as wf:
        wf.create_course(client="CL-1", start=start, time="10:00", tz="Europe/London", course_id="c-1")
        wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 9, "item9": 1})  # the alert is due now
    log = (tmp_path / "daemon.log").open("w")  # a file, not a pipe: a full pipe would block the daemon
    daemon = subprocess.Popen(
        [
            *IPT,
            "--db",
            str(db),
            "--rules",
            str(rules),
            "daemon",
            "--sink",
            f"file:{out}",
            "--sweep",
            "0.2",
            "--health-file",
            str(health),
        ],
        stdout=log,
        stderr=log,
        text=True,
    )
    try:
        assert wait_for(lambda: len(ids(out)) == 1), "the alert already due was not emitted on start"
        assert wait_for(health.exists)
        with Workflow(str(db), rules=rules) as wf:  # a second alert, recorded while the daemon runs
            wf.apply("c-1", "record_measure", {"instrument": "phq9", "score": 10, "item9": 2},
                     at=datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))  # fmt: skip
        recorded = time.monotonic()
        assert wait_for(lambda: len(ids(out)) == 2), "an alert recorded while running was not emitted"
        assert time.monotonic() - recorded < 5
        daemon.send_signal(stop)
        daemon.wait(timeout=20)
        err = (tmp_path / "daemon.log").read_text()
        assert daemon.returncode == 0, err
        assert "Traceback" not in err and "stopped" in err
        # Structured lines that carry ids and counts, never the client reference or event data.
        assert "delivered=1 " in err and "course=" not in err.replace("course=c-1", "")
        assert "CL-1" not in err and "phq9" not in err and "item9" not in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
    assert len(ids(out)) == len(set(ids(out))) == 2
    with Workflow(str(db), rules=rules) as wf:
        assert {r.kind for r in wf.reminders(status="delivered")} == {"safety_alert"}
