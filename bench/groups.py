"""Group IPT figures: `ipt group event GROUP hold_session` for a group of 15 members (goal
< 300 ms, the whole command: process start, rules, one transaction for 16 rows).

Rerun: .venv/bin/python bench/groups.py
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


def main() -> None:
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
    print("rerun: .venv/bin/python bench/groups.py")


if __name__ == "__main__":
    main()
