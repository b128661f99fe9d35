"""Bulk import of ipt-16 courses with plans and reminders written (goal: 100,000 in <= 30 s on
SQLite on this 2-core machine), on SQLite and PostgreSQL, and the naive way for comparison:
one APScheduler 3 job per reminder in its SQLAlchemy job store."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

from _common import ROOT, ipt_command, rerun

ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Antarctica/Troll"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


THERAPISTS = 2000
SLOTS = 24  # 50-minute slots a day from 04:00 (clear of every zone's DST switch) to midnight


def write_csv(path: Path, n: int) -> None:
    """``n`` courses over 2,000 therapists (50 each for 100,000) that never clash (SPEC §9),
    even after holiday moves: each therapist has one zone and gives each course a time of day
    of its own, with up to 24 courses at once and the next 24 starting 26 weeks later."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["client", "therapist", "protocol", "start", "time", "tz"])
        for i in range(n):
            k, j = i % THERAPISTS, i // THERAPISTS
            start = date(2026, 1, 5) + timedelta(days=k % 7 + 7 * (k % 20) + 182 * (j // SLOTS))
            minutes = 4 * 60 + 50 * (j % SLOTS)
            slot = f"{minutes // 60:02d}:{minutes % 60:02d}"
            w.writerow([f"CL{i:07d}", f"T{k:04d}", "ipt-16", start.isoformat(), slot, ZONES[k % len(ZONES)]])


def timed_import(db: str, csv_path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([*ipt_command(), "--db", db, "import", str(csv_path), "--now", "2026-01-01T00:00"],
                   check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    return time.perf_counter() - t0


def pg_database() -> str | None:
    """A fresh database for the run, or None when PostgreSQL is not reachable."""
    try:
        import psycopg

        name = f"ipt_bench_{os.getpid()}"
        with psycopg.connect(PG_ADMIN.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return name
    except Exception as exc:
        print(f"postgresql: skipped ({exc.__class__.__name__}: {str(exc).splitlines()[0]})")
        return None


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def naive_apscheduler(courses: int, tmp: Path) -> tuple[int, float]:
    """(jobs, seconds) to add one APScheduler 3 date job per reminder of ``courses`` courses."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from ipt_workflow import load_rules, new_course, plan

    rules = load_rules()
    protocol = rules.protocol("ipt-16")
    plans = []
    for i in range(courses):
        c = new_course(
            protocol, rules.clinic, course_id=f"n{i:06d}", client=f"CL{i:06d}", therapist="T1",
            start=date(2027, 1, 4) + timedelta(days=i % 365), slot=clock_time(10, 0), timezone=ZONES[i % 5],
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        plans.append(plan(c, protocol, rules.clinic))
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{tmp / 'jobs.sqlite'}")})
    scheduler.start(paused=True)
    jobs = 0
    t0 = time.perf_counter()
    for p in plans:
        for r in p.reminders:
            scheduler.add_job(print, "date", run_date=r.due, id=r.id, args=[r.id], misfire_grace_time=None)
            jobs += 1
    elapsed = time.perf_counter() - t0
    scheduler.shutdown(wait=False)
    return jobs, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100_000)
    parser.add_argument("--naive-courses", type=int, default=100, help="courses for the APScheduler comparison")
    parser.add_argument("--keep", metavar="FILE", help="keep the SQLite database here (for query_latency.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        csv_path = tmp / "courses.csv"
        write_csv(csv_path, args.courses)
        db_file = Path(args.keep) if args.keep else tmp / "ipt.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        seconds = timed_import(str(db_file), csv_path)
        size = db_file.stat().st_size
        print(f"sqlite:     {args.courses:,} courses in {seconds:.1f} s = {args.courses / seconds:,.0f} courses/s "
              f"(goal <= 30 s); {size / args.courses:,.0f} database bytes per course")  # fmt: skip
        name = pg_database()
        if name:
            try:
                seconds = timed_import(f"postgresql://postgres@127.0.0.1:5432/{name}", csv_path)
                import psycopg

                with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as conn:
                    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                    pg_size = row[0] if row else 0
                print(f"postgresql: {args.courses:,} courses in {seconds:.1f} s = {args.courses / seconds:,.0f} "
                      f"courses/s; {pg_size / args.courses:,.0f} database bytes per course")  # fmt: skip
            finally:
                drop_pg(name)
        jobs, naive = naive_apscheduler(args.naive_courses, tmp)
        per_course = naive / args.naive_courses
        print(f"naive:      APScheduler 3 SQLAlchemyJobStore (SQLite), one job per reminder: {jobs:,} jobs for "
              f"{args.naive_courses} courses in {naive:.1f} s = {jobs / naive:,.0f} jobs/s, "
              f"{1 / per_course:,.1f} courses/s; {args.courses:,} courses would take "
              f"{per_course * args.courses / 3600:,.1f} h")  # fmt: skip
    print(rerun("import_courses.py [--courses N] [--keep FILE]"))


if __name__ == "__main__":
    main()
