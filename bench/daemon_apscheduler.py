"""The catch-up drain of bench/daemon_catchup.py done the naive way, for comparison: APScheduler 3
(BackgroundScheduler, default thread pool) holding one `date` job per reminder, all already due
(spread over the past hour; misfire_grace_time=None, coalesce=False), each job appending one
JSON line to a file. Measured: adding the jobs (scheduler paused), then reminders/s from
resume() until all N lines are written. With the MemoryJobStore and with the
SQLAlchemyJobStore on SQLite (every job pickled and inserted, then loaded and deleted one
commit at a time: about 40 s for the 20,000). Default N 20,000 for both, as in daemon_catchup.py.
The daemon's goal, for reference: >= 20,000 reminders/s on SQLite."""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import rerun

OUT: Path | None = None  # the file the jobs append to (module state: SQLAlchemy jobs are pickled)
written = 0
written_lock = threading.Lock()
all_written = threading.Event()
target = 0


def emit(rid: str, due: str) -> None:
    """The job: one JSON line a reminder, the way a naive handler would write it."""
    global written
    assert OUT is not None
    line = json.dumps({"id": rid, "type": "alert", "kind": "follow_up", "due": due,
                       "emitted_at": datetime.now(UTC).isoformat(), "late": True}, separators=(",", ":"))  # fmt: skip
    with OUT.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    with written_lock:
        written += 1
        if written >= target:
            all_written.set()


def drain(n: int, jobstore: Any, out: Path, timeout: float) -> tuple[float, float, int]:
    """(seconds to add, seconds to drain, lines written) for ``n`` due date jobs."""
    from apscheduler.schedulers.background import BackgroundScheduler

    global OUT, written, target
    OUT, written, target = out, 0, n
    all_written.clear()
    now = datetime.now(UTC)
    first, step = now - timedelta(hours=1), timedelta(hours=1) / max(n - 1, 1)
    scheduler = BackgroundScheduler(jobstores={"default": jobstore}, timezone="UTC")
    scheduler.start(paused=True)
    t0 = time.perf_counter()
    for i in range(n):
        due = first + step * i
        scheduler.add_job(emit, "date", run_date=due, id=f"rem_{i:08d}", args=[f"rem_{i:08d}", due.isoformat()],
                          misfire_grace_time=None, coalesce=False)  # fmt: skip
    t1 = time.perf_counter()
    scheduler.resume()
    all_written.wait(timeout)
    t2 = time.perf_counter()
    scheduler.shutdown(wait=True)
    with out.open(encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    return t1 - t0, t2 - t1, lines


def report(label: str, n: int, add: float, run: float, lines: int) -> None:
    status = "all written" if lines == n else f"TIMED OUT with {lines:,} of {n:,} written"
    print(f"{label}: {n:,} jobs added in {add:.2f} s ({n / add:,.0f} jobs/s); drained in {run:.2f} s = "
          f"{lines / run:,.0f} reminders/s ({status}); add + drain {lines / (add + run):,.0f} reminders/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reminders", type=int, default=20_000, help="jobs in the MemoryJobStore")
    parser.add_argument("--sqlalchemy-reminders", type=int, default=20_000, help="jobs in the SQLAlchemyJobStore")
    parser.add_argument("--quick", action="store_true", help="2,000 and 500 jobs")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each drain")
    args = parser.parse_args()
    n_mem, n_sql = (2_000, 500) if args.quick else (args.reminders, args.sqlalchemy_reminders)
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        add, run, lines = drain(n_mem, MemoryJobStore(), tmp / "memory.jsonl", args.timeout)
        report("APScheduler 3 MemoryJobStore           ", n_mem, add, run, lines)
        store = SQLAlchemyJobStore(url=f"sqlite:///{tmp / 'jobs.sqlite'}")
        add, run, lines = drain(n_sql, store, tmp / "sqlalchemy.jsonl", args.timeout)
        report("APScheduler 3 SQLAlchemyJobStore, SQLite", n_sql, add, run, lines)
    print("for comparison: ipt daemon --once, goal >= 20,000 reminders/s on SQLite (bench/daemon_catchup.py)")
    print(rerun("daemon_apscheduler.py [--reminders N] [--sqlalchemy-reminders N | --quick]"))


if __name__ == "__main__":
    main()
