"""The write path at interactive speed (issue 15): whole-process wall time of `ipt course
event`, `ipt course create` and `ipt protocols list` (median of --runs runs after a warm-up;
goals < 150 ms each), `Workflow.apply` events per second in process on SQLite and
PostgreSQL (goals >= 2,000/s and >= 800/s), and optionally (--import N) the import of N
courses and a second import of the same file (goal for 100,000: <= 20 s on SQLite)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from import_courses import drop_pg, pg_database, timed_import, write_csv

from _common import ipt_command, rerun, summary, wall_times

T0 = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)


def cli_figures(db: str, runs: int) -> None:
    ipt = [*ipt_command(), "--db", db]
    create = [*ipt, "course", "create", "--client", "CL-1", "--start", "2027-01-04", "--time", "10:00",
              "--tz", "Europe/London", "--now", "2027-01-01T09:00"]  # fmt: skip
    wall_times(create, 1)
    from ipt_workflow import Workflow

    with Workflow(db) as wf:
        course = wf.courses()[0].id
    measure = '{"instrument": "phq9", "score": 12, "item9": 0}'
    event = [*ipt, "course", "event", course, "record_measure", "--data", measure,
             "--at", "2027-01-02T09:00", "--now", "2027-01-02T09:00"]  # fmt: skip
    print(f"ipt course event (record_measure):  {summary(wall_times(event, runs))}  (goal < 150 ms)")
    print(f"ipt course create (no therapist):   {summary(wall_times(create, runs))}  (goal < 150 ms)")
    print(f"ipt protocols list:                 {summary(wall_times([*ipt, 'protocols', 'list'], runs))}"
          "  (goal < 150 ms)")  # fmt: skip
    python = [sys.executable, "-c", "pass"]
    print(f"python -c pass (the floor):         {summary(wall_times(python, runs))}")


def apply_rate(url: str, courses: int, events: int) -> float:
    """Events per second through ``Workflow.apply`` (record_measure, each its own transaction)."""
    from ipt_workflow import Workflow

    now = [T0]
    with Workflow(url, clock=lambda: now[0]) as wf:
        ids = [wf.create_course(client=f"CL-{i}", start="2027-01-04", time="10:00", tz="Europe/London").id
               for i in range(courses)]  # fmt: skip
        t0 = time.perf_counter()
        for n in range(events):
            now[0] = T0 + timedelta(seconds=n + 1)
            wf.apply(ids[n % courses], "record_measure", {"instrument": "phq9", "score": 10 + n % 10, "item9": 0})
        return events / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--import", dest="rows", type=int, default=0, help="also import N courses twice")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "w.sqlite")
        cli_figures(db, args.runs)
        rate = apply_rate(str(Path(tmp) / "apply.sqlite"), 50, args.events)
        print(f"Workflow.apply on SQLite: {rate:,.0f} events/s over {args.events} events  (goal >= 2,000/s)")
        pg = pg_database()
        if pg is None:
            print("Workflow.apply on PostgreSQL: skipped (no server at 127.0.0.1:5432)")
        else:
            try:  # the server's URL, not the bare name (a file of that name in the working directory)
                rate = apply_rate(f"postgresql://postgres@127.0.0.1:5432/{pg}", 50, args.events)
            finally:
                drop_pg(pg)
            print(f"Workflow.apply on PostgreSQL: {rate:,.0f} events/s over {args.events} events  (goal >= 800/s)")
        if args.rows:
            csv_path = Path(tmp) / "c.csv"
            write_csv(csv_path, args.rows)
            target = str(Path(tmp) / "import.sqlite")
            first = timed_import(target, csv_path)
            second = timed_import(target, csv_path)
            print(f"import of {args.rows:,} courses: {first:.1f} s; the same file again: {second:.1f} s (imports none)")
    print(rerun("write_path.py [--runs N] [--events N] [--import N]"))


if __name__ == "__main__":
    main()
