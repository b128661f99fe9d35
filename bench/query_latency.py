"""`ipt course show` and `ipt reminders --until` wall time with many courses stored
(goal < 300 ms with 100,000). Imports the courses first unless --db names a stored file."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, ipt_command, rerun, summary, wall_times


def count_rows(cmd: list[str]) -> int:
    return len(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--courses", type=int, default=100_000)
    parser.add_argument("--db", help="an SQLite file already holding the courses (import_courses.py --keep FILE)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "ipt.sqlite")
        if not args.db:
            subprocess.run([sys.executable, str(ROOT / "bench" / "import_courses.py"), "--courses", str(args.courses),
                            "--naive-courses", "1", "--keep", db], check=True, capture_output=True)  # fmt: skip
        with sqlite3.connect(db) as conn:
            courses = conn.execute("SELECT count(*) FROM ipt_courses").fetchone()[0]
            reminders = conn.execute("SELECT count(*) FROM ipt_reminders").fetchone()[0]
            course_id = conn.execute("SELECT id FROM ipt_courses ORDER BY id LIMIT 1 OFFSET ?",
                                     (courses // 2,)).fetchone()[0]  # fmt: skip
        base = [*ipt_command(), "--db", db]
        print(f"stored: {courses:,} courses, {reminders:,} reminders")
        print(f"ipt course show ID:              {summary(wall_times([*base, 'course', 'show', course_id], 10))}")
        show_json = [*base, "course", "show", course_id, "--json"]
        print(f"ipt course show ID --json:       {summary(wall_times(show_json, 10))}")
        window = ["reminders", "--from", "2026-03-02T00:00", "--until", "2026-03-02T06:00", "--json"]
        rows = count_rows([*base, *window])
        print(f"ipt reminders --from --until (6 h, {rows:,} rows): {summary(wall_times([*base, *window], 10))}")
        until = ["reminders", "--until", "2026-01-03T00:00", "--json"]
        rows = count_rows([*base, *until])
        print(f"ipt reminders --until ({rows:,} rows):  {summary(wall_times([*base, *until], 10))}")
    print(rerun("query_latency.py [--courses N] [--db FILE]"))


if __name__ == "__main__":
    main()
