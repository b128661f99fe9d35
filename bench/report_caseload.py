"""`ipt report` of a 16-session course (goal < 500 ms wall) and `ipt caseload --therapist T`
over 40 active courses (goal < 500 ms), with the HTML sizes. The 40 courses of therapist
T-CASE (ipt-16 extended to 16 sessions, London, Monday to Friday 08:00-15:00 from 2 March
2026) each have their first six sessions held and a PHQ-9 every other week; the first also
has a held session 7-16 (a full 16-session course). Each figure is also split into the
process start with its imports and the work itself, timed in process."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import ROOT, ipt_command, rerun, summary, wall_times

THERAPIST = "T-CASE"
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def build(db: Path) -> str:
    """40 courses of T-CASE in ``db``; returns the id of the 16-session one."""
    sys.path.insert(0, str(ROOT))
    from ipt_workflow import Workflow

    wf = Workflow(str(db))
    t = lambda when: lambda: when  # noqa: E731
    for i in range(40):
        day, hour = divmod(i, 8)
        wf.clock = t(datetime(2026, 2, 1, tzinfo=UTC))
        cid = f"case-{i:02d}"
        wf.create_course(client=f"CL-{i:04d}", therapist=THERAPIST, start=f"2026-03-0{2 + day}",
                         time=f"{8 + hour:02d}:00", tz="Europe/London", course_id=cid, allow_clash=True)  # fmt: skip
        first = wf.plan(cid).sessions[0].start.astimezone(UTC)

        def apply(event: str, when: datetime, data: dict[str, object] | None = None, cid: str = cid) -> None:
            wf.clock = t(when)
            wf.apply(cid, event, data, at=when)

        apply("complete_intake", first - timedelta(hours=1))
        for n in range(1, (16 if i == 0 else 6) + 1):
            start = next(s for s in wf.plan(cid).sessions if s.number == n).start.astimezone(UTC)
            if n % 2 == 1:
                apply("record_measure", start - timedelta(minutes=5),
                      {"instrument": "phq9", "score": max(2, 20 - n), "item9": 0})  # fmt: skip
            apply("hold_session", start + timedelta(minutes=50), {"number": n})
            if n == 1:
                apply("set_focus", start + timedelta(hours=1), {"areas": ["grief"]})
            if n == 2:
                apply("start_intervention", start + timedelta(hours=1))
                if i == 0:
                    apply("extend", start + timedelta(hours=2), {"sessions": 4})
    wf.close()
    return "case-00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ipt.sqlite"
        t0 = time.perf_counter()
        course = build(db)
        print(f"built 40 courses in {time.perf_counter() - t0:.1f} s")
        now = ("--now", NOW.isoformat())
        report = [*ipt_command(), "--db", str(db), "report", course, *now]
        caseload = [*ipt_command(), "--db", str(db), "caseload", "--therapist", THERAPIST, *now]
        html = subprocess.run(report, check=True, capture_output=True, cwd=ROOT).stdout
        sessions = html.count(b'class="session-mark"')
        print(f"ipt report ({sessions} sessions): {summary(wall_times(report, args.runs))}; HTML {len(html):,} bytes")
        print(f"ipt caseload (40 courses, table): {summary(wall_times(caseload, args.runs))}")
        print(f"ipt caseload --json: {summary(wall_times([*caseload, '--json'], args.runs))}")
        page = Path(tmp) / "caseload.html"
        print(f"ipt caseload --out: {summary(wall_times([*caseload, '--out', str(page)], args.runs))}; "
              f"HTML {page.stat().st_size:,} bytes")  # fmt: skip
        sys.path.insert(0, str(ROOT))
        from ipt_workflow.reports import caseload as rows_of
        from ipt_workflow.reports import course_report

        def nofallback(cid: str) -> dict[str, object]:
            raise AssertionError(cid)

        for name, work in (("report", lambda: course_report(str(db), course, NOW, nofallback)),
                           ("caseload rows", lambda: rows_of(str(db), THERAPIST, NOW, nofallback))):  # fmt: skip
            work()
            times = []
            for _ in range(args.runs):
                t1 = time.perf_counter()
                work()
                times.append(time.perf_counter() - t1)
            print(f"  in process, {name}: {summary(times)}")
        start = wall_times([sys.executable, "-c", "import cli, ipt_workflow.reports, jinja2"], args.runs)
        print(f"  process start with the imports they need: {summary(start)}")
    print(rerun("report_caseload.py"))


if __name__ == "__main__":
    main()
