"""Clash checks (SPEC §9) at scale: the import of 100,000 courses over 2,000 therapists with
its clash check (goal <= 30 s on SQLite), then ``ipt course create`` on that database, whose
clash check reads the 50 stored plans of its therapist (goal < 200 ms median wall): a create
that books a free hour, one refused for a clash, and one without a therapist (no check) to
compare with."""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from import_courses import THERAPISTS, ZONES, timed_import, write_csv

from _common import ROOT, ipt_command, rerun, summary

NOW = ("--now", "2026-01-01T00:00")


def create_walls(db: str, runs: int, args_for: list[str], expect: int) -> list[float]:
    """Wall seconds of ``runs`` creates (after one warm-up); in ``args_for``, ``{r}`` is the run
    and ``{k}`` a therapist of the run whose courses are in ``ZONES[0]``."""
    out = []
    for r in range(runs + 1):
        cmd = [*ipt_command(), "--db", db, "course", "create", *(a.format(r=r, k=5 * r) for a in args_for), *NOW]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
        elapsed = time.perf_counter() - t0
        assert done.returncode == expect, (done.returncode, done.stderr)
        if r:
            out.append(elapsed)
    return out


def check_in_process(db: str, runs: int) -> str:
    """What the check adds to a create: its therapist's stored bookings read and compared with
    a new course's 12 sessions, timed in this process (no process start, no rules to load)."""
    from ipt_workflow import load_rules
    from ipt_workflow.bootstrap import store_for
    from ipt_workflow.core.clashes import bookings, clashes
    from ipt_workflow.services import build_course

    rules = load_rules()
    store = store_for(db)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    seconds = []
    try:
        for r in range(runs + 1):
            course, plan = build_course(rules, client="X", start="2026-03-07", time="01:00", tz=ZONES[0], now=now,
                                        therapist=f"T{5 * (r + 100):04d}")  # fmt: skip
            t0 = time.perf_counter()
            new = bookings(course, plan.sessions, timedelta(0))
            found = clashes(new, store.booked({course.therapist}, timedelta(0)))
            seconds.append(time.perf_counter() - t0)
            assert not found and len(new) == len(plan.sessions)
    finally:
        store.close()
    return summary(seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        csv_path = tmp / "courses.csv"
        write_csv(csv_path, args.courses)
        db = str(tmp / "ipt.sqlite")
        seconds = timed_import(db, csv_path)
        with sqlite3.connect(db) as conn:
            alerts = conn.execute("SELECT count(*) FROM ipt_reminders WHERE kind = 'schedule_conflict'").fetchone()[0]
        print(f"import with clash checks: {args.courses:,} courses over {min(args.courses, THERAPISTS):,} therapists "
              f"in {seconds:.1f} s (goal <= 30 s on SQLite); {alerts} clashes")  # fmt: skip
        # Each therapist's courses fill 04:00-24:00 in their zone: 01:00 is free, 10:00 is booked.
        free = ["--client", "BENCH{r}", "--therapist", "T{k:04d}", "--start", "2026-03-07", "--time", "01:00", "--tz",
                ZONES[0]]  # fmt: skip
        walls = create_walls(db, args.runs, free, 0)
        print(f"ipt course create, free hour (clash check on 50 stored plans): {summary(walls)} (goal < 200 ms)")
        taken = ["--client", "BUSY{r}", "--therapist", "T0000", "--start", "2026-01-05", "--time", "10:00", "--tz",
                 ZONES[0]]  # fmt: skip
        print(f"ipt course create, refused for a clash:                        "
              f"{summary(create_walls(db, args.runs, taken, 1))}")  # fmt: skip
        print(f"the clash check itself, in process (lock, read 50 plans, compare):  {check_in_process(db, args.runs)}")
        nobody = ["--client", "FREE{r}", "--start", "2026-03-07", "--time", "01:00", "--tz", ZONES[0]]
        print(f"ipt course create, no therapist (no clash check):              "
              f"{summary(create_walls(db, args.runs, nobody, 0))}")  # fmt: skip
    print(rerun("clash_check.py [--courses N] [--runs N]"))


if __name__ == "__main__":
    main()
