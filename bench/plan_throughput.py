"""Plan generation for 10,000 ipt-16 courses with all their reminders, in one process.
Goal: at least 5,000 courses a second."""

from __future__ import annotations

import argparse
import time as clock
from datetime import UTC, date, datetime, time, timedelta

from _common import rerun
from ipt_workflow import load_rules, new_course, plan

ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Antarctica/Troll"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=10_000)
    args = parser.parse_args()
    rules = load_rules()
    protocol, policy = rules.protocol("ipt-16"), rules.clinic
    now = datetime(2026, 1, 1, tzinfo=UTC)
    t0 = clock.perf_counter()
    courses = [
        new_course(
            protocol,
            policy,
            course_id=f"c{i:06d}",
            client=f"CL{i:06d}",
            therapist=f"T{i % 40:02d}",
            start=date(2026, 1, 5) + timedelta(days=i % 365),
            slot=time(8 + i % 10, (i % 4) * 15),
            timezone=ZONES[i % len(ZONES)],
            now=now,
        )
        for i in range(args.courses)
    ]
    t1 = clock.perf_counter()
    sessions = reminders = 0
    for course in courses:
        p = plan(course, protocol, policy)
        sessions += len(p.sessions)
        reminders += len(p.reminders)
    t2 = clock.perf_counter()
    print(f"courses: {args.courses:,} ipt-16, zones: {', '.join(ZONES)}")
    print(f"sessions planned: {sessions:,}; reminders: {reminders:,}")
    print(f"create:  {args.courses / (t1 - t0):,.0f} courses/s ({t1 - t0:.2f} s)")
    print(f"plan:    {args.courses / (t2 - t1):,.0f} courses/s ({t2 - t1:.2f} s; goal >= 5,000/s)")
    print(f"both:    {args.courses / (t2 - t0):,.0f} courses/s")
    print(rerun("plan_throughput.py"))


if __name__ == "__main__":
    main()
