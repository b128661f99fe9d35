"""`ipt agenda --therapist T --format json` for one week (goal < 150 ms median wall) and
`ipt slots` for a therapist with 40 courses (goal < 300 ms), with 100,000 courses stored over
2,000 therapists (import_courses.write_csv) plus the 40 courses of therapist T-SLOTS (London,
Monday to Friday 08:00-15:00 hourly from 13 April 2026: 16:00-18:00 stays free). Each figure
is split into the process start with its imports and the work itself, timed in process."""

from __future__ import annotations

import argparse
import csv
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from import_courses import write_csv

from _common import ROOT, ipt_command, rerun, summary, wall_times

SLOTS_THERAPIST = "T-SLOTS"
WEEK = ("--from", "2026-03-02", "--until", "2026-03-08")
NOW = ("--now", "2026-03-01T12:00")
SLOTS = ("slots", "--therapist", SLOTS_THERAPIST, "--from", "2026-04-20", "--now", "2026-04-01T00:00", "--json")


def build(db: Path, courses: int) -> None:
    """Import ``courses`` courses and T-SLOTS's 40 into ``db`` (booked anyway where a bank
    holiday moves a Monday session onto a Tuesday one: a busy week, not a clean one)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "courses.csv"
        write_csv(path, courses)
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            for day in range(5):
                for hour in range(8, 16):
                    start = date(2026, 4, 13) + timedelta(days=day)
                    w.writerow([f"CS{day}{hour:02d}", SLOTS_THERAPIST, "ipt-16", start.isoformat(), f"{hour:02d}:00",
                                "Europe/London"])  # fmt: skip
        subprocess.run([*ipt_command(), "--db", str(db), "import", str(path), "--allow-clash", "--now",
                        "2026-01-01T00:00"], check=True, capture_output=True, cwd=ROOT)  # fmt: skip


def in_process(work: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        work()
        out.append(time.perf_counter() - t0)
    return out[1:]


def python_start(code: str, runs: int) -> list[float]:
    return wall_times([sys.executable, "-c", code], runs)


def median_ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--keep", metavar="FILE", help="build the database here once, and reuse it on later runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.keep) if args.keep else Path(tmp) / "ipt.sqlite"
        if not db.exists():
            t0 = time.perf_counter()
            build(db, args.courses)
            print(f"built {db} in {time.perf_counter() - t0:.0f} s")
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM ipt_courses").fetchone()[0]
            therapist, held = conn.execute("SELECT therapist, count(*) FROM ipt_courses WHERE therapist = 'T0005'"
                                           " GROUP BY therapist").fetchone()  # fmt: skip
        base = [*ipt_command(), "--db", str(db)]
        agenda = [*base, "agenda", "--therapist", therapist, *WEEK, "--format", "json", *NOW]
        rows = subprocess.run(agenda, check=True, capture_output=True, text=True).stdout.count('"session"')
        print(f"stored: {stored:,} courses; {therapist} holds {held}, {rows} sessions in the week")
        print(f"ipt agenda --therapist {therapist} (one week, --format json): {summary(wall_times(agenda, args.runs))}"
              " (goal < 150 ms)")  # fmt: skip
        slots = [*base, *SLOTS]
        found = subprocess.run(slots, check=True, capture_output=True, text=True).stdout.count('"weekday"')
        print(f"ipt slots --therapist {SLOTS_THERAPIST} (40 courses, {found} slots found): "
              f"{summary(wall_times(slots, args.runs))} (goal < 300 ms)")  # fmt: skip

        # The split: the process start with the imports each command needs, and the work.
        from ipt_workflow.agenda import agenda as read_agenda
        from ipt_workflow.agenda import agenda_window, slot_query
        from ipt_workflow.agenda import slots as find_slots
        from ipt_workflow.bootstrap import store_for
        from ipt_workflow.rulebook.files import load_rules

        now = datetime(2026, 3, 1, 12, tzinfo=UTC)
        lo, hi = agenda_window("Europe/London", now, WEEK[1], WEEK[3])
        start = python_start("pass", args.runs)
        agenda_imports = python_start("import cli, ipt_workflow.agenda, ipt_workflow.rulebook.locate, "
                                      "ipt_workflow.core.references", args.runs)  # fmt: skip
        print(
            f"  python start {median_ms(start)}; with the agenda's imports {median_ms(agenda_imports)}; "
            f"the read itself {summary(in_process(lambda: read_agenda(str(db), therapist, lo, hi), args.runs))}"
        )
        slot_code = ("import cli, ipt_workflow.agenda, ipt_workflow.services, ipt_workflow.storage.sql; "
                     "from ipt_workflow.rulebook.files import load_rules; load_rules()")  # fmt: skip
        slot_imports = python_start(slot_code, args.runs)
        rules = load_rules()
        store = store_for(str(db), create=False)
        query = slot_query(rules, therapist=SLOTS_THERAPIST, start="2026-04-20")
        slot_now = datetime(2026, 4, 1, tzinfo=UTC)
        try:
            work = in_process(lambda: find_slots(store, rules, query, slot_now), args.runs)
        finally:
            store.close()
        print(
            f"  slots: with its imports and the rules loaded {median_ms(slot_imports)}; "
            f"the search itself {summary(work)}"
        )
    print(rerun("agenda_slots.py [--courses N] [--runs N] [--keep FILE]"))


if __name__ == "__main__":
    main()
