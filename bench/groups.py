"""Group IPT figures: `ipt group event GROUP hold_session` for a group of 15 members (goal
< 300 ms, the whole command: process start, rules, one transaction for 16 rows); `ipt import`
of 1,000 groups x 8 members (a CSV of 8,000 rows with a `group` column; the 1,000 groups of
200 therapists are created first, through the library, and not timed).

Rerun: .venv/bin/python bench/groups.py [--event-only | --import-only]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ipt_workflow.workflow import Workflow

RUNS = 5


WEEKDAYS = ("2027-04-19", "2027-04-20", "2027-04-21", "2027-04-22", "2027-04-23")


def import_figure() -> None:
    """1,000 groups (200 therapists, 5 groups each on Monday to Friday of one week, 10:00 or 14:00), then
    `ipt import` of 8 members for each: every member's pre-group session placed in its
    therapist's free working hours of the 14 days before."""
    ipt = str(Path(sys.executable).parent / "ipt")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.sqlite")
        clock = datetime(2027, 3, 1, 9, tzinfo=UTC)
        t0 = time.perf_counter()
        with Workflow(db, clock=lambda: clock) as wf:
            for i in range(1000):
                wf.create_group(protocol="ipt-g-8", therapist=f"T-{i // 5}", start=WEEKDAYS[i % 5],
                                time=("10:00", "14:00")[i % 2], tz="Europe/London", group_id=f"G{i}", min=2,
                                max=8)  # fmt: skip
        setup = time.perf_counter() - t0
        csv = Path(tmp) / "members.csv"
        rows = ["client,therapist,protocol,start,time,tz,id,group"]
        rows += [f"CL-{i}-{m},,,,,,m{i}-{m},G{i}" for i in range(1000) for m in range(8)]
        csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
        t0 = time.perf_counter()
        done = subprocess.run([ipt, "--db", db, "import", str(csv), "--now", clock.isoformat()],
                              capture_output=True, text=True)  # fmt: skip
        took = time.perf_counter() - t0
        assert done.returncode == 0, done.stderr[-2000:]
    print(f"ipt import of 1,000 groups x 8 members (8,000 rows, SQLite): {took:.1f} s "
          f"({8000 / took:,.0f} rows/s; creating the 1,000 groups first took {setup:.1f} s)")  # fmt: skip


def main() -> None:
    if "--event-only" not in sys.argv:
        import_figure()
    if "--import-only" not in sys.argv:
        event_figure()
    print("rerun: .venv/bin/python bench/groups.py [--event-only | --import-only]")


def event_figure() -> None:
    ipt = str(Path(sys.executable).parent / "ipt")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.sqlite")
        clock = datetime(2027, 4, 1, 9, tzinfo=UTC)
        with Workflow(db, clock=lambda: clock) as wf:
            wf.create_group(protocol="ipt-g-8", therapist="T-1", start="2027-04-19", time="10:00",
                            tz="Europe/London", group_id="G1", min=2, max=15)  # fmt: skip
            for i in range(15):
                wf.add_member("G1", client=f"c{i}", course_id=f"m{i}")
        times = []
        for n in range(RUNS):
            at = (
                datetime(2027, 4, 19, 12, tzinfo=UTC).timestamp() + n * 7 * 86400 + 86400
            )  # the day after (a bank holiday moves one)
            now = "--now=" + datetime.fromtimestamp(at, UTC).isoformat()
            t0 = time.perf_counter()
            done = subprocess.run([ipt, "--db", db, "group", "event", "G1", "hold_session", "--data",
                                   '{"absent": ["m3"]}', now], capture_output=True, text=True)  # fmt: skip
            times.append(time.perf_counter() - t0)
            assert done.returncode == 0, done.stderr
    times.sort()
    print(f"ipt group event G1 hold_session, 15 members (SQLite): median {times[len(times) // 2] * 1000:.0f} ms, "
          f"best {times[0] * 1000:.0f} ms over {RUNS} runs")  # fmt: skip


if __name__ == "__main__":
    main()
